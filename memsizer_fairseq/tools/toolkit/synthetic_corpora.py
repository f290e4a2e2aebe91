"""Small synthetic corpora for the recipes' ``--tiny`` modes and the tests (no download).

Each writer produces the raw-text layout that the matching recipe expects from a user's real
data, so the tiny mode runs exactly the real pipeline (sentencepiece, fairseq-preprocess,
fairseq-train, fairseq-generate / fairseq-eval-lm), only smaller:

* translation: ``{split}.{src}`` / ``{split}.{tgt}``, one sentence per line (the made-up language
  pair of :mod:`memsizer_fairseq.tools.toolkit.toy_data`);
* summarization: ``{split}.source`` / ``{split}.target``, one document / summary per line. The
  documents are short news-like stories about made-up people; the ``cnn_dm`` style summary
  compresses the two lead events (content selection and deletion: highlights), the ``xsum`` style
  summary is one sentence that rewords the lead event with words absent from the document
  (``visited`` -> ``visit``; an abstractive summary);
* language modelling: ``wiki.{train,valid,test}.tokens`` in Wikitext-103's layout (`` = Title =``
  headings, one paragraph per line, words separated by spaces).

Everything is deterministic given the seed.
"""
import os
import random
from typing import Dict, List, Optional, Tuple

from .toy_data import write_parallel_splits

NAMES = ["alice", "bruno", "carla", "dmitri", "elena", "farid", "greta", "hiro", "ines",
         "jonas", "kemal", "lena", "marco", "nadia", "oscar", "priya", "quinn", "rosa"]
PLACES = ["paris", "lagos", "lima", "oslo", "delhi", "quito", "cairo", "seoul", "perth",
          "milan", "dakar", "hanoi"]
# verb as written in a story, the noun an abstractive headline uses for it
VERBS = [("visited", "visit"), ("bought", "purchase"), ("repaired", "repair"),
         ("painted", "painting"), ("sold", "sale"), ("opened", "opening"),
         ("inspected", "inspection"), ("designed", "design"), ("cleaned", "cleaning"),
         ("moved", "move")]
OBJECTS = ["museum", "bridge", "bakery", "library", "stadium", "garden", "factory", "station",
           "school", "harbour", "market", "tower", "theatre", "hospital"]
ADJECTIVES = ["old", "new", "large", "small", "famous", "quiet", "busy", "historic", "modern",
              "empty"]
DAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
FILLERS = [
    "officials said the {adj} {obj} would stay open",
    "neighbours described the {obj} as {adj}",
    "the weather in {place} was {adj} that week",
    "a spokesperson declined to comment on the {obj}",
    "local reporters followed the story closely",
    "the {obj} had been {adj} for many years",
]


class ToyNews:
    """Short made-up news stories with a lead event, more events and filler sentences."""

    def __init__(self, seed: int = 1):
        self.seed = seed

    def event(self, rng: random.Random) -> Dict[str, str]:
        verb, verb_noun = rng.choice(VERBS)
        return dict(name=rng.choice(NAMES), verb=verb, verb_noun=verb_noun,
                    adj=rng.choice(ADJECTIVES), obj=rng.choice(OBJECTS),
                    place=rng.choice(PLACES), day=rng.choice(DAYS))

    @staticmethod
    def event_sentence(e: Dict[str, str]) -> str:
        return f"on {e['day']} {e['name']} {e['verb']} the {e['adj']} {e['obj']} in {e['place']} ."

    def filler(self, rng: random.Random) -> str:
        return rng.choice(FILLERS).format(
            adj=rng.choice(ADJECTIVES), obj=rng.choice(OBJECTS), place=rng.choice(PLACES)
        ) + " ."

    def story(self, rng: random.Random, min_sentences: int = 4,
              max_sentences: int = 6) -> Tuple[List[Dict[str, str]], str]:
        events = [self.event(rng) for _ in range(rng.randint(2, 3))]
        sentences = [self.event_sentence(e) for e in events]
        while len(sentences) < rng.randint(min_sentences, max_sentences):
            sentences.insert(rng.randint(1, len(sentences)), self.filler(rng))
        return events, " ".join(sentences)

    @staticmethod
    def highlights(events: List[Dict[str, str]]) -> str:
        """CNN/DailyMail style: the two lead events, compressed (no day, no adjective)."""
        return " ".join(f"{e['name']} {e['verb']} the {e['obj']} in {e['place']} ."
                        for e in events[:2])

    @staticmethod
    def headline(events: List[Dict[str, str]]) -> str:
        """XSum style: one sentence rewording the lead event."""
        e = events[0]
        return f"{e['place']} {e['obj']} sees {e['verb_noun']} by {e['name']} ."

    def corpus(self, size: int, seed: int, style: str) -> List[Tuple[str, str]]:
        if style not in ("cnn_dm", "xsum"):
            raise ValueError(f"unknown summary style {style!r}; cnn_dm or xsum")
        rng = random.Random(seed)
        pairs = []
        for _ in range(size):
            events, document = self.story(rng)
            summary = self.highlights(events) if style == "cnn_dm" else self.headline(events)
            pairs.append((document, summary))
        return pairs


def _splits(sizes: Optional[Dict[str, int]], default: Dict[str, int]) -> Dict[str, int]:
    return dict(sizes or default)


def write_toy_summarization(
    out_dir: str, style: str = "cnn_dm", sizes: Optional[Dict[str, int]] = None, seed: int = 1,
    src: str = "source", tgt: str = "target",
) -> Dict[str, str]:
    """Write ``{split}.source`` / ``{split}.target``; returns the split prefixes."""
    sizes = _splits(sizes, {"train": 3000, "valid": 100, "test": 100})
    news = ToyNews(seed)
    return write_parallel_splits(
        out_dir, lambda size, split_seed: news.corpus(size, seed=split_seed, style=style),
        sizes, seed, src, tgt,
    )


def write_toy_wikitext(
    out_dir: str, sizes: Optional[Dict[str, int]] = None, seed: int = 1,
) -> Dict[str, str]:
    """Write ``wiki.{split}.tokens`` (``sizes`` counts articles); returns the file paths."""
    sizes = _splits(sizes, {"train": 400, "valid": 20, "test": 20})
    os.makedirs(out_dir, exist_ok=True)
    news = ToyNews(seed)
    paths = {}
    for index, (split, articles) in enumerate(sizes.items()):
        rng = random.Random(seed * 1000 + index)
        lines = []
        for _ in range(articles):
            title = f"{rng.choice(NAMES)} of {rng.choice(PLACES)}"
            lines += ["", f" = {title.title()} = ", ""]
            for _ in range(rng.randint(1, 3)):
                _, paragraph = news.story(rng, 4, 8)
                lines.append(" " + paragraph + " ")
        path = os.path.join(out_dir, f"wiki.{split}.tokens")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        paths[split] = path
    return paths

