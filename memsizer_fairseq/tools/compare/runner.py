"""Runs one task of the comparison in a work directory, stage by stage, resumably.

Stages: ``data`` (raw text, sentencepiece, fairseq-preprocess), ``train`` (the Transformer and the
Memsizer model, side by side), ``evaluate:<model>`` (test-set quality, generation time, output
length and decoding-state size), with ``frontier`` configurations ``train:frontier-<NAME>`` (two
at a time) and ``evaluate:frontier-<NAME>``, with ``uptrain`` ``uptrain`` (convert the trained
Transformer, fine-tune it as Memsizer) and ``evaluate:uptrained``, and for language models
``lm_generation_timing`` (every evaluated model, taking turns). What a finished stage measured is
kept in ``state.json`` (``run_state.py``: the rules by which a rerun resumes); fairseq-train
resumes from ``checkpoint_last.pt`` (saved every ``validate_every`` updates), so a stopped or
killed comparison loses at most that much.
"""
import argparse
import os
import shutil
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence

from ..toolkit import fairseq_cli, sentencepiece
from ..toolkit.flags import Args, merge_args, render_args
from . import data
from .evaluation import Evaluation
from .run_state import EVALUATE, FRONTIER, LM_TIMING, RunState, raised_patience
from .settings import ARCHS, TaskSettings
from .training import TrainingRun, run_training, train_side_by_side, training_summary

__all__ = ["Comparison", "memsizer_overrides", "raised_patience"]


def memsizer_overrides(args: Sequence[str]) -> Dict:
    """The Memsizer flags (slot counts, init scales, ...) among extra fairseq-train flags, as
    the converter's model overrides: the fine-tuned model must have the same shapes."""
    from ..toolkit.plugin import add_memsizer_args

    parser = argparse.ArgumentParser(add_help=False)
    add_memsizer_args(parser)
    known, _ = parser.parse_known_args(list(args))
    return {k: v for k, v in vars(known).items() if v is not None}


class Comparison:
    def __init__(self, task: TaskSettings, work_dir: str, raw_dir: Optional[str] = None,
                 tiny: bool = False, max_update: Optional[int] = None,
                 memsizer_args: Sequence[str] = (), train_args: Sequence[str] = (),
                 frontier: Optional[Dict[str, List[str]]] = None, uptrain: bool = False,
                 uptrain_updates: Optional[int] = None, attention_init: str = "svd",
                 threads: Optional[int] = None, device: str = "cpu", progress: bool = True,
                 evaluate_again: bool = False, vocab_size: Optional[int] = None, out=None):
        if not tiny and not raw_dir:
            raise ValueError(f"{task.name}: give the raw data directory (or use --tiny)")
        self.task = task
        self.tiny = tiny
        self.budget = task.budget(tiny)
        self.max_update = max_update or self.budget.max_update
        self.work_dir = os.path.abspath(work_dir)
        self.raw_dir = os.path.abspath(raw_dir) if raw_dir else os.path.join(self.work_dir, "raw")
        self.memsizer_args = list(memsizer_args)
        self.train_args = list(train_args)  # extra fairseq-train flags of every run
        self.uptrain = uptrain
        self.uptrain_updates = uptrain_updates or max(self.max_update // 4, 1)
        self.attention_init = attention_init
        self.vocab_size = vocab_size  # None: the task's, or as large as the corpus allows
        self.threads = threads or os.cpu_count() or 1
        self.device = device
        self.progress = progress
        self.out = out if out is not None else sys.stdout
        self.spm_dir = os.path.join(self.work_dir, "spm")
        self.data_bin = os.path.join(self.work_dir, "data-bin")
        self.evaluation = Evaluation(task, tiny, self.data_bin,
                                     os.path.join(self.work_dir, "logs"), self.threads, device)
        self.run_state = RunState(self.work_dir, task.name, self.say)
        # frontier configuration name -> its extra Memsizer flags, the work directory's
        # earlier ones included
        self.frontier = {name: list(flags) for name, flags in (frontier or {}).items()}
        self.frontier = self.run_state.load(self.settings_record(), self.frontier)
        if evaluate_again:  # e.g. to time generation again on a machine with nothing else running
            self.run_state.forget_evaluations()

    @property
    def state(self) -> Dict:
        return self.run_state.data

    def _save_state(self):
        self.run_state.save()

    def settings_record(self) -> Dict:
        """What a rerun must share with the run it resumes."""
        return {"task": self.task.name, "tiny": self.tiny, "raw_dir": self.raw_dir,
                "max_update": self.max_update, "memsizer_args": self.memsizer_args,
                "train_args": self.train_args,
                "frontier": self.frontier,
                "uptrain_updates": self.uptrain_updates if self.uptrain else None,
                "attention_init": self.attention_init if self.uptrain else None,
                "vocab_size": self.vocab_size,
                "shared_train_flags": {flag: str(value) for flag, value in
                                       self._shared_flags().items()
                                       if value is not None and value is not False}}

    # -- stages --------------------------------------------------------------------------------
    def stage(self, name: str, action: Callable[[], Dict]) -> Dict:
        if self._finished(name):
            return self.state["stages"][name]
        self.say(f"[{self.task.name}] {name} ...")
        start = time.time()
        return self._record(name, action(), start)

    def _finished(self, name: str) -> bool:
        if name not in self.state["stages"]:
            return False
        self.say(f"[{self.task.name}] {name}: done earlier (kept in {self.run_state.path})")
        return True

    def _record(self, name: str, result: Dict, start: float) -> Dict:
        """Keep a finished stage's result in state.json."""
        result["stage_seconds"] = round(time.time() - start, 1)
        self.state["stages"][name] = result
        self._save_state()
        return result

    def say(self, message: str):
        from tqdm import tqdm

        tqdm.write(message, file=self.out)

    def run(self) -> Dict:
        os.makedirs(self.work_dir, exist_ok=True)
        self._save_state()
        self.stage("data", self.prepare_data)
        runs = {name: self.training_run(name) for name in ARCHS}
        trained = self.state["stages"].get("train") or {}
        if "train" in self.state["stages"] and any(name not in trained for name in ARCHS):
            # the Memsizer run was set aside (--memsizer-args changed): train it alone, on the
            # same share of the cores as side by side
            del self.state["stages"]["train"]
            kept = {k: v for k, v in trained.items() if k in ARCHS}
            self.stage("train", lambda: {**kept, **self.train(
                [run for name, run in runs.items() if name not in kept], share=len(ARCHS))})
        else:
            self.stage("train", lambda: self.train(list(runs.values())))
        for name in ARCHS:
            self.stage(EVALUATE + name, lambda name=name: self.evaluate(runs[name]))
        frontier = [self.training_run(FRONTIER + name) for name in self.frontier]
        self.train_frontier(frontier)
        for run in frontier:
            self.stage(EVALUATE + run.name, lambda run=run: self.evaluate(run))
        if self.uptrain:
            uptrained = self.uptrained_run()
            self.stage("uptrain", lambda: self.train_uptrained(uptrained))
            self.stage(EVALUATE + "uptrained", lambda: self.evaluate(uptrained))
        if not self.task.task.evaluator.times_generation:
            self.time_generation()
        return self.state

    def prepare_data(self) -> Dict:
        if self.tiny:
            if os.path.isdir(self.raw_dir):
                shutil.rmtree(self.raw_dir)
            data.write_tiny_corpus(self.task, self.raw_dir)
        data.check_raw_dir(self.task, self.raw_dir)
        vocab = self.vocab_size or self.budget.spm_vocab
        try:
            data.learn_and_apply_spm(self.task, self.raw_dir, self.spm_dir, vocab,
                                     self.budget.valid_lines, hard_vocab_limit=not self.tiny,
                                     workers=self.threads)
        except sentencepiece.VocabularyTooLarge as error:
            if self.vocab_size:  # asked for: refuse
                raise ValueError(f"--vocab-size: {error}") from None
            vocab = error.allowed  # the task's default: as large as the corpus allows
            self.say(f"[{self.task.name}] {error}; using {vocab} (--vocab-size chooses)")
            data.learn_and_apply_spm(self.task, self.raw_dir, self.spm_dir, vocab,
                                     self.budget.valid_lines, workers=self.threads)
        data.binarize(self.task, self.spm_dir, self.data_bin, workers=self.threads)
        return dict(data.corpus_stats(self.task, self.spm_dir), spm_vocab=vocab)

    # -- the runs ------------------------------------------------------------------------------
    def _shared_flags(self) -> Args:
        """The training flags both models get (task, schedule, model size)."""
        return merge_args(merge_args(self.task.train, self.budget.model), self.budget.train)

    def _train_flags(self, name: str, extra: Args = None, max_update: Optional[int] = None
                     ) -> Args:
        budget = self.budget
        flags = merge_args(self._shared_flags(), {
            "--arch": self.task.archs["transformer" if name == "transformer" else "memsizer"],
            "--max-update": max_update or self.max_update,
            "--validate-interval-updates": budget.validate_every,
            "--save-interval-updates": budget.validate_every,
        })
        if self.device != "cpu":
            flags = merge_args(flags, {"--cpu": None})
        return merge_args(flags, extra)

    def training_run(self, name: str, extra: Args = None, max_update: Optional[int] = None
                     ) -> TrainingRun:
        save_dir = os.path.join(self.work_dir, "checkpoints", name)
        args = [self.data_bin, "--user-dir", fairseq_cli.USER_DIR,
                *render_args(self._train_flags(name, extra, max_update)), "--save-dir", save_dir,
                *self.train_args, *self._model_flags(name)]
        return TrainingRun(name, args, save_dir, os.path.join(self.work_dir, "logs",
                                                              f"train.{name}.log"),
                           max_update or self.max_update)

    def _model_flags(self, name: str) -> List[str]:
        """The flags one run adds to the shared ones: a frontier configuration's own, else
        ``--memsizer-args`` for every Memsizer model."""
        if name == "transformer":
            return []
        if name.startswith(FRONTIER):
            return self.frontier[name[len(FRONTIER):]]
        return self.memsizer_args

    def train(self, runs: List[TrainingRun], share: Optional[int] = None) -> Dict:
        """Train the runs at the same time (the cores split between them, or into ``share``
        parts), then summarise."""
        threads = max(1, self.threads // (share or len(runs)))
        return train_side_by_side(runs, threads, self.task.name, self.out, self.progress)

    def train_frontier(self, runs: List[TrainingRun]):
        """Train the frontier runs not trained yet, two at a time on the cores' shares of the
        ``train`` stage; each is its own stage ``train:<run>``."""
        pending = [run for run in runs if not self._finished(f"train:{run.name}")]
        for first in range(0, len(pending), len(ARCHS)):
            pair = pending[first:first + len(ARCHS)]
            self.say(f"[{self.task.name}] "
                     f"{', '.join(f'train:{run.name}' for run in pair)} ...")
            start = time.time()
            for name, summary in self.train(pair, share=len(ARCHS)).items():
                self._record(f"train:{name}", summary, start)

    def evaluate(self, run: TrainingRun) -> Dict:
        return self.evaluation.evaluate(run.name, os.path.join(run.save_dir, "checkpoint_best.pt"))

    def evaluated_runs(self) -> List[str]:
        return [name[len(EVALUATE):] for name in self.state["stages"] if name.startswith(EVALUATE)]

    def time_generation(self):
        """Time every evaluated model's generation together (again when models were added),
        for the tasks whose evaluator does not time it."""
        evaluated = self.evaluated_runs()
        timing = self.state["stages"].get(LM_TIMING)
        if timing and set(timing["seconds"]) != set(evaluated):
            self.say(f"[{self.task.name}] {LM_TIMING}: timed again, with every evaluated model "
                     f"({', '.join(evaluated)})")
            del self.state["stages"][LM_TIMING]
        checkpoints = {name: os.path.join(self.work_dir, "checkpoints", name,
                                          "checkpoint_best.pt") for name in evaluated}
        self.stage(LM_TIMING, lambda: self.evaluation.generation_timing(checkpoints))

    # -- uptraining ----------------------------------------------------------------------------
    def uptrained_run(self) -> TrainingRun:
        every = max(self.budget.validate_every // 4, 1)
        converted = os.path.join(self.work_dir, "checkpoints", "converted.pt")
        extra = {"--finetune-from-model": converted, "--validate-interval-updates": every,
                 "--save-interval-updates": every,
                 "--warmup-updates": max(self.budget.validate_every // 4, 1)}
        return self.training_run("uptrained", extra, max_update=self.uptrain_updates)

    def train_uptrained(self, run: TrainingRun) -> Dict:
        from ..uptrain import convert_checkpoint

        converted = run.args[run.args.index("--finetune-from-model") + 1]
        source = os.path.join(self.work_dir, "checkpoints", "transformer", "checkpoint_best.pt")
        report = convert_checkpoint(source, converted, memsizer_overrides(self.memsizer_args),
                                    attention_init=self.attention_init)
        # a rerun resumes from run.save_dir/checkpoint_last.pt: fairseq-train then ignores
        # --finetune-from-model
        run_training(run, self.threads, f"{self.task.name}: {run.name}", self.out, self.progress)
        summary = training_summary(run)
        summary["converted"] = {k: len(v) for k, v in report.items() if k != "arch"}
        return summary
