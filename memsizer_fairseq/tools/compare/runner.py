"""Runs one task of the comparison at one budget in a work directory, step by step, resumably.

Configurations: ``transformer``, ``memsizer`` (the paper's setting with ``--memsizer-args``),
``frontier-NAME`` (other Memsizer settings, from scratch), ``uptrained-NAME`` (the trained
Transformer converted by the uptrain command with NAME's flags, then fine-tuned) and, with
distillation, ``distill-`` + each Memsizer configuration (trained on the Transformer's
translations of the training split). Each is trained once per seed.

Steps, each kept in ``state.json`` when finished (``run_state.py``: the rules by which a rerun
resumes): ``data``; ``train:CONFIG@SEED`` (two runs side by side on halves of the cores; a
stopped run resumes from its ``checkpoint_last.pt``, saved every ``validate_every`` updates);
``evaluate:CONFIG@SEED`` (each model alone); ``distill@SEED``; ``convert:uptrained-NAME@SEED``;
``lm_generation_timing@SEED`` (the language models of a seed, taking turns).
"""
import argparse
import contextlib
import json
import os
import shlex
import shutil
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence

import torch

from .. import uptrain
from ..toolkit import fairseq_cli, sentencepiece
from ..toolkit.flags import Args, merge_args, render_args
from . import data
from .evaluation import Evaluation, write_distilled_pieces
from .run_state import DISTILLED, FRONTIER, LM_TIMING, UPTRAINED, RunState, parse_step
from .settings import TaskSettings
from .training import TrainingRun, train_side_by_side

SIDE_BY_SIDE = 2  # training runs at a time, each on its share of the cores


def memsizer_flags(args: Sequence[str]) -> List[str]:
    """The Memsizer flags (slot counts, init scales, ...) among fairseq-train or uptrain flags,
    as given: a converted checkpoint and its fine-tuning must have the same shapes."""
    from ..toolkit.plugin import add_memsizer_args

    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    add_memsizer_args(parser)
    rest = iter(parser.parse_known_args(list(args))[1])
    other = next(rest, None)
    flags = []
    for token in args:  # the others are a subsequence of args: what is not one of them is ours
        if token == other:
            other = next(rest, None)
        else:
            flags.append(token)
    return flags


class Comparison:
    def __init__(self, task: TaskSettings, work_dir: str, budget: str = "full",
                 raw_dir: Optional[str] = None, seeds: Sequence[int] = (1,),
                 max_update: Optional[int] = None, memsizer_args: Sequence[str] = (),
                 train_args: Sequence[str] = (),
                 frontier: Optional[Dict[str, List[str]]] = None, uptrain: bool = False,
                 uptrain_configs: Optional[Dict[str, List[str]]] = None,
                 uptrain_updates: Optional[int] = None, attention_init: str = "svd",
                 distill: bool = False, fixes: Sequence[str] = (),
                 threads: Optional[int] = None, device: str = "cpu", progress: bool = True,
                 evaluate_again: bool = False, vocab_size: Optional[int] = None, out=None):
        self.task = task
        self.budget = task.budgets[budget]
        if not self.budget.synthetic and not raw_dir:
            raise ValueError(f"{task.name}: give the raw data directory (or use --budget tiny)")
        self.work_dir = os.path.abspath(work_dir)
        self.raw_dir = os.path.abspath(raw_dir) if raw_dir else os.path.join(self.work_dir, "raw")
        self.seeds = list(seeds)
        self.max_update = max_update or self.budget.max_update
        self.uptrain = uptrain
        self.distill = distill and task.task.paired
        self.threads = threads or os.cpu_count() or 1
        self.device = device
        self.progress = progress
        self.out = out if out is not None else sys.stdout
        self.spm_dir = os.path.join(self.work_dir, "spm")
        self.data_bin = os.path.join(self.work_dir, "data-bin")
        self.evaluation = Evaluation(task, budget, self.threads, device)
        self.run_state = RunState(self.work_dir, task.name, self.say)
        self.settings = self.run_state.load({
            "task": task.name, "budget": budget, "raw_dir": self.raw_dir,
            "max_update": self.max_update, "memsizer_args": list(memsizer_args),
            "train_args": list(train_args),
            "frontier": {name: list(flags) for name, flags in (frontier or {}).items()},
            "uptrain_configs": {name: list(flags)
                                for name, flags in (uptrain_configs or {}).items()},
            "uptrain_updates": uptrain_updates or max(self.max_update // 3, 1),
            "attention_init": attention_init, "vocab_size": vocab_size, "fixes": list(fixes),
            "shared_train_flags": {flag: str(value) for flag, value in self._shared_flags().items()
                                   if value is not None and value is not False}})
        if uptrain and not self.settings["uptrain_configs"]:
            self.settings["uptrain_configs"]["plain"] = []  # converted without flags
        if evaluate_again:  # e.g. to time generation again on a machine with nothing else running
            self.run_state.forget(lambda kind, config: kind in ("evaluate", LM_TIMING))

    @property
    def state(self) -> Dict:
        return self.run_state.data

    def from_scratch(self) -> List[str]:
        return ["transformer", "memsizer", *(FRONTIER + name for name in self.settings["frontier"])]

    def from_transformer(self) -> List[str]:  # uptrained, distilled
        uptrained = [UPTRAINED + name for name in self.settings["uptrain_configs"]
                     ] if self.uptrain else []
        distilled = [DISTILLED + config for config in self.from_scratch()[1:] + uptrained
                     ] if self.distill else []
        return uptrained + distilled

    def _flags(self, config: str) -> List[str]:
        """The fairseq-train flags a configuration adds to the shared ones."""
        base = config.removeprefix(DISTILLED)
        if base == "transformer":
            return []
        if base.startswith(FRONTIER):
            return self.settings["frontier"][base.removeprefix(FRONTIER)]
        if base.startswith(UPTRAINED):
            uptrain = self.settings["uptrain_configs"][base.removeprefix(UPTRAINED)]
            return [*self.settings["memsizer_args"], *memsizer_flags(uptrain)]
        return self.settings["memsizer_args"]

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
        result["stage_seconds"] = round(time.time() - start, 1)
        self.state["stages"][name] = result
        self.run_state.save()
        return result

    def say(self, message: str):
        from tqdm import tqdm

        tqdm.write(message, file=self.out)

    def run(self) -> Dict:
        os.makedirs(self.work_dir, exist_ok=True)
        self.run_state.save()
        self.stage("data", self.prepare_data)
        for configs in (self.from_scratch(), self.from_transformer()):
            for seed in self.seeds:
                if any(config.startswith(DISTILLED) for config in configs):
                    self.stage(f"distill@{seed}", lambda seed=seed: self.distill_data(seed))
                for config in configs:
                    if UPTRAINED in config:
                        self.stage(f"convert:{config}@{seed}",
                                   lambda c=config, s=seed: self.convert(c, s))
            self.train([self.training_run(c, s) for s in self.seeds for c in configs])
            for seed in self.seeds:
                for config in configs:
                    self.stage(f"evaluate:{config}@{seed}",
                               lambda c=config, s=seed: self.evaluation.evaluate(
                                   self.checkpoint(c, s), self.data_for(c, s),
                                   self.log(c, s, "evaluate")))
        if not self.task.task.evaluator.times_generation:
            for seed in self.seeds:
                self.time_generation(seed)
        return self.state

    def prepare_data(self) -> Dict:
        if self.budget.synthetic:
            if os.path.isdir(self.raw_dir):
                shutil.rmtree(self.raw_dir)
            self.task.task.write_tiny_corpus(self.raw_dir)
        data.check_raw_dir(self.task, self.raw_dir)
        vocab = self.settings["vocab_size"] or self.budget.spm_vocab
        try:
            data.learn_and_apply_spm(self.task, self.raw_dir, self.spm_dir, vocab,
                                     self.budget.valid_lines,
                                     hard_vocab_limit=not self.budget.synthetic,
                                     workers=self.threads)
        except sentencepiece.VocabularyTooLarge as error:
            if self.settings["vocab_size"]:  # asked for: refuse
                raise ValueError(f"--vocab-size: {error}") from None
            vocab = error.allowed  # the task's default: as large as the corpus allows
            self.say(f"[{self.task.name}] {error}; using {vocab} (--vocab-size chooses)")
            data.learn_and_apply_spm(self.task, self.raw_dir, self.spm_dir, vocab,
                                     self.budget.valid_lines, workers=self.threads)
        data.binarize(self.task, self.spm_dir, self.data_bin, workers=self.threads)
        return dict(data.corpus_stats(self.task, self.spm_dir), spm_vocab=vocab)

    def save_dir(self, config: str, seed: int) -> str:
        return os.path.join(self.work_dir, "checkpoints", config, f"seed{seed}")

    def checkpoint(self, config: str, seed: int, which: str = "best") -> str:
        return os.path.join(self.save_dir(config, seed), f"checkpoint_{which}.pt")

    def log(self, config: str, seed: int, kind: str) -> str:
        return os.path.join(self.work_dir, "logs", config, f"{kind}.seed{seed}.log")

    def converted(self, config: str, seed: int) -> str:
        return os.path.join(self.save_dir(config, seed), "converted.pt")

    def data_for(self, config: str, seed: int) -> str:
        if config.startswith(DISTILLED):
            return os.path.join(self.work_dir, "distill", f"seed{seed}", "data-bin")
        return self.data_bin

    def _shared_flags(self) -> Args:  # task, schedule, model size
        return merge_args(merge_args(self.task.train, self.budget.model), self.budget.train)

    def training_run(self, config: str, seed: int) -> TrainingRun:
        uptrained = UPTRAINED in config
        every = max(self.budget.validate_every // 4, 1) if uptrained else self.budget.validate_every
        max_update = self.settings["uptrain_updates"] if uptrained else self.max_update
        flags = merge_args(self._shared_flags(), {
            "--arch": self.task.archs["transformer" if config == "transformer" else "memsizer"],
            "--seed": seed, "--max-update": max_update, "--validate-interval-updates": every,
            "--save-interval-updates": every,
            "--cpu": self.device == "cpu" or None,
        })
        if uptrained:
            flags = merge_args(flags, {"--finetune-from-model": self.converted(config, seed),
                                       "--warmup-updates": every})
        args = [self.data_for(config, seed), "--user-dir", fairseq_cli.USER_DIR,
                *render_args(flags), "--save-dir", self.save_dir(config, seed),
                *self.settings["train_args"], *self._flags(config)]
        return TrainingRun(f"{config}@{seed}", args, self.save_dir(config, seed),
                           self.log(config, seed, "train"), max_update,
                           self.converted(config, seed) if uptrained else None)

    def train(self, runs: List[TrainingRun]):
        """Train the runs not trained yet, two at a time; each is its own step ``train:<run>``."""
        pending = [run for run in runs if not self._finished(f"train:{run.name}")]
        threads = max(1, self.threads // SIDE_BY_SIDE)
        for first in range(0, len(pending), SIDE_BY_SIDE):
            group = pending[first:first + SIDE_BY_SIDE]
            self.say(f"[{self.task.name}] {', '.join(f'train:{run.name}' for run in group)} ...")
            start = time.time()
            for name, summary in train_side_by_side(group, threads, self.task.name, self.out,
                                                    self.progress).items():
                self._record(f"train:{name}", summary, start)

    # -- from the trained Transformer ----------------------------------------------------------
    def convert(self, config: str, seed: int) -> Dict:
        """The uptrain command (in this process) on the Transformer's best checkpoint, with the
        configuration's flags (``--data`` added for attention transfer); its ``--summary``."""
        flags = self.settings["uptrain_configs"][config.split(UPTRAINED, 1)[1]]
        summary = os.path.join(self.save_dir(config, seed), "uptrain.json")
        transfer = "--transfer-updates" in flags
        args = [self.checkpoint("transformer", seed), self.converted(config, seed),
                *memsizer_flags(self.settings["memsizer_args"]), *flags,
                "--attention-init", self.settings["attention_init"], "--seed", str(seed),
                *(["--data", self.data_for(config, seed)] if transfer else []),
                "--summary", summary]
        log = self.log(config, seed, "uptrain")
        for folder in (os.path.dirname(log), self.save_dir(config, seed)):
            os.makedirs(folder, exist_ok=True)
        start = time.time()
        with open(log, "w") as out, contextlib.redirect_stdout(out), \
                contextlib.redirect_stderr(out):
            torch.set_num_threads(self.threads)
            print("$ python -m memsizer_fairseq.tools.uptrain " + shlex.join(args), flush=True)
            failed = uptrain.main(args)
        if failed:
            with open(log) as f:
                raise ValueError(f"the uptrain command failed ({log}): {f.read().strip()}")
        with open(summary) as f:  # seconds: the transfer's; convert_seconds: the whole step's
            return dict(json.load(f), convert_seconds=round(time.time() - start, 1))

    def distill_data(self, seed: int) -> Dict:
        """The Transformer's translations of the training sources (pieces), binarized with its
        dictionaries beside the unchanged valid and test splits."""
        folder = os.path.join(self.work_dir, "distill", f"seed{seed}")
        layout = self.task.task.layout
        generated = self.evaluation.translate_training_split(
            self.checkpoint("transformer", seed), self.data_bin,
            os.path.join(folder, "generate.log"))
        pieces = os.path.join(folder, "pieces")
        os.makedirs(pieces, exist_ok=True)
        shutil.copyfile(layout.file(self.spm_dir, "train", layout.sides[0]),
                        layout.file(pieces, "train", layout.sides[0]))
        kept = write_distilled_pieces(generated, layout.file(self.spm_dir, "train",
                                                             layout.sides[1]),
                                      layout.file(pieces, "train", layout.sides[1]))
        data.binarize_distilled(self.task, pieces, self.spm_dir, self.data_bin,
                                self.data_for(DISTILLED, seed), workers=self.threads)
        return {"seconds": round(generated.seconds, 1), "sentences": generated.sentences,
                "gold_kept": kept}

    def time_generation(self, seed: int):
        """Time the evaluated models of a seed together (again when models were added)."""
        name = f"{LM_TIMING}@{seed}"
        evaluated = [config for kind, config, s in map(parse_step, self.state["stages"])
                     if kind == "evaluate" and s == seed]
        timing = self.state["stages"].get(name)
        if timing and set(timing["seconds"]) != set(evaluated):
            self.say(f"[{self.task.name}] {name}: timed again, with every evaluated model "
                     f"({', '.join(evaluated)})")
            del self.state["stages"][name]
        checkpoints = {config: self.checkpoint(config, seed) for config in evaluated}
        self.stage(name, lambda: self.evaluation.generation_timing(checkpoints, self.data_bin))

