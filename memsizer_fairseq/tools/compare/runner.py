"""Runs one task of the comparison in a work directory, stage by stage, resumably.

Stages: ``data`` (raw text, sentencepiece, fairseq-preprocess), ``train`` (the Transformer and the
Memsizer model, side by side), ``evaluate:<model>`` (test-set quality, generation time, output
length and decoding-state size), with ``frontier`` configurations ``train:frontier-<NAME>`` (two
at a time) and ``evaluate:frontier-<NAME>``, with ``uptrain`` ``uptrain`` (convert the trained
Transformer, fine-tune it as Memsizer) and ``evaluate:uptrained``, and for language models
``lm_generation_timing`` (every evaluated model, taking turns). What a finished stage measured is
kept in ``state.json``; a rerun of the same command skips finished stages and fairseq-train
resumes from ``checkpoint_last.pt`` (saved every ``validate_every`` updates), so a stopped or
killed comparison loses at most that much.
A rerun with other ``--memsizer-args`` keeps the Transformer and trains the Memsizer model again
(the previous Memsizer run moves to ``tried/N/``): tuning Memsizer does not retrain the baseline.
Frontier configurations accumulate: a rerun trains only the names it adds, keeps the others, and
refuses a trained name given other flags.
"""
import argparse
import json
import os
import shlex
import shutil
import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from ..toolkit import fairseq_cli, fairseq_output, sentencepiece
from ..toolkit.flags import Args, merge_args, render_args
from . import data
from .settings import ARCHS, TaskSettings

STATE_FILE = "state.json"
EVALUATE = "evaluate:"  # + run name: a test-set evaluation stage (redone by --evaluate-again)
LM_TIMING = "lm_generation_timing"  # redone by --evaluate-again too
FRONTIER = "frontier-"  # + configuration name: a frontier run
# the stages that depend on the Memsizer's flags (redone when --memsizer-args changes)
MEMSIZER_STAGES = ("evaluate:memsizer", "lm_generation_timing", "uptrain", "evaluate:uptrained")


def _difference(key: str, before, now) -> str:
    """How a recorded setting differs from this run's (for flag dicts: each changed flag)."""
    if not (isinstance(before, dict) and isinstance(now, dict)):
        return f"{key} = {before!r}, not {now!r}"
    changed = ", ".join(f"{flag} {before.get(flag, '(unset)')} -> {now.get(flag, '(unset)')}"
                        for flag in sorted(set(before) | set(now))
                        if before.get(flag) != now.get(flag))
    return f"other {key} than this version's ({changed})"


def _patience(args: Sequence[str]) -> Tuple[Optional[int], List[str]]:
    """``--patience N`` among fairseq-train flags (None: not given, fairseq's default: no early
    stop) and the other flags."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--patience", type=int)
    known, rest = parser.parse_known_args(list(args))
    return known.patience, rest


def raised_patience(before: Sequence[str], now: Sequence[str]) -> Optional[Tuple[int, str]]:
    """``(old, new)`` when ``now`` differs from ``before`` only by a larger ``--patience`` (or
    none, which never stops early); None otherwise."""
    (old, rest_before), (new, rest_now) = _patience(before), _patience(now)
    if old is None or old <= 0 or rest_before != rest_now or old == new:
        return None
    if new is None or new <= 0:
        return old, "none"
    return (old, str(new)) if new > old else None


def memsizer_overrides(args: Sequence[str]) -> Dict:
    """The Memsizer flags (slot counts, init scales, ...) among extra fairseq-train flags, as
    the converter's model overrides: the fine-tuned model must have the same shapes."""
    from ..toolkit.plugin import add_memsizer_args

    parser = argparse.ArgumentParser(add_help=False)
    add_memsizer_args(parser)
    known, _ = parser.parse_known_args(list(args))
    return {k: v for k, v in vars(known).items() if v is not None}


@dataclass
class TrainingRun:
    """One fairseq-train run of the comparison (its flags, directory and log)."""

    name: str  # transformer, memsizer, frontier-<NAME>, uptrained
    args: List[str]
    save_dir: str
    log_path: str
    max_update: int


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
        # frontier configuration name -> its extra Memsizer flags (the work directory's
        # earlier ones are added when the state is loaded)
        self.frontier = {name: list(flags) for name, flags in (frontier or {}).items()}
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
        self.state_path = os.path.join(self.work_dir, STATE_FILE)
        self.state = self._load_state()
        if evaluate_again:  # e.g. to time generation again on a machine with nothing else running
            self.state["stages"] = {name: result for name, result in self.state["stages"].items()
                                    if not (name.startswith(EVALUATE) or name == LM_TIMING)}

    # -- state ---------------------------------------------------------------------------------
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

    def _load_state(self) -> Dict:
        if not os.path.isfile(self.state_path):
            return {"settings": self.settings_record(), "stages": {}}
        with open(self.state_path) as f:
            state = json.load(f)
        self.frontier = self._add_frontier(state)
        before, now = state.get("settings", {}), self.settings_record()
        before = {"train_args": [], **before, "frontier": self.frontier}
        previous_args = before.get("memsizer_args")
        if previous_args is not None and now["memsizer_args"] != previous_args:
            kept = self._set_aside_memsizer(state, previous_args)
            print(f"[{self.task.name}] --memsizer-args {shlex.join(previous_args)!r} -> "
                  f"{shlex.join(now['memsizer_args'])!r}: the Memsizer model is trained again; "
                  f"the Transformer's training and results are kept; the previous Memsizer run "
                  f"is in {kept}", file=self.out)
            before = dict(before, memsizer_args=now["memsizer_args"])
        if before.get("max_update") and now["max_update"] > before["max_update"]:
            # train longer: fairseq-train resumes from checkpoint_last.pt (inverse_sqrt does not
            # depend on --max-update, so this equals a run with the larger budget from the start)
            self._train_on(state, f"--max-update {before['max_update']} -> {now['max_update']}")
            before = dict(before, max_update=now["max_update"], uptrain_updates=None)
        patience = raised_patience(before["train_args"], now["train_args"])
        if patience:
            # runs stopped early train on from checkpoint_last.pt, which keeps the patience count
            self._train_on(state, f"--patience {patience[0]} -> {patience[1]}")
            before = dict(before, train_args=now["train_args"], uptrain_updates=None)
        if (before.get("uptrain_updates") and now["uptrain_updates"]
                and now["uptrain_updates"] > before["uptrain_updates"]):
            print(f"[{self.task.name}] --uptrain-updates {before['uptrain_updates']} -> "
                  f"{now['uptrain_updates']}: fine-tuning resumes", file=self.out)
            for stage in ("uptrain", "evaluate:uptrained"):
                state["stages"].pop(stage, None)
            before = dict(before, uptrain_updates=now["uptrain_updates"])
        differences = [_difference(key, before[key], value) for key, value in now.items()
                       if before.get(key) is not None and value is not None
                       and before[key] != value]
        if differences:
            raise ValueError(
                f"{self.work_dir} holds a {self.task.name} comparison run with "
                f"{'; '.join(differences)}: rerun with the same settings to resume it, or use "
                f"another --work-dir (or --restart)")
        state["settings"] = {**before, **{k: v for k, v in now.items() if v is not None}}
        return state

    def _train_on(self, state: Dict, change: str):
        """Training resumes from the runs' last checkpoints: forget every stage but the data
        and start the fine-tuning over (it starts from the Transformer, which trains on)."""
        print(f"[{self.task.name}] {change}: training resumes; the measurements after it are "
              "redone", file=self.out)
        state["stages"] = {k: v for k, v in state["stages"].items() if k == "data"}
        self._forget_uptraining()

    def _add_frontier(self, state: Dict) -> Dict[str, List[str]]:
        """The work directory's trained frontier configurations with this run's added. A name
        trained with other flags is refused; an earlier attempt that saved no checkpoint and is
        not asked for again with the same flags is forgotten (a failed configuration is not
        retried at every rerun)."""
        frontier = {}
        for name, flags in ((state.get("settings") or {}).get("frontier") or {}).items():
            if self._frontier_trained(state, name):
                frontier[name] = flags
            elif self.frontier.get(name) != flags:
                self._remove(self._run_files(FRONTIER + name, ("train", "evaluate")))
        for name, flags in self.frontier.items():
            before = frontier.setdefault(name, flags)
            if before != flags:
                raise ValueError(
                    f"--frontier {name}: {self.work_dir} holds the {self.task.name} frontier "
                    f"configuration {name!r} trained with {shlex.join(before)!r}, not "
                    f"{shlex.join(flags)!r}: give the new configuration another name")
        return frontier

    def _frontier_trained(self, state: Dict, name: str) -> bool:
        run = FRONTIER + name
        return f"train:{run}" in state["stages"] or os.path.exists(
            os.path.join(self.work_dir, "checkpoints", run, "checkpoint_last.pt"))

    def _set_aside_memsizer(self, state: Dict, memsizer_args: List[str]) -> str:
        """Move the Memsizer run (and the fine-tuning, which uses the same flags) to
        ``tried/N/`` with a record of its flags and results, and forget its stages."""
        tried = os.path.join(self.work_dir, "tried")
        number = 1
        while os.path.exists(os.path.join(tried, str(number))):
            number += 1
        kept = os.path.join(tried, str(number))
        os.makedirs(kept)
        stages = state["stages"]
        record = {"memsizer_args": memsizer_args,
                  "train": (stages.get("train") or {}).get("memsizer")}
        for stage in MEMSIZER_STAGES:
            record[stage] = stages.pop(stage, None)
        if "memsizer" in (stages.get("train") or {}):
            stages["train"] = {k: v for k, v in stages["train"].items() if k != "memsizer"}
        with open(os.path.join(kept, "record.json"), "w") as f:
            json.dump(record, f, indent=2, sort_keys=True)
        for path in (*self._run_files("memsizer", ("train", "evaluate")),
                     *self._run_files("uptrained", ("train", "evaluate"))):
            if os.path.exists(path):
                shutil.move(path, os.path.join(kept, os.path.basename(path)))
        return kept

    def _run_files(self, name: str, logs: Sequence[str]) -> List[str]:
        """A run's checkpoint folder and its logs of the given kinds (``train``, ``evaluate``);
        the fine-tuning also owns the converted checkpoint it starts from."""
        checkpoints = os.path.join(self.work_dir, "checkpoints")
        files = [os.path.join(checkpoints, name),
                 *(os.path.join(self.work_dir, "logs", f"{kind}.{name}.log") for kind in logs)]
        if name == "uptrained":
            files.append(os.path.join(checkpoints, "converted.pt"))
        return files

    def _forget_uptraining(self):
        """The fine-tuning started from the shorter Transformer: start it over."""
        self._remove(self._run_files("uptrained", ("train",)))

    @staticmethod
    def _remove(paths: Sequence[str]):
        for path in paths:
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.exists(path):
                os.remove(path)

    def _save_state(self):
        os.makedirs(self.work_dir, exist_ok=True)
        temporary = self.state_path + ".tmp"
        with open(temporary, "w") as f:
            json.dump(self.state, f, indent=2, sort_keys=True)
        os.replace(temporary, self.state_path)

    def stage(self, name: str, action: Callable[[], Dict]) -> Dict:
        if self._finished(name):
            return self.state["stages"][name]
        self.say(f"[{self.task.name}] {name} ...")
        start = time.time()
        return self._record(name, action(), start)

    def _finished(self, name: str) -> bool:
        if name not in self.state["stages"]:
            return False
        self.say(f"[{self.task.name}] {name}: done earlier (kept in {self.state_path})")
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

    # -- the stages ----------------------------------------------------------------------------
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
        if not self.task.paired:
            self.time_lm_generation()
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

    def _run_training(self, run: TrainingRun, threads: int, position: int):
        from tqdm import tqdm

        os.makedirs(os.path.dirname(run.log_path), exist_ok=True)
        bar = tqdm(total=run.max_update, desc=f"{self.task.name}: {run.name}", unit="upd",
                   position=position, file=self.out, disable=not self.progress, leave=True)
        with open(run.log_path, "a", encoding="utf-8") as log:
            log.write(f"{fairseq_output.SESSION_HEADER} {shlex.join(run.args)}\n")

            def on_line(line: str):
                log.write(line + "\n")
                log.flush()
                parsed = fairseq_output.json_record(line)
                if parsed and parsed[0] == "train_inner":
                    updates = parsed[1].get("num_updates")
                    if updates is not None:
                        bar.n = min(int(float(updates)), run.max_update)
                        bar.refresh()

            try:
                fairseq_cli.run_fairseq("train", run.args, env={"OMP_NUM_THREADS": str(threads)},
                                     on_line=on_line)
            finally:
                bar.close()

    def train(self, runs: List[TrainingRun], share: Optional[int] = None) -> Dict:
        """Train the runs at the same time (the cores split between them, or into ``share``
        parts), then summarise."""
        threads = max(1, self.threads // (share or len(runs)))
        errors: List[BaseException] = []
        times: Dict[str, float] = {}

        def work(run: TrainingRun, position: int):
            start = time.time()
            try:
                self._run_training(run, threads, position)
            except BaseException as error:  # reported below, after both finish
                errors.append(error)
            times[run.name] = time.time() - start

        workers = [threading.Thread(target=work, args=(run, i), daemon=True)
                   for i, run in enumerate(runs)]
        for worker in workers:
            worker.start()
        for worker in workers:
            while worker.is_alive():
                worker.join(0.5)
        if errors:
            raise errors[0]
        return {run.name: dict(self.training_summary(run), threads=threads,
                               this_session_seconds=round(times[run.name], 1)) for run in runs}

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

    def training_summary(self, run: TrainingRun) -> Dict:
        records = fairseq_output.read_records(run.log_path)
        with open(run.log_path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        valid = records["valid"]
        return {
            "wall_seconds": fairseq_output.training_wall_seconds(text),
            "updates": max([int(r["num_updates"]) for r in records["train_inner"] + valid],
                           default=None),
            "parameters": fairseq_output.model_parameters(text),
            "valid": valid,
            "train_inner": records["train_inner"],
        }

    def evaluate(self, run: TrainingRun) -> Dict:
        checkpoint = os.path.join(run.save_dir, "checkpoint_best.pt")
        flags = merge_args(self.task.evaluate, self.budget.evaluate)
        if self.device == "cpu":
            flags = merge_args(flags, {"--cpu": True})
        args = [self.data_bin, "--user-dir", fairseq_cli.USER_DIR, "--path", checkpoint,
                "--gen-subset", "test", *render_args(flags)]
        log = os.path.join(self.work_dir, "logs", f"evaluate.{run.name}.log")
        env = {"OMP_NUM_THREADS": str(self.threads)}
        if not self.task.paired:
            output = fairseq_cli.run_fairseq("eval-lm", args, log, env=env)
            scores = fairseq_output.lm_scores(output)
            if scores is None:
                raise RuntimeError(f"no perplexity in {log}")
            return {**scores, **self.decoding_state(checkpoint)}
        output = fairseq_cli.run_fairseq("generate", args, log, env=env)
        result = fairseq_output.parse_generation(output)
        scores: Dict = {"sentences": result.sentences, "tokens": result.tokens,
                        "generation_seconds": result.seconds,
                        "sentences_per_second": result.sentences_per_second,
                        "tokens_per_second": (result.tokens / result.seconds
                                              if result.seconds > 0 else None),
                        "length_ratio": fairseq_output.length_ratio(result),
                        **self.decoding_state(checkpoint)}
        if self.task.name == "translation":
            if result.bleu is None:
                raise RuntimeError(f"no BLEU in {log}")
            scores["sacrebleu"] = result.bleu
        else:
            rouge = fairseq_output.rouge_scores(output)
            if rouge is None:
                raise RuntimeError(f"no ROUGE in {log}")
            scores.update(rouge)
        return scores

    def decoding_state(self, checkpoint: str) -> Dict:
        """The state size of a seq2seq model after the average test target length, of a
        language model after the generation timing's prompt and new tokens."""
        from .lm_timing import PROMPT_TOKENS
        from .state_size import SENTENCES, decoding_state

        if self.task.paired:
            return decoding_state(checkpoint, self.data_bin, sentences=SENTENCES,
                                  threads=self.threads, device=self.device)
        return decoding_state(checkpoint, self.data_bin,
                              target_tokens=PROMPT_TOKENS + self.budget.timing_new_tokens,
                              sentences=self.budget.timing_prompts, threads=self.threads,
                              device=self.device)

    def evaluated_runs(self) -> List[str]:
        return [name[len(EVALUATE):] for name in self.state["stages"] if name.startswith(EVALUATE)]

    def time_lm_generation(self):
        """Time every evaluated language model together (again when models were added)."""
        evaluated = self.evaluated_runs()
        timing = self.state["stages"].get(LM_TIMING)
        if timing and set(timing["seconds"]) != set(evaluated):
            self.say(f"[{self.task.name}] {LM_TIMING}: timed again, with every evaluated model "
                     f"({', '.join(evaluated)})")
            del self.state["stages"][LM_TIMING]
        self.stage(LM_TIMING, lambda: self.lm_generation_timing(evaluated))

    def lm_generation_timing(self, names: Sequence[str]) -> Dict:
        from .lm_timing import time_generation

        checkpoints = {name: os.path.join(self.work_dir, "checkpoints", name,
                                          "checkpoint_best.pt") for name in names}
        return time_generation(checkpoints, self.data_bin, self.budget.timing_prompts,
                               self.budget.timing_new_tokens, threads=self.threads,
                               device=self.device)

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
        self._run_training(run, self.threads, 0)
        summary = self.training_summary(run)
        summary["converted"] = {k: len(v) for k, v in report.items() if k != "arch"}
        return summary
