"""A small synthetic translation task built on the fly, for the quick-start and the tests.

A made-up source language is "translated" word by word into a made-up target language whose
nouns carry a plural suffix when a number word precedes them and whose adjectives follow the
noun (a local reordering, as English -> French). Deterministic given the seed; no download.
"""
import os
import random
from typing import Callable, Dict, List, Set, Tuple

Links = List[Tuple[int, int]]
_SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "ta", "vo", "si", "de", "po", "gu", "fa"]


def _words(rng: random.Random, count: int, syllables: int) -> List[str]:
    seen, words = set(), []
    while len(words) < count:
        word = "".join(rng.choice(_SYLLABLES) for _ in range(syllables))
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


class ToyTranslation:
    """Sentences of the form ``[number] [adjective] noun (verb [adjective] noun)``."""

    def __init__(self, seed: int = 1, nouns: int = 24, adjectives: int = 10, verbs: int = 10):
        rng = random.Random(seed)
        src = _words(rng, nouns + adjectives + verbs + 4, 2)
        tgt = _words(rng, nouns + adjectives + verbs + 4, 3)
        self.nouns = list(zip(src[:nouns], tgt[:nouns]))
        self.adjectives = list(zip(src[nouns:nouns + adjectives], tgt[nouns:nouns + adjectives]))
        self.verbs = list(zip(src[nouns + adjectives:-4], tgt[nouns + adjectives:-4]))
        self.numbers = list(zip(src[-4:], tgt[-4:]))

    def _phrase(self, rng: random.Random, at: int = 0) -> Tuple[List[str], List[str], Links]:
        """A phrase, and its word alignment as (source, target) positions counted from ``at``."""
        src, tgt, links = [], [], []
        plural = rng.random() < 0.4
        if plural:
            number = rng.choice(self.numbers)
            src.append(number[0])
            tgt.append(number[1])
            links.append((0, 0))
        noun = rng.choice(self.nouns)
        adjective = rng.choice(self.adjectives) if rng.random() < 0.5 else None
        if adjective:
            src.append(adjective[0])
        src.append(noun[0])
        tgt.append(noun[1] + ("s" if plural else ""))
        links.append((len(src) - 1, len(tgt) - 1))
        if adjective:
            tgt.append(adjective[1])  # adjective after the noun in the target language
            links.append((len(src) - 2, len(tgt) - 1))
        return src, tgt, [(s + at, t + at) for s, t in links]

    def aligned_pair(self, rng: random.Random) -> Tuple[str, str, Links]:
        """A sentence pair and its word alignment (every target word has one source word)."""
        src, tgt, links = self._phrase(rng)
        if rng.random() < 0.7:
            verb = rng.choice(self.verbs)
            links.append((len(src), len(tgt)))
            src.append(verb[0])
            tgt.append(verb[1])
            obj_src, obj_tgt, obj_links = self._phrase(rng)
            links += [(s + len(src), t + len(tgt)) for s, t in obj_links]
            src += obj_src
            tgt += obj_tgt
        return " ".join(src), " ".join(tgt), links

    def pair(self, rng: random.Random) -> Tuple[str, str]:
        return self.aligned_pair(rng)[:2]

    def corpus(self, size: int, seed: int) -> List[Tuple[str, str]]:
        rng = random.Random(seed)
        return [self.pair(rng) for _ in range(size)]

    def alignments(self, size: int, seed: int) -> List[Links]:
        """The word alignments of ``corpus(size, seed)``."""
        rng = random.Random(seed)
        return [self.aligned_pair(rng)[2] for _ in range(size)]


def write_alignments(path: str, alignments: List[Links]):
    """fairseq's alignment format: one line per pair, ``source-target`` word positions."""
    with open(path, "w") as f:
        for links in alignments:
            f.write(" ".join(f"{s}-{t}" for s, t in links) + "\n")


def read_alignments(path: str) -> List[Set[Tuple[int, int]]]:
    with open(path) as f:
        return [{tuple(map(int, link.split("-"))) for link in line.split()} for line in f]


def write_parallel_splits(
    out_dir: str, corpus: Callable[[int, int], List[Tuple[str, str]]], sizes: Dict[str, int],
    seed: int, src: str, tgt: str,
) -> Dict[str, str]:
    """Write ``{split}.{src,tgt}`` from ``corpus(size, split_seed)`` pairs; returns the prefixes.

    Split i is drawn with seed ``seed * 1000 + i``, so every split differs and runs repeat.
    """
    os.makedirs(out_dir, exist_ok=True)
    prefixes = {}
    for index, (split, size) in enumerate(sizes.items()):
        pairs = corpus(size, seed * 1000 + index)
        prefix = os.path.join(out_dir, split)
        with open(f"{prefix}.{src}", "w") as fs, open(f"{prefix}.{tgt}", "w") as ft:
            for source, target in pairs:
                fs.write(source + "\n")
                ft.write(target + "\n")
        prefixes[split] = prefix
    return prefixes


def write_toy_translation(
    out_dir: str, sizes: Dict[str, int] = None, seed: int = 1, src: str = "src", tgt: str = "tgt"
) -> Dict[str, str]:
    """Write ``{split}.{src,tgt}`` raw text files and their word alignments ``{split}.align``;
    returns the split prefixes."""
    sizes = sizes or {"train": 6000, "valid": 200, "test": 200}
    task = ToyTranslation(seed)
    prefixes = write_parallel_splits(
        out_dir, lambda size, split_seed: task.corpus(size, seed=split_seed), sizes, seed, src, tgt
    )
    for index, (split, size) in enumerate(sizes.items()):
        write_alignments(f"{prefixes[split]}.align", task.alignments(size, seed * 1000 + index))
    return prefixes
