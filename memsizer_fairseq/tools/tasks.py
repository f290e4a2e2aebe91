"""The tasks the tools run, one description each: the raw files, how the test set is scored, the
measures and their targets, the generation flags, the synthetic corpus and its sizes. The
comparison (``compare/settings.py``), the recipes (``recipes/catalog.py``) and the quick-start
read these; a new task is one more :class:`Task` here (and its budgets or recipes there).
"""
import os
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from .toolkit import generation, sentencepiece
from .toolkit.corpus_checks import check_corpus
from .toolkit.flags import Args
from .toolkit.synthetic_corpora import write_toy_summarization, write_toy_wikitext
from .toolkit.toy_data import write_toy_translation

SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class Layout:
    """A corpus's raw files: ``pattern`` filled with each split and side (two sides: source and
    target files, line i of one aligned with line i of the other; one side: a stream of text)."""

    sides: Tuple[str, ...]
    pattern: str = "{split}.{side}"

    @property
    def paired(self) -> bool:
        return len(self.sides) == 2

    def file(self, directory: str, split: str, side: str) -> str:
        return os.path.join(directory, self.pattern.format(split=split, side=side))

    def prefix(self, directory: str, split: str) -> str:
        """A split's prefix as fairseq-preprocess takes it (its files: ``{prefix}.{side}``)."""
        if not self.pattern.endswith(".{side}"):
            raise ValueError(f"{self.pattern}: fairseq-preprocess needs {{prefix}}.{{side}} files")
        return os.path.join(directory, self.pattern[:-len(".{side}")].format(split=split))

    def preprocess_args(self, directory: str) -> Args:
        """fairseq-preprocess's flags: source and target prefixes with one joined dictionary,
        or (one side) each split's file as its own prefix."""
        if not self.paired:
            return {"--only-source": True, **{f"--{split}pref": self.file(
                directory, split, self.sides[0]) for split in SPLITS}}
        return {"--source-lang": self.sides[0], "--target-lang": self.sides[1],
                "--joined-dictionary": True,
                **{f"--{split}pref": self.prefix(directory, split) for split in SPLITS}}

    def files(self, directory: str) -> List[str]:
        return [self.file(directory, split, side) for split in SPLITS for side in self.sides]

    def pairs(self, directory: str) -> List[Tuple[str, str]]:
        files = self.files(directory)
        return list(zip(files[::2], files[1::2])) if self.paired else []

    def describe(self) -> str:
        names = " and ".join(self.pattern.format(split="{train,valid,test}", side=side)
                             for side in self.sides)
        return names + " (plain text, one item per line)"

    def check(self, directory: str, owner: str) -> Dict[str, int]:
        """Each file's line count; a missing file (``owner`` names who needs it) or unusable
        text (:mod:`.toolkit.corpus_checks`) is refused before anything is written."""
        missing = [path for path in self.files(directory) if not os.path.isfile(path)]
        if missing:
            raise FileNotFoundError(f"{owner}: {directory} lacks {', '.join(missing)}; it must "
                                    f"hold {self.describe()}")
        return check_corpus(self.files(directory), self.pairs(directory))

    def encode(self, raw_dir: str, out_dir: str, options: dict, workers: int = 1,
               lines: Optional[Dict[str, int]] = None) -> str:
        """One sentencepiece model (``out_dir/spm.model``, ``options``:
        :func:`.toolkit.sentencepiece.bpe_options`) learned on the training text of every side
        together, and the pieces of every split in ``out_dir`` (of a split's first
        ``lines[split]`` lines where given); returns the model's path."""
        model = os.path.join(out_dir, "spm.model")
        processor = sentencepiece.learn_bpe(
            [self.file(raw_dir, "train", side) for side in self.sides], model, options)
        for split in SPLITS:
            for side in self.sides:
                sentencepiece.encode_file(processor, self.file(raw_dir, split, side),
                                          self.file(out_dir, split, side), workers,
                                          lines=(lines or {}).get(split))
        return model


@dataclass(frozen=True)
class Measure:
    """A quality measure: its key in the parsed scores (or validation records), and Memsizer's
    target, within ``tolerance`` of the Transformer (a fraction of it when ``relative``)."""

    key: str
    label: str
    higher_is_better: bool = True
    tolerance: Optional[float] = None
    relative: bool = False

    def threshold(self, reference: float) -> float:
        """The worst value that still meets the target."""
        margin = self.tolerance * reference if self.relative else self.tolerance
        return reference - margin if self.higher_is_better else reference + margin

    def reached(self, value: float, reference: float) -> bool:
        threshold = self.threshold(reference)
        return value >= threshold if self.higher_is_better else value <= threshold

    def met(self, value: float, reference: float) -> Optional[bool]:
        """Whether ``value`` meets the target against ``reference`` (None: no target)."""
        return None if self.tolerance is None else self.reached(value, reference)

    def difference(self, value: float, reference: float) -> str:
        if self.relative:
            return f"{100 * (value / reference - 1.0):+.1f}%"
        return f"{value - reference:+.2f}"

    def describe_tolerance(self) -> str:
        amount = f"{100 * self.tolerance:.0f}%" if self.relative else f"{self.tolerance:.1f}"
        return f"{amount} {'below' if self.higher_is_better else 'above'} it"


@dataclass(frozen=True)
class Evaluator:
    """How a task's test set is scored, in-process: fairseq-generate's hypotheses scored by
    ``score`` (the search timed), or fairseq-eval-lm's perplexity (generation timed apart)."""

    tool: str  # the fairseq command whose flags it takes: generate / eval-lm
    score: Optional[Callable[[generation.Generated], Dict[str, float]]] = None

    @property
    def times_generation(self) -> bool:
        return self.score is not None

    def run(self, args: Sequence[str], log_path: Optional[str] = None
            ) -> Tuple[Dict, Optional[generation.Generated]]:
        """The scores (and the hypotheses) of fairseq-``tool`` ``args``."""
        if self.score is None:
            return generation.eval_lm(args, log_path), None
        out = generation.generate(args, log_path)
        seconds = out.seconds or float("nan")
        return {"sentences": out.sentences, "tokens": out.tokens,
                "generation_seconds": out.seconds,
                "sentences_per_second": out.sentences / seconds,
                "tokens_per_second": out.tokens / seconds,
                "length_ratio": out.length_ratio(), **self.score(out)}, out


GENERATE_BLEU = Evaluator("generate", generation.bleu)
GENERATE_ROUGE = Evaluator("generate", generation.rouge)
EVAL_LM = Evaluator("eval-lm")


@dataclass(frozen=True)
class Task:
    name: str  # fairseq's --task
    layout: Layout  # the raw files the comparison reads (../shared/data's layout)
    archs: Dict[str, str]  # "transformer" / "memsizer" -> the --arch of each side
    evaluator: Evaluator
    quality: Tuple[Measure, ...]  # test-set measures (those with a tolerance are targets)
    headline: str  # key of the quality measure that places a model on the frontier
    valid: Measure  # the validation measure fairseq-train logs (checkpoint selection)
    generation: Args  # fairseq-generate / -eval-lm flags every corpus of the task gets
    tiny_sizes: Dict[str, int]  # items per split of the synthetic corpus
    write_tiny: Callable[[str, Dict[str, int], Tuple[str, ...], int, Optional[str]], None]
    tiny_style: Optional[str] = None

    @property
    def paired(self) -> bool:
        return self.layout.paired

    def headline_measure(self) -> Measure:
        return next(m for m in self.quality if m.key == self.headline)

    def write_tiny_corpus(self, raw_dir: str, layout: Optional[Layout] = None,
                          sizes: Optional[Dict[str, int]] = None, seed: int = 1,
                          style: Optional[str] = None):
        """The task's synthetic corpus (no download) in ``layout``'s files (default: the
        task's)."""
        layout = layout or self.layout
        os.makedirs(raw_dir, exist_ok=True)
        self.write_tiny(raw_dir, dict(sizes or self.tiny_sizes), layout.sides, seed,
                        style or self.tiny_style)
        if not layout.paired:  # the writer's wiki.{split}.tokens into the layout's files
            for split in SPLITS:
                written = os.path.join(raw_dir, f"wiki.{split}.tokens")
                wanted = layout.file(raw_dir, split, layout.sides[0])
                if written != wanted:
                    os.replace(written, wanted)


def _write_translation(raw_dir, sizes, sides, seed, style):
    write_toy_translation(raw_dir, sizes, seed=seed, src=sides[0], tgt=sides[1])


def _write_summarization(raw_dir, sizes, sides, seed, style):
    write_toy_summarization(raw_dir, style, sizes, seed=seed, src=sides[0], tgt=sides[1])


def _write_text(raw_dir, sizes, sides, seed, style):
    write_toy_wikitext(raw_dir, sizes, seed=seed)


SEQ2SEQ_SIZES = {"train": 3000, "valid": 100, "test": 100}

TRANSLATION = Task(
    name="translation", layout=Layout(("en", "de")),
    archs={"transformer": "transformer", "memsizer": "memsizer_transformer"},
    evaluator=GENERATE_BLEU,
    quality=(Measure("sacrebleu", "sacreBLEU", tolerance=1.0),), headline="sacrebleu",
    valid=Measure("bleu", "valid BLEU (greedy)", tolerance=1.0),
    generation={"--task": "translation", "--post-process": "sentencepiece",
                "--scoring": "sacrebleu"},
    tiny_sizes=SEQ2SEQ_SIZES, write_tiny=_write_translation,
)

SUMMARIZATION = Task(
    name="summarization", layout=Layout(("src", "tgt")),
    archs={"transformer": "transformer", "memsizer": "memsizer_transformer"},
    evaluator=GENERATE_ROUGE,
    quality=(Measure("rouge1", "ROUGE-1"), Measure("rouge2", "ROUGE-2"),
             Measure("rougeL", "ROUGE-L", tolerance=1.0)), headline="rougeL",
    valid=Measure("rouge_l", "valid ROUGE-L (greedy)", tolerance=1.0),
    generation={"--task": "summarization", "--post-process": "sentencepiece",
                "--scoring": "rouge"},
    tiny_sizes=SEQ2SEQ_SIZES, write_tiny=_write_summarization, tiny_style="xsum",
)

LANGUAGE_MODELING = Task(
    name="language_modeling", layout=Layout(("txt",)),
    archs={"transformer": "transformer_lm", "memsizer": "memsizer_lm"},
    evaluator=EVAL_LM,
    quality=(Measure("perplexity", "test perplexity", higher_is_better=False, tolerance=0.10,
                     relative=True),), headline="perplexity",
    # uptraining has reached the Transformer once within 5% of its best validation perplexity
    valid=Measure("ppl", "valid perplexity", higher_is_better=False, tolerance=0.05,
                  relative=True),
    generation={"--task": "language_modeling"},
    tiny_sizes={"train": 300, "valid": 20, "test": 20}, write_tiny=_write_text,
)

TASKS: Dict[str, Task] = {t.name: t for t in (TRANSLATION, SUMMARIZATION, LANGUAGE_MODELING)}
