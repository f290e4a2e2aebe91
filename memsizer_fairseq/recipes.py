"""Runnable recipes for the paper's three tasks, with one shared runner.

    python -m memsizer_fairseq.recipes RECIPE --tiny                 # minutes, built-in corpus
    python -m memsizer_fairseq.recipes RECIPE --raw-dir DIR          # the user's real data
    python -m memsizer_fairseq.recipes RECIPE --raw-dir DIR --dry-run  # print the commands only

``RECIPE`` is one of ``wmt16_en_de``, ``iwslt14_de_en`` (translation), ``cnn_dm``, ``xsum``
(summarization) and ``wikitext103`` (language modelling); ``examples/<task>/run.sh`` wrap this.

Every recipe runs the same steps:

1. ``raw``: the raw text files (``--raw-dir``), or in ``--tiny`` mode a small synthetic corpus in
   the same layout (:mod:`memsizer_fairseq.synthetic_corpora`);
2. ``spm``: a joined sentencepiece (BPE) model learned on the source and target training text,
   applied to every split (the language model stays word-level: see ``wikitext103``);
3. ``fairseq-preprocess``, 4. ``fairseq-train``, 5. ``fairseq-generate`` (BLEU or ROUGE on
   detokenized text) or ``fairseq-eval-lm`` (perplexity).

The commands of steps 3-5 are the paper's (or, where the paper says nothing, a documented
choice). ``--tiny`` changes the model size, the schedule and the batch size, drops the GPU-only
flags (``--fp16``, ``--update-freq``) and, for the language model, swaps the adaptive softmax
(whose cutoffs need Wikitext-103's vocabulary) and NAG for a plain softmax and Adam, so that the
same pipeline runs end to end on two CPU cores in under a minute. Every command is printed
before it runs, so the output holds the exact command lines. In ``--tiny`` mode the recipe
starts afresh each time; on real data a second run keeps the binarized data and fairseq-train
resumes from ``checkpoint_last.pt``.
"""
import argparse
import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple, Union

from . import pipeline
from .corpus_checks import check_corpus
from .synthetic_corpora import write_toy_corpus

Value = Union[None, bool, int, float, str]
Args = Dict[str, Value]  # "--flag": value; True: a switch; None (in an override): drop the flag
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "config")


def merge_args(base: Args, override: Optional[Args] = None) -> Args:
    """``base`` updated by ``override`` (a ``None`` value removes the flag); order is kept."""
    merged = dict(base)
    for flag, value in (override or {}).items():
        if value is None:
            merged.pop(flag, None)
        else:
            merged[flag] = value
    return merged


def render_args(args: Args) -> List[str]:
    """``{"--beam": 4, "--cpu": True}`` -> ``["--beam", "4", "--cpu"]``."""
    out: List[str] = []
    for flag, value in args.items():
        if value is None or value is False:
            continue
        if value is True:
            out.append(flag)
        else:
            out += [flag, str(value)]
    return out


@dataclass(frozen=True)
class Tiny:
    """What ``--tiny`` changes: the corpus, the vocabulary, the model size and the schedule."""

    train: Args
    evaluate: Args = field(default_factory=dict)
    sizes: Dict[str, int] = field(default_factory=lambda: {"train": 3000, "valid": 100,
                                                           "test": 100})
    spm_vocab: int = 400


@dataclass(frozen=True)
class Recipe:
    name: str
    task: str  # examples/<task>/
    title: str
    corpus: str  # synthetic corpus kind for --tiny
    src: Optional[str]  # None: language modelling (one stream of text)
    tgt: Optional[str]
    spm_vocab: Optional[int]  # joined sentencepiece vocabulary; None: word level
    train: Args
    evaluate_tool: str  # "generate" or "eval-lm"
    evaluate: Args
    tiny: Tiny
    layout: str  # the raw files the user provides
    preprocess: Args = field(default_factory=dict)
    spm_options: Dict[str, Value] = field(default_factory=dict)

    @property
    def splits(self) -> Tuple[str, ...]:
        return ("train", "valid", "test")

    def raw_files(self, raw_dir: str) -> List[str]:
        if self.src is None:
            return [os.path.join(raw_dir, f"wiki.{s}.tokens") for s in self.splits]
        return [os.path.join(raw_dir, f"{s}.{lang}") for s in self.splits
                for lang in (self.src, self.tgt)]


# Flags every --tiny run adds (CPU, quiet, small checkpoints) or drops (GPU-only, big batches).
_TINY_COMMON: Args = {
    "--fp16": None, "--fp16-init-scale": None, "--update-freq": None, "--keep-last-epochs": None,
    "--cpu": True, "--num-workers": 0, "--seed": 1, "--no-epoch-checkpoints": True,
    "--log-format": "simple", "--log-interval": 50,
}
_TINY_GENERATE: Args = {"--cpu": True, "--batch-size": 50, "--num-workers": 0}

# --- translation -------------------------------------------------------------------------
# The paper's WMT16 En-De run (SPEC): Transformer-big, Memsizer in the decoder (k 4 / 32,
# init scales 8 / 8 = the arch defaults), Adam (0.9, 0.98), lr 5e-4, inverse_sqrt with 4000
# warm-up updates, dropout 0.3, label smoothing 0.1, 3584 tokens x 16, fp16, 90k updates;
# beam 4, lenpen 0.6.
_MT_TRAIN: Args = {
    "--task": "translation",
    "--arch": "memsizer_vaswani_wmt_en_de_big", "--share-all-embeddings": True,
    "--optimizer": "adam", "--adam-betas": "(0.9, 0.98)", "--clip-norm": 0.0,
    "--lr": 5e-4, "--lr-scheduler": "inverse_sqrt", "--warmup-updates": 4000,
    "--warmup-init-lr": 1e-07, "--dropout": 0.3, "--weight-decay": 0.0,
    "--criterion": "label_smoothed_cross_entropy", "--label-smoothing": 0.1,
    "--max-tokens": 3584, "--update-freq": 16, "--fp16": True, "--max-update": 90000,
}
_MT_TINY_TRAIN: Args = {
    "--arch": "memsizer_transformer_tiny", "--max-tokens": 1024, "--lr": 2e-3,
    "--warmup-updates": 100, "--dropout": 0.1, "--clip-norm": 1.0, "--max-update": 300,
}
_MT_TINY_EVALUATE: Args = {"--max-len-b": 50}

WMT16_EN_DE = Recipe(
    name="wmt16_en_de", task="translation", title="WMT16 English-German (the paper's MT run)",
    corpus="translation", src="en", tgt="de", spm_vocab=32000,
    train=_MT_TRAIN,
    evaluate_tool="generate",
    evaluate={"--task": "translation", "--beam": 4, "--lenpen": 0.6, "--max-tokens": 8000,
              "--post-process": "sentencepiece", "--scoring": "sacrebleu"},
    tiny=Tiny(train=_MT_TINY_TRAIN, evaluate=_MT_TINY_EVALUATE),
    layout="train.en train.de (WMT16 En-De training data, 4.5M pairs), valid.en valid.de "
           "(newstest2013), test.en test.de (newstest2014); plain untokenized text, one "
           "sentence per line, line i of .en aligned with line i of .de",
)

IWSLT14_DE_EN = Recipe(
    name="iwslt14_de_en", task="translation", title="IWSLT14 German-English",
    corpus="translation", src="de", tgt="en", spm_vocab=10000,
    # fairseq's IWSLT14 recipe with the paper's Memsizer decoder (the paper has no IWSLT run)
    train=merge_args(_MT_TRAIN, {
        "--arch": "memsizer_transformer_iwslt_de_en", "--share-all-embeddings": None,
        "--share-decoder-input-output-embed": True, "--warmup-init-lr": None,
        "--weight-decay": 0.0001, "--max-tokens": 4096, "--update-freq": None,
        "--fp16": None, "--max-update": 50000,
    }),
    evaluate_tool="generate",
    evaluate={"--task": "translation", "--beam": 5, "--max-tokens": 8000,
              "--post-process": "sentencepiece", "--scoring": "sacrebleu"},
    tiny=Tiny(train=merge_args(_MT_TINY_TRAIN, {"--share-decoder-input-output-embed": None,
                                                "--share-all-embeddings": True}),
              evaluate=_MT_TINY_EVALUATE),
    layout="train.de train.en, valid.de valid.en, test.de test.en: the IWSLT14 De-En TED "
           "talks split as fairseq's examples/translation/prepare-iwslt14.sh makes it (160k / "
           "7k / 6.8k pairs), before its BPE step; one sentence per line",
)

# --- summarization -----------------------------------------------------------------------
# The paper gives no summarization hyper-parameters: these are the MT settings above on the
# Transformer-base-sized summarization preset, with BART's decoding settings per data set.
_SUM_TRAIN: Args = {
    "--task": "summarization", "--truncate-source": "true",
    "--max-source-positions": 1024, "--max-target-positions": 1024,
    "--arch": "memsizer_transformer_summarization",
    "--optimizer": "adam", "--adam-betas": "(0.9, 0.98)", "--clip-norm": 0.0,
    "--lr": 5e-4, "--lr-scheduler": "inverse_sqrt", "--warmup-updates": 4000,
    "--warmup-init-lr": 1e-07, "--dropout": 0.1, "--weight-decay": 0.0,
    "--criterion": "label_smoothed_cross_entropy", "--label-smoothing": 0.1,
    "--max-tokens": 8192, "--update-freq": 8, "--fp16": True, "--max-update": 100000,
    "--skip-invalid-size-inputs-valid-test": True,
}
_SUM_TINY_TRAIN: Args = {
    "--arch": "memsizer_transformer_summarization_tiny", "--max-tokens": 1024, "--lr": 2e-3,
    "--warmup-updates": 100, "--clip-norm": 1.0, "--max-update": 500,
}
_SUM_TINY_EVALUATE: Args = {"--min-len": 5, "--max-len-b": 60, "--lenpen": 1.0}

CNN_DM = Recipe(
    name="cnn_dm", task="summarization", title="CNN/DailyMail (abstractive, multi-sentence)",
    corpus="cnn_dm", src="source", tgt="target", spm_vocab=32000,
    train=_SUM_TRAIN,
    evaluate_tool="generate",
    evaluate={"--task": "summarization", "--beam": 4, "--lenpen": 2.0, "--max-len-b": 140,
              "--min-len": 55, "--no-repeat-ngram-size": 3, "--max-tokens": 16384,
              "--post-process": "sentencepiece", "--scoring": "rouge",
              "--rouge-use-stemmer": True},
    tiny=Tiny(train=_SUM_TINY_TRAIN, evaluate=_SUM_TINY_EVALUATE),
    layout="train.source train.target, valid.source valid.target, test.source test.target: "
           "the non-anonymized CNN/DailyMail split of See et al. (287k / 13k / 11k articles), "
           "one article (.source) or its highlights joined into one line (.target) per line",
)

XSUM = Recipe(
    name="xsum", task="summarization", title="XSum (abstractive, one sentence)",
    corpus="xsum", src="source", tgt="target", spm_vocab=32000,
    train=merge_args(_SUM_TRAIN, {"--max-update": 50000}),
    evaluate_tool="generate",
    evaluate={"--task": "summarization", "--beam": 6, "--lenpen": 1.0, "--max-len-b": 60,
              "--min-len": 10, "--no-repeat-ngram-size": 3, "--max-tokens": 16384,
              "--post-process": "sentencepiece", "--scoring": "rouge",
              "--rouge-use-stemmer": True},
    tiny=Tiny(train=_SUM_TINY_TRAIN, evaluate=_SUM_TINY_EVALUATE),
    layout="train.source train.target, valid.source valid.target, test.source test.target: "
           "XSum's official split (204k / 11k / 11k BBC articles), one article or its "
           "one-sentence summary per line",
)

# --- language modelling --------------------------------------------------------------------
# The paper's Wikitext-103 run: Baevski & Auli's adaptive-input model with 32 layers and
# layerdrop 0.2 (memsizer_lm_wiki103), Memsizer in every layer (k 32, scales 32 / 1), 512 tokens
# per sample, dropout 0.2, NAG with the cosine schedule, fp16 from loss scale 8, seed 8: the
# authors' command.
WIKITEXT103 = Recipe(
    name="wikitext103", task="language_modeling", title="Wikitext-103 (word level)",
    corpus="wikitext", src=None, tgt=None, spm_vocab=None,
    preprocess={"--only-source": True},
    train={
        "--task": "language_modeling", "--arch": "memsizer_lm_wiki103",
        "--tokens-per-sample": 512, "--sample-break-mode": "none",
        "--max-tokens": 3072, "--update-freq": 3, "--max-update": 286000,
        "--optimizer": "nag", "--lr": 1.0, "--lr-scheduler": "cosine", "--t-mult": 2,
        "--lr-period-updates": 270000, "--lr-shrink": 0.75, "--warmup-updates": 16000,
        "--warmup-init-lr": 1e-07, "--stop-min-lr": 1e-09, "--min-lr": 1e-4,
        "--clip-norm": 0.1, "--criterion": "adaptive_loss", "--dropout": 0.2, "--seed": 8,
        "--fp16": True, "--fp16-init-scale": 8,
        "--ddp-backend": "legacy_ddp", "--skip-invalid-size-inputs-valid-test": True,
    },
    evaluate_tool="eval-lm",
    evaluate={"--task": "language_modeling", "--sample-break-mode": "complete",
              "--tokens-per-sample": 512, "--context-window": 400, "--max-tokens": 3072,
              "--softmax-batch": 1024},
    tiny=Tiny(
        train={
            "--arch": "memsizer_lm", "--decoder-layers": 2, "--decoder-embed-dim": 64,
            "--decoder-ffn-embed-dim": 128, "--decoder-attention-heads": 2,
            "--tokens-per-sample": 128, "--max-tokens": 1024, "--criterion": "cross_entropy",
            "--optimizer": "adam", "--adam-betas": "(0.9, 0.98)", "--lr": 2e-3,
            "--lr-scheduler": "inverse_sqrt", "--warmup-updates": 50, "--t-mult": None,
            "--lr-period-updates": None, "--lr-shrink": None, "--stop-min-lr": None,
            "--min-lr": None, "--clip-norm": 1.0, "--max-update": 300,
            "--share-decoder-input-output-embed": True,
        },
        evaluate={"--tokens-per-sample": 128, "--context-window": 64, "--max-tokens": 1024},
        sizes={"train": 300, "valid": 20, "test": 20},
    ),
    layout="wiki.train.tokens wiki.valid.tokens wiki.test.tokens: Wikitext-103 v1 "
           "(word level, 103M / 218k / 246k tokens) as distributed (wikitext-103-v1.zip)",
)

RECIPES: Dict[str, Recipe] = {r.name: r for r in (WMT16_EN_DE, IWSLT14_DE_EN, CNN_DM, XSUM,
                                                  WIKITEXT103)}
TASK_RECIPES: Dict[str, List[str]] = {}
for _recipe in RECIPES.values():
    TASK_RECIPES.setdefault(_recipe.task, []).append(_recipe.name)


# --- the runner ------------------------------------------------------------------------------
@dataclass
class RecipeResult:
    recipe: str
    tiny: bool
    result_line: str
    seconds: float
    work_dir: str
    log: List[str]


class Runner:
    """Runs (or, with ``dry_run``, only prints) the steps of one recipe in ``work_dir``."""

    def __init__(self, recipe: Recipe, work_dir: str, raw_dir: Optional[str] = None,
                 tiny: bool = False, workers: int = 1, dry_run: bool = False,
                 extra_train: Sequence[str] = (), extra_evaluate: Sequence[str] = (),
                 out=None):
        if not tiny and not raw_dir:
            raise ValueError("give --raw-dir DIR with your raw text files, or --tiny")
        self.recipe = recipe
        self.tiny = tiny
        self.work_dir = os.path.abspath(work_dir)
        self.raw_dir = os.path.abspath(raw_dir or os.path.join(self.work_dir, "raw"))
        self.workers = workers
        self.dry_run = dry_run
        self.extra_train = list(extra_train)
        self.extra_evaluate = list(extra_evaluate)
        self.out = out if out is not None else sys.stdout
        self.log: List[str] = []
        self.spm_dir = os.path.join(self.work_dir, "spm")
        self.data_bin = os.path.join(self.work_dir, "data-bin")
        self.save_dir = os.path.join(self.work_dir, "checkpoints")

    # what the steps run ------------------------------------------------------------------
    def spm_vocab(self) -> Optional[int]:
        if self.recipe.spm_vocab is None:
            return None
        return self.recipe.tiny.spm_vocab if self.tiny else self.recipe.spm_vocab

    def preprocess_args(self) -> List[str]:
        r = self.recipe
        if r.src is None:
            prefix = lambda split: os.path.join(self.raw_dir, f"wiki.{split}.tokens")  # noqa
            args: Args = {"--trainpref": prefix("train"), "--validpref": prefix("valid"),
                          "--testpref": prefix("test")}
        else:
            prefix = lambda split: os.path.join(self.spm_dir, split)  # noqa
            args = {"--source-lang": r.src, "--target-lang": r.tgt,
                    "--trainpref": prefix("train"), "--validpref": prefix("valid"),
                    "--testpref": prefix("test"), "--joined-dictionary": True}
        args.update({"--destdir": self.data_bin, "--workers": self.workers})
        return render_args(merge_args(args, r.preprocess))

    def train_args(self) -> List[str]:
        args = self.recipe.train
        if self.tiny:
            args = merge_args(merge_args(args, _TINY_COMMON), self.recipe.tiny.train)
        return [self.data_bin, "--user-dir", pipeline.USER_DIR, *render_args(args),
                "--save-dir", self.save_dir, *self.extra_train]

    def evaluate_args(self) -> List[str]:
        args = self.recipe.evaluate
        if self.tiny:
            args = merge_args(merge_args(args, _TINY_GENERATE), self.recipe.tiny.evaluate)
        if self.recipe.evaluate_tool == "eval-lm":
            args = merge_args(args, {"--batch-size": None})
        checkpoint = os.path.join(self.save_dir, "checkpoint_best.pt")
        return [self.data_bin, "--user-dir", pipeline.USER_DIR, "--path", checkpoint,
                "--gen-subset", "test", *render_args(args), *self.extra_evaluate]

    # running ------------------------------------------------------------------------------
    def say(self, message: str):
        print(message, file=self.out, flush=True)

    def fairseq(self, tool: str, args: List[str], log_name: str) -> str:
        self.say("$ " + shlex.join(["fairseq-" + tool, *args]))
        if self.dry_run:
            return ""
        output = pipeline.run_fairseq(tool, args, os.path.join(self.work_dir, "logs", log_name))
        self.log.append(output)
        return output

    def step_raw(self):
        if self.tiny:
            self.say(f"[raw] writing the synthetic {self.recipe.corpus} corpus to {self.raw_dir}")
            if not self.dry_run:
                write_toy_corpus(self.recipe.corpus, self.raw_dir, self.recipe.tiny.sizes,
                                 src=self.recipe.src, tgt=self.recipe.tgt)
        self.check_raw()

    def check_raw(self):
        """Refuse missing or unusable raw files (before anything is written)."""
        files = self.recipe.raw_files(self.raw_dir)
        missing = [p for p in files if not os.path.exists(p)]
        if missing and not self.dry_run:
            raise FileNotFoundError(
                f"{self.recipe.name}: missing raw files {missing}; expected in --raw-dir: "
                f"{self.recipe.layout}"
            )
        if not self.dry_run:  # readable UTF-8 text, parallel sides of equal length
            check_corpus(files, list(zip(files[::2], files[1::2])) if self.recipe.src else [])

    def step_spm(self):
        vocab = self.spm_vocab()
        if vocab is None:
            self.say("[spm] word-level data: no sentencepiece model")
            return
        r = self.recipe
        model = os.path.join(self.spm_dir, "spm.model")
        options = dict(
            model_type="bpe", vocab_size=vocab, character_coverage=1.0,
            input_sentence_size=10_000_000, shuffle_input_sentence=True,
            hard_vocab_limit=not self.tiny, num_threads=max(1, self.workers),
        )
        options.update(r.spm_options)
        inputs = [os.path.join(self.raw_dir, f"train.{lang}") for lang in (r.src, r.tgt)]
        self.say(f"[spm] learning a joined sentencepiece model on {' + '.join(inputs)}: "
                 + ", ".join(f"{k}={v}" for k, v in options.items()))
        if self.dry_run:
            return
        import sentencepiece as spm

        os.makedirs(self.spm_dir, exist_ok=True)
        spm.SentencePieceTrainer.train(input=inputs, model_prefix=model[:-len(".model")],
                                       minloglevel=2, **options)
        processor = spm.SentencePieceProcessor(model_file=model)
        for split in r.splits:
            for lang in (r.src, r.tgt):
                source = os.path.join(self.raw_dir, f"{split}.{lang}")
                target = os.path.join(self.spm_dir, f"{split}.{lang}")
                encode_file(processor, source, target, self.workers)
        self.say(f"[spm] encoded {len(r.splits) * 2} files into {self.spm_dir}")

    def fresh_start(self):
        """``--tiny`` always starts over: remove what an earlier tiny run of this recipe made."""
        import shutil

        for path in (self.raw_dir, self.spm_dir, self.data_bin, self.save_dir,
                     os.path.join(self.work_dir, "logs")):
            if os.path.isdir(path):
                shutil.rmtree(path)

    def binarized(self) -> bool:
        """Whether fairseq-preprocess finished here (the test split is written last)."""
        r = self.recipe
        last = "test.idx" if r.src is None else f"test.{r.src}-{r.tgt}.{r.tgt}.idx"
        return os.path.exists(os.path.join(self.data_bin, last))

    def run(self) -> RecipeResult:
        start = time.time()
        mode = "tiny" if self.tiny else "full"
        self.say(f"== {self.recipe.name} ({self.recipe.title}), {mode} mode, in {self.work_dir}")
        if not self.dry_run:
            if self.tiny:
                self.fresh_start()
            elif not self.binarized():
                self.check_raw()
            os.makedirs(self.work_dir, exist_ok=True)
        if not self.dry_run and not self.tiny and self.binarized():
            # a second run on real data: keep the binarized data, resume training
            self.say(f"[skip] {self.data_bin} holds binarized data: skipping spm and "
                     "preprocessing (delete it to redo them); fairseq-train resumes from "
                     f"{self.save_dir}/checkpoint_last.pt if it exists")
        else:
            self.step_raw()
            self.step_spm()
            self.fairseq("preprocess", self.preprocess_args(), "preprocess.log")
        self.fairseq("train", self.train_args(), "train.log")
        output = self.fairseq(self.recipe.evaluate_tool, self.evaluate_args(), "evaluate.log")
        result = result_line(output) if not self.dry_run else "(dry run)"
        seconds = time.time() - start
        self.say(result)
        self.say(f"== {self.recipe.name} {mode}: done in {seconds:.0f}s")
        return RecipeResult(self.recipe.name, self.tiny, result, seconds, self.work_dir, self.log)


def encode_file(processor, source: str, target: str, workers: int = 1, chunk: int = 10000):
    """Write the sentencepiece pieces of every line of ``source`` (one line out per line in)."""
    with open(source, encoding="utf-8") as fin, open(target, "w", encoding="utf-8") as fout:
        lines: List[str] = []

        def flush():
            pieces = processor.encode(lines, out_type=str, num_threads=max(1, workers))
            fout.writelines(" ".join(p) + "\n" for p in pieces)
            lines.clear()

        for line in fin:
            lines.append(line.strip())
            if len(lines) >= chunk:
                flush()
        if lines:
            flush()


def result_line(output: str) -> str:
    """The score line of fairseq-generate (``Generate ...``) or fairseq-eval-lm (``Loss ...``)."""
    for line in reversed(output.splitlines()):
        if line.startswith("Generate "):
            return line
        if "Loss (base 2):" in line and "Perplexity:" in line:
            return line[line.index("Loss (base 2):"):]
    raise ValueError("no score line in the output:\n" + "\n".join(output.splitlines()[-20:]))


# --- fairseq-hydra-train configs ------------------------------------------------------------
# Where a value lives: fairseq's own groups first (tasks, criterions and schedulers repeat some
# of their fields, e.g. ``seed``, ``lr``, ``max_update``, as interpolations), then the
# registries' groups; what no group has belongs to the (legacy) model.
_HYDRA_GROUPS = ("common", "dataset", "optimization", "checkpoint", "distributed_training",
                 "task", "criterion", "optimizer", "lr_scheduler")
_HYDRA_NAMED = {"--task": "task", "--arch": "model", "--criterion": "criterion",
                "--optimizer": "optimizer", "--lr-scheduler": "lr_scheduler"}


def hydra_config(recipe: Recipe, tiny: bool = False) -> Dict[str, Dict]:
    """The recipe's fairseq-train arguments as a ``fairseq-hydra-train`` config.

    fairseq's own parser reads the arguments; each value is then taken (typed) from the config
    fairseq builds from them, in the group that owns it. ``task.data`` and
    ``common.user_dir`` are left mandatory (``???``): give them on the command line.
    """
    from fairseq import options
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from omegaconf import OmegaConf

    train = recipe.train
    if tiny:
        train = merge_args(merge_args(train, _TINY_COMMON), recipe.tiny.train)
    parser = options.get_training_parser()
    args = options.parse_args_and_arch(
        parser, ["DATA", "--user-dir", pipeline.USER_DIR, *render_args(train)])
    cfg = convert_namespace_to_omegaconf(args)
    groups = {name: OmegaConf.to_container(cfg[name]) for name in _HYDRA_GROUPS}
    out: Dict[str, Dict] = {"common": {"user_dir": "???"}, "task": {"data": "???"}}
    for flag in train:
        if flag in _HYDRA_NAMED:
            name = args.arch if flag == "--arch" else getattr(args, _HYDRA_NAMED[flag])
            out.setdefault(_HYDRA_NAMED[flag], {})["_name"] = name
            continue
        key = flag[2:].replace("-", "_")
        for group in _HYDRA_GROUPS:
            value = groups[group].get(key, MISSING_KEY)
            if value is not MISSING_KEY:
                break
        else:
            group, value = "model", getattr(args, key)  # legacy model: the flat namespace
        out.setdefault(group, {})[key] = value
    order = ("common", "task", "model", "criterion", "optimizer", "lr_scheduler",
             "optimization", "dataset", "checkpoint", "distributed_training")
    return {group: out[group] for group in order if group in out}


MISSING_KEY = object()


def hydra_yaml(recipe: Recipe, tiny: bool = False) -> str:
    from omegaconf import OmegaConf

    body = OmegaConf.to_yaml(OmegaConf.create(hydra_config(recipe, tiny)))
    return (
        f"# @package _group_\n"
        f"# {recipe.title}: the fairseq-train arguments of the recipe {recipe.name!r}\n"
        f"# (memsizer_fairseq/recipes.py) as a fairseq-hydra-train config. Generated by\n"
        f"#   python -m memsizer_fairseq.recipes --write-configs\n"
        f"# Run from anywhere with\n"
        f"#   fairseq-hydra-train --config-dir memsizer_fairseq/config --config-name "
        f"{recipe.name} \\\n"
        f"#       task.data=/abs/data-bin common.user_dir=/abs/memsizer_fairseq "
        f"checkpoint.save_dir=/abs/checkpoints\n"
        "hydra:\n  run:\n    dir: .\n" + body
    )


def write_configs(config_dir: str = CONFIG_DIR) -> List[str]:
    os.makedirs(config_dir, exist_ok=True)
    paths = []
    for recipe in RECIPES.values():
        path = os.path.join(config_dir, f"{recipe.name}.yaml")
        with open(path, "w") as f:
            f.write(hydra_yaml(recipe))
        paths.append(path)
    return paths


def main(argv: Optional[Sequence[str]] = None) -> Optional[RecipeResult]:
    """``[--task TASK] RECIPE (--tiny | --raw-dir DIR) ...``; ``--task`` narrows the recipes."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv == ["--write-configs"]:
        for path in write_configs():
            print(path)
        return None
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--task", choices=sorted(TASK_RECIPES))
    known, argv = pre.parse_known_args(argv)
    task = known.task
    names = TASK_RECIPES[task] if task else list(RECIPES)
    parser = argparse.ArgumentParser(
        prog=f"examples/{task}/run.sh" if task else "python -m memsizer_fairseq.recipes",
        description="Data preparation, training and evaluation of a Memsizer recipe "
        f"({', '.join(names)}).",
    )
    if len(names) == 1:
        parser.add_argument("recipe", nargs="?", default=names[0], choices=names)
    else:
        parser.add_argument("recipe", choices=names)
    parser.add_argument("--tiny", action="store_true",
                        help="run on a small synthetic corpus the recipe builds (minutes, CPU)")
    parser.add_argument("--raw-dir", help="folder with the raw text files (see the README)")
    parser.add_argument("--work-dir", help="where data, checkpoints and logs go "
                        "(default: runs/<recipe>[-tiny] in the repository)")
    parser.add_argument("--workers", type=int, default=1, help="preprocessing workers")
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    parser.add_argument("--train-args", default="", help="extra fairseq-train arguments")
    parser.add_argument("--evaluate-args", default="",
                        help="extra fairseq-generate / fairseq-eval-lm arguments")
    args = parser.parse_args(argv)
    if not args.tiny and not args.raw_dir:
        parser.error("give --raw-dir DIR with your raw text files, or --tiny")
    recipe = RECIPES[args.recipe]
    work_dir = args.work_dir or os.path.join(
        REPO_ROOT, "runs", recipe.name + ("-tiny" if args.tiny else ""))
    runner = Runner(recipe, work_dir, raw_dir=args.raw_dir, tiny=args.tiny,
                    workers=args.workers, dry_run=args.dry_run,
                    extra_train=shlex.split(args.train_args),
                    extra_evaluate=shlex.split(args.evaluate_args))
    try:
        return runner.run()
    except (FileNotFoundError, ValueError, pipeline.FairseqCommandError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
