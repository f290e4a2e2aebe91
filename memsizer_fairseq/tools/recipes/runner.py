"""Runs the steps of one recipe: raw text, sentencepiece, fairseq-preprocess, -train, and
fairseq-generate or fairseq-eval-lm (in this process, its hypotheses scored with sacreBLEU or
rouge-score: ``tools/tasks.py``); fairseq-train is a subprocess that resumes after Ctrl-C."""
import os
import shlex
import shutil
import sys
import time
from dataclasses import dataclass
from typing import List, Optional, Sequence, TextIO

from ..tasks import SPLITS
from ..toolkit import fairseq_cli, sentencepiece
from ..toolkit.flags import merge_args, render_args
from ..toolkit.plugin import ENVIRONMENT_VARIABLE, fixes_on
from .catalog import TINY_COMMON, TINY_GENERATE, Recipe


@dataclass
class RecipeResult:
    recipe: str
    tiny: bool
    result_line: str
    seconds: float
    work_dir: str
    log: List[str]


@dataclass
class Runner:
    """Runs (or, with ``dry_run``, only prints) the steps of one recipe in ``work_dir``."""

    recipe: Recipe
    work_dir: str
    raw_dir: Optional[str] = None
    tiny: bool = False
    workers: int = 1
    dry_run: bool = False
    extra_train: Sequence[str] = ()
    extra_evaluate: Sequence[str] = ()
    out: Optional[TextIO] = None  # default: sys.stdout

    def __post_init__(self):
        if not self.tiny and not self.raw_dir:
            raise ValueError("give --raw-dir DIR with your raw text files, or --tiny")
        self.work_dir = os.path.abspath(self.work_dir)
        self.raw_dir = os.path.abspath(self.raw_dir or os.path.join(self.work_dir, "raw"))
        self.out = self.out if self.out is not None else sys.stdout
        self.log: List[str] = []
        self.spm_dir = os.path.join(self.work_dir, "spm")
        self.data_bin = os.path.join(self.work_dir, "data-bin")
        self.save_dir = os.path.join(self.work_dir, "checkpoints")
        self.logs_dir = os.path.join(self.work_dir, "logs")

    def preprocess_args(self) -> List[str]:
        r = self.recipe
        # the sentencepiece pieces, or word-level text as it is
        pieces = self.spm_dir if r.spm_vocab is not None else self.raw_dir
        return render_args(merge_args(r.layout.preprocess_args(pieces),
                                      {"--destdir": self.data_bin, "--workers": self.workers}))

    def train_args(self) -> List[str]:
        args = self.recipe.train
        if self.tiny:
            args = merge_args(merge_args(args, TINY_COMMON), self.recipe.tiny.train)
        return [self.data_bin, "--user-dir", fairseq_cli.USER_DIR, *render_args(args),
                "--save-dir", self.save_dir, *self.extra_train]

    def evaluate_args(self) -> List[str]:
        args = merge_args(self.recipe.task.generation, self.recipe.evaluate)
        if self.tiny:
            args = merge_args(merge_args(args, TINY_GENERATE), self.recipe.tiny.evaluate)
        if not self.recipe.task.paired:  # fairseq-eval-lm batches by --max-tokens
            args = merge_args(args, {"--batch-size": None})
        checkpoint = os.path.join(self.save_dir, "checkpoint_best.pt")
        return [self.data_bin, "--user-dir", fairseq_cli.USER_DIR, "--path", checkpoint,
                "--gen-subset", "test", *render_args(args), *self.extra_evaluate]

    def say(self, message: str):
        print(message, file=self.out, flush=True)

    def evaluate(self) -> str:
        """The test set's scores, one line (the command printed first, as it would run), with
        every test item kept (``keep_last_batch``) and, where the flags ask for it, n-gram
        blocking that blocks (``no_repeat_ngram``)."""
        task, args = self.recipe.task, self.evaluate_args()
        fixes = ("keep_last_batch",) + (
            ("no_repeat_ngram",) if "--no-repeat-ngram-size" in args else ())
        self.say(f"$ {ENVIRONMENT_VARIABLE}={','.join(fixes)} " + shlex.join(
            [f"fairseq-{task.evaluator.tool}", *args]))
        with fixes_on(fixes):
            scores, _ = task.evaluator.run(args, os.path.join(self.logs_dir, "evaluate.log"))
        return "test: " + ", ".join(f"{m.label} = {scores[m.key]:.2f}" for m in task.quality)

    def step_raw(self):
        r = self.recipe
        if self.tiny:
            self.say(f"[raw] writing a synthetic {r.task.name} corpus to {self.raw_dir}")
            if not self.dry_run:
                r.task.write_tiny_corpus(self.raw_dir, r.layout, style=r.tiny_style)
        if not self.dry_run:  # refuse missing or unusable raw files before anything is written
            r.layout.check(self.raw_dir, f"{r.name} (--raw-dir: {r.about})")

    def step_spm(self):
        if self.recipe.spm_vocab is None:
            self.say("[spm] word-level data: no sentencepiece model")
            return
        vocab = self.recipe.tiny.spm_vocab if self.tiny else self.recipe.spm_vocab
        layout = self.recipe.layout
        options = sentencepiece.bpe_options(vocab, hard_vocab_limit=not self.tiny,
                                            workers=self.workers)
        inputs = [layout.file(self.raw_dir, "train", side) for side in layout.sides]
        self.say(f"[spm] learning a joined sentencepiece model on {' + '.join(inputs)}: "
                 + ", ".join(f"{k}={v}" for k, v in options.items()))
        if not self.dry_run:
            layout.encode(self.raw_dir, self.spm_dir, options, self.workers)
            self.say(f"[spm] encoded {len(SPLITS) * len(layout.sides)} files into "
                     f"{self.spm_dir}")

    def step_preprocess(self):
        """fairseq-preprocess into a temporary folder renamed to ``data-bin`` when complete."""
        args = self.preprocess_args()
        self.say("$ " + shlex.join(["fairseq-preprocess", *args]))
        if not self.dry_run:
            at = args.index("--destdir")
            self.log.append(fairseq_cli.binarize(args[:at] + args[at + 2:], self.data_bin,
                                                 os.path.join(self.logs_dir, "preprocess.log")))

    def binarized(self) -> bool:
        """Whether fairseq-preprocess finished here (the test split is written last)."""
        sides = self.recipe.layout.sides
        last = f"test.{sides[0]}-{sides[1]}.{sides[1]}.idx" if len(sides) == 2 else "test.idx"
        return os.path.exists(os.path.join(self.data_bin, last))

    def run(self) -> RecipeResult:
        start = time.time()
        mode = "tiny" if self.tiny else "full"
        self.say(f"== {self.recipe.name} ({self.recipe.title}), {mode} mode, in {self.work_dir}")
        if self.tiny and not self.dry_run:  # --tiny starts over: remove an earlier run's output
            for path in (self.raw_dir, self.spm_dir, self.data_bin, self.save_dir, self.logs_dir):
                if os.path.isdir(path):
                    shutil.rmtree(path)
        if not self.dry_run and not self.tiny and self.binarized():
            # a second run on real data: keep the binarized data, resume training
            self.say(f"[skip] {self.data_bin} holds binarized data: skipping spm and "
                     "preprocessing (delete it to redo them); fairseq-train resumes from "
                     f"{self.save_dir}/checkpoint_last.pt if it exists")
        else:
            self.step_raw()  # checks the raw files before anything is written
            if not self.dry_run:
                os.makedirs(self.work_dir, exist_ok=True)
            self.step_spm()
            self.step_preprocess()
        train = self.train_args()
        self.say("$ " + shlex.join(["fairseq-train", *train]))
        if not self.dry_run:
            self.log.append(fairseq_cli.run_fairseq(
                "train", train, os.path.join(self.logs_dir, "train.log")))
        result = self.evaluate() if not self.dry_run else "(dry run)"
        seconds = time.time() - start
        self.say(result)
        self.say(f"== {self.recipe.name} {mode}: done in {seconds:.0f}s")
        return RecipeResult(self.recipe.name, self.tiny, result, seconds, self.work_dir, self.log)
