"""What a comparison's work directory holds (``state.json``: its settings and what each finished
stage measured) and the rules by which a rerun resumes it:

- the same settings: finished stages are skipped, fairseq-train resumes from
  ``checkpoint_last.pt``;
- a larger ``--max-update``, or a larger ``--patience``: training resumes, the measurements after
  it are redone and the fine-tuning starts over;
- a larger ``--uptrain-updates``: the fine-tuning resumes;
- other ``--memsizer-args``: the Memsizer run moves to ``tried/N/`` and trains again, the
  Transformer is kept;
- frontier configurations accumulate; a trained name given other flags is refused;
- any other difference is refused, naming it.
"""
import argparse
import json
import os
import shlex
import shutil
from typing import Dict, List, Optional, Sequence, Tuple

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


class RunState:
    """A work directory's ``state.json``, loaded against this run's settings."""

    def __init__(self, work_dir: str, task: str, say):
        self.work_dir = work_dir
        self.task = task
        self.say = say
        self.path = os.path.join(work_dir, STATE_FILE)
        self.data: Dict = {}

    @property
    def stages(self) -> Dict[str, Dict]:
        return self.data["stages"]

    def load(self, now: Dict, frontier: Dict[str, List[str]]) -> Dict[str, List[str]]:
        """Read ``state.json`` (or start one) for a run with settings ``now`` and frontier
        configurations ``frontier``; returns the frontier with the directory's trained ones."""
        if not os.path.isfile(self.path):
            self.data = {"settings": now, "stages": {}}
            return frontier
        with open(self.path) as f:
            self.data = json.load(f)
        frontier = self._add_frontier(frontier)
        before = {"train_args": [], **self.data.get("settings", {}), "frontier": frontier}
        now = dict(now, frontier=frontier)
        previous_args = before.get("memsizer_args")
        if previous_args is not None and now["memsizer_args"] != previous_args:
            kept = self._set_aside_memsizer(previous_args)
            self.say(f"[{self.task}] --memsizer-args {shlex.join(previous_args)!r} -> "
                     f"{shlex.join(now['memsizer_args'])!r}: the Memsizer model is trained "
                     f"again; the Transformer's training and results are kept; the previous "
                     f"Memsizer run is in {kept}")
            before = dict(before, memsizer_args=now["memsizer_args"])
        if before.get("max_update") and now["max_update"] > before["max_update"]:
            # train longer: fairseq-train resumes from checkpoint_last.pt (inverse_sqrt does not
            # depend on --max-update, so this equals a run with the larger budget from the start)
            self._train_on(f"--max-update {before['max_update']} -> {now['max_update']}")
            before = dict(before, max_update=now["max_update"], uptrain_updates=None)
        patience = raised_patience(before["train_args"], now["train_args"])
        if patience:
            # runs stopped early train on from checkpoint_last.pt, which keeps the patience count
            self._train_on(f"--patience {patience[0]} -> {patience[1]}")
            before = dict(before, train_args=now["train_args"], uptrain_updates=None)
        if (before.get("uptrain_updates") and now["uptrain_updates"]
                and now["uptrain_updates"] > before["uptrain_updates"]):
            self.say(f"[{self.task}] --uptrain-updates {before['uptrain_updates']} -> "
                     f"{now['uptrain_updates']}: fine-tuning resumes")
            for stage in ("uptrain", "evaluate:uptrained"):
                self.stages.pop(stage, None)
            before = dict(before, uptrain_updates=now["uptrain_updates"])
        differences = [_difference(key, before[key], value) for key, value in now.items()
                       if before.get(key) is not None and value is not None
                       and before[key] != value]
        if differences:
            raise ValueError(
                f"{self.work_dir} holds a {self.task} comparison run with "
                f"{'; '.join(differences)}: rerun with the same settings to resume it, or use "
                f"another --work-dir (or --restart)")
        self.data["settings"] = {**before, **{k: v for k, v in now.items() if v is not None}}
        return frontier

    def forget_evaluations(self):
        """Measure again (e.g. generation time on a machine with nothing else running)."""
        self.data["stages"] = {name: result for name, result in self.stages.items()
                               if not (name.startswith(EVALUATE) or name == LM_TIMING)}

    def save(self):
        os.makedirs(self.work_dir, exist_ok=True)
        temporary = self.path + ".tmp"
        with open(temporary, "w") as f:
            json.dump(self.data, f, indent=2, sort_keys=True)
        os.replace(temporary, self.path)

    def _train_on(self, change: str):
        """Training resumes from the runs' last checkpoints: forget every stage but the data
        and start the fine-tuning over (it starts from the Transformer, which trains on)."""
        self.say(f"[{self.task}] {change}: training resumes; the measurements after it are "
                 "redone")
        self.data["stages"] = {k: v for k, v in self.stages.items() if k == "data"}
        self.forget_uptraining()

    def _add_frontier(self, frontier: Dict[str, List[str]]) -> Dict[str, List[str]]:
        """The work directory's trained frontier configurations with this run's added. A name
        trained with other flags is refused; an earlier attempt that saved no checkpoint and is
        not asked for again with the same flags is forgotten (a failed configuration is not
        retried at every rerun)."""
        known = {}
        for name, flags in ((self.data.get("settings") or {}).get("frontier") or {}).items():
            if self._frontier_trained(name):
                known[name] = flags
            elif frontier.get(name) != flags:
                self.remove(self.run_files(FRONTIER + name, ("train", "evaluate")))
        for name, flags in frontier.items():
            before = known.setdefault(name, flags)
            if before != flags:
                raise ValueError(
                    f"--frontier {name}: {self.work_dir} holds the {self.task} frontier "
                    f"configuration {name!r} trained with {shlex.join(before)!r}, not "
                    f"{shlex.join(flags)!r}: give the new configuration another name")
        return known

    def _frontier_trained(self, name: str) -> bool:
        run = FRONTIER + name
        return f"train:{run}" in self.stages or os.path.exists(
            os.path.join(self.work_dir, "checkpoints", run, "checkpoint_last.pt"))

    def _set_aside_memsizer(self, memsizer_args: List[str]) -> str:
        """Move the Memsizer run (and the fine-tuning, which uses the same flags) to
        ``tried/N/`` with a record of its flags and results, and forget its stages."""
        tried = os.path.join(self.work_dir, "tried")
        number = 1
        while os.path.exists(os.path.join(tried, str(number))):
            number += 1
        kept = os.path.join(tried, str(number))
        os.makedirs(kept)
        stages = self.stages
        record = {"memsizer_args": memsizer_args,
                  "train": (stages.get("train") or {}).get("memsizer")}
        for stage in MEMSIZER_STAGES:
            record[stage] = stages.pop(stage, None)
        if "memsizer" in (stages.get("train") or {}):
            stages["train"] = {k: v for k, v in stages["train"].items() if k != "memsizer"}
        with open(os.path.join(kept, "record.json"), "w") as f:
            json.dump(record, f, indent=2, sort_keys=True)
        for path in (*self.run_files("memsizer", ("train", "evaluate")),
                     *self.run_files("uptrained", ("train", "evaluate"))):
            if os.path.exists(path):
                shutil.move(path, os.path.join(kept, os.path.basename(path)))
        return kept

    def run_files(self, name: str, logs: Sequence[str]) -> List[str]:
        """A run's checkpoint folder and its logs of the given kinds (``train``, ``evaluate``);
        the fine-tuning also owns the converted checkpoint it starts from."""
        checkpoints = os.path.join(self.work_dir, "checkpoints")
        files = [os.path.join(checkpoints, name),
                 *(os.path.join(self.work_dir, "logs", f"{kind}.{name}.log") for kind in logs)]
        if name == "uptrained":
            files.append(os.path.join(checkpoints, "converted.pt"))
        return files

    def forget_uptraining(self):
        """The fine-tuning started from the shorter Transformer: start it over."""
        self.remove(self.run_files("uptrained", ("train",)))

    @staticmethod
    def remove(paths: Sequence[str]):
        for path in paths:
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.exists(path):
                os.remove(path)
