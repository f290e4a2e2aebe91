"""What a comparison's work directory holds (``state.json``: its settings and what each finished
step measured) and the rules by which a rerun resumes it:

- the same settings: finished steps are skipped, fairseq-train resumes from
  ``checkpoint_last.pt``; new ``--seeds`` add runs;
- a larger ``--max-update``, or a larger ``--patience``: training resumes, the measurements after
  it are redone, the runs made from the Transformer (uptrained, distilled) start over;
- a larger ``--uptrain-updates``: the fine-tuning resumes;
- other ``--memsizer-args``: the runs that use them move to ``tried/N/`` and train again, the
  Transformer is kept;
- frontier and uptraining configurations accumulate; a trained name given other flags is refused;
- any other difference is refused, naming it.

Steps are named ``KIND:CONFIGURATION@SEED`` (``train``, ``evaluate``, ``convert``), ``distill@SEED``
and ``lm_generation_timing@SEED``.
"""
import argparse
import json
import os
import shlex
import shutil
from typing import Dict, List, Optional, Sequence, Tuple

STATE_FILE = "state.json"
FRONTIER = "frontier-"  # + name: a Memsizer configuration trained from scratch
UPTRAINED = "uptrained-"  # + name: a converted Transformer, fine-tuned
DISTILLED = "distill-"  # + a Memsizer configuration: trained on the Transformer's translations
LM_TIMING = "lm_generation_timing"


def parse_step(name: str) -> Tuple[str, str, int]:
    """``train:memsizer@1`` -> ``("train", "memsizer", 1)`` (config "" for ``distill@1``, seed 0
    for ``data``)."""
    head, _, seed = name.rpartition("@") if "@" in name else (name, "", "0")
    kind, _, config = head.partition(":")
    return kind, config, int(seed)


def uses_memsizer_args(config: str) -> bool:
    """The configurations whose flags include ``--memsizer-args``."""
    base = config.removeprefix(DISTILLED)
    return base == "memsizer" or base.startswith(UPTRAINED)


def _difference(key: str, before, now) -> str:
    """How a recorded setting differs from this run's (for flag dicts: each changed flag)."""
    if not (isinstance(before, dict) and isinstance(now, dict)):
        return f"{key} = {before!r}, not {now!r}"
    changed = ", ".join(f"{flag} {before.get(flag, '(unset)')} -> {now.get(flag, '(unset)')}"
                        for flag in sorted(set(before) | set(now))
                        if before.get(flag) != now.get(flag))
    return f"other {key} than this version's ({changed})"


def _patience(args: Sequence[str]) -> Tuple[Optional[int], List[str]]:
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
        self.data: Dict = {"settings": {}, "stages": {}}

    @property
    def stages(self) -> Dict[str, Dict]:
        return self.data["stages"]

    def load(self, now: Dict) -> Dict:
        """Read ``state.json`` (or start one) for a run with settings ``now``; returns the
        settings with the directory's trained frontier and uptraining configurations added."""
        if not os.path.isfile(self.path):
            self.data = {"settings": now, "stages": {}}
            return now
        with open(self.path) as f:
            self.data = json.load(f)
        before = dict(self.data["settings"])
        now = dict(now, frontier=self._accumulate("frontier", FRONTIER, now["frontier"]),
                     uptrain_configs=self._accumulate("uptrain_configs", UPTRAINED,
                                                      now["uptrain_configs"]))
        before.update(frontier=now["frontier"], uptrain_configs=now["uptrain_configs"])
        if before["memsizer_args"] != now["memsizer_args"]:
            kept = self._set_aside(before["memsizer_args"])
            self.say(f"[{self.task}] --memsizer-args {shlex.join(before['memsizer_args'])!r} -> "
                     f"{shlex.join(now['memsizer_args'])!r}: the Memsizer model is trained "
                     f"again; the Transformer's training and results are kept; the previous "
                     f"Memsizer runs are in {kept}")
            before["memsizer_args"] = now["memsizer_args"]
        if now["max_update"] > before["max_update"]:
            # inverse_sqrt does not depend on --max-update: this equals a run with the larger
            # budget from the start
            self._train_on(f"--max-update {before['max_update']} -> {now['max_update']}")
            before.update(max_update=now["max_update"], uptrain_updates=now["uptrain_updates"])
        patience = raised_patience(before["train_args"], now["train_args"])
        if patience:
            self._train_on(f"--patience {patience[0]} -> {patience[1]}")
            before.update(train_args=now["train_args"], uptrain_updates=now["uptrain_updates"])
        if now["uptrain_updates"] > before["uptrain_updates"]:
            self.say(f"[{self.task}] --uptrain-updates {before['uptrain_updates']} -> "
                     f"{now['uptrain_updates']}: fine-tuning resumes")
            self.forget(lambda kind, config: (kind in ("train", "evaluate")
                                              and UPTRAINED in config) or kind == LM_TIMING)
            before["uptrain_updates"] = now["uptrain_updates"]
        differences = [_difference(key, before.get(key), value) for key, value in now.items()
                       if before.get(key) != value]
        if differences:
            raise ValueError(
                f"{self.work_dir} holds a {self.task} comparison run with "
                f"{'; '.join(differences)}: rerun with the same settings to resume it, or use "
                f"another --work-dir (or --restart)")
        self.data["settings"] = now
        return now

    def save(self):
        os.makedirs(self.work_dir, exist_ok=True)
        temporary = self.path + ".tmp"
        with open(temporary, "w") as f:
            json.dump(self.data, f, indent=2, sort_keys=True)
        os.replace(temporary, self.path)

    def forget(self, which):
        """Forget the steps for which ``which(kind, config)`` holds."""
        self.data["stages"] = {name: value for name, value in self.stages.items()
                               if not which(*parse_step(name)[:2])}

    def _train_on(self, change: str):
        """Training resumes from the runs' last checkpoints: forget every step but the data and
        remove what was made from the shorter Transformer (uptrained and distilled runs)."""
        self.say(f"[{self.task}] {change}: training resumes; the measurements after it are "
                 "redone")
        self.data["stages"] = {"data": self.stages["data"]} if "data" in self.stages else {}
        for config in self._run_configs():
            if config.startswith((UPTRAINED, DISTILLED)):
                self.remove(self.run_files(config))
        self.remove([os.path.join(self.work_dir, "distill")])

    def _run_configs(self) -> List[str]:
        folder = os.path.join(self.work_dir, "checkpoints")
        return sorted(os.listdir(folder)) if os.path.isdir(folder) else []

    def _accumulate(self, key: str, prefix: str, given: Dict[str, List[str]]
                    ) -> Dict[str, List[str]]:
        """The work directory's trained configurations of ``key`` with this run's added. A name
        trained with other flags is refused; an earlier one that saved no checkpoint and is not
        asked for again with the same flags is forgotten (a failed configuration is not retried
        at every rerun)."""
        known = {}
        for name, flags in (self.data["settings"].get(key) or {}).items():
            if self._trained(prefix + name):
                known[name] = flags
            elif given.get(name) != flags:
                self.remove(self.run_files(prefix + name) + self.run_files(DISTILLED + prefix
                                                                           + name))
                self.forget(lambda kind, config, run=prefix + name: config.endswith(run))
        for name, flags in given.items():
            before = known.setdefault(name, flags)
            if before != flags:
                option = "--frontier" if key == "frontier" else "--uptrain-configs"
                raise ValueError(
                    f"{option} {name}: {self.work_dir} holds the {self.task} configuration "
                    f"{name!r} trained with {shlex.join(before)!r}, not {shlex.join(flags)!r}: "
                    "give the new configuration another name")
        return known

    def _trained(self, config: str) -> bool:
        if any(parse_step(name)[:2] == ("train", config) for name in self.stages):
            return True
        folder = os.path.join(self.work_dir, "checkpoints", config)
        return os.path.isdir(folder) and any(
            os.path.exists(os.path.join(folder, seed, "checkpoint_last.pt"))
            for seed in os.listdir(folder))

    def _set_aside(self, memsizer_args: List[str]) -> str:
        """Move the runs that use ``--memsizer-args`` to ``tried/N/`` with a record of the flags
        and their steps, and forget those steps."""
        tried = os.path.join(self.work_dir, "tried")
        number = 1
        while os.path.exists(os.path.join(tried, str(number))):
            number += 1
        kept = os.path.join(tried, str(number))
        os.makedirs(kept)
        moved = lambda kind, config: uses_memsizer_args(config) or kind == LM_TIMING  # noqa
        record = {"memsizer_args": memsizer_args,
                  "stages": {name: value for name, value in self.stages.items()
                             if moved(*parse_step(name)[:2])}}
        self.forget(moved)
        with open(os.path.join(kept, "record.json"), "w") as f:
            json.dump(record, f, indent=2, sort_keys=True)
        for config in self._run_configs():
            if uses_memsizer_args(config):
                for path in self.run_files(config):
                    if os.path.exists(path):
                        target = os.path.join(kept, os.path.relpath(path, self.work_dir))
                        os.makedirs(os.path.dirname(target), exist_ok=True)
                        shutil.move(path, target)
        return kept

    def run_files(self, config: str) -> List[str]:
        """A configuration's checkpoint folder (every seed) and its logs folder."""
        return [os.path.join(self.work_dir, folder, config) for folder in ("checkpoints", "logs")]

    @staticmethod
    def remove(paths: Sequence[str]):
        for path in paths:
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.exists(path):
                os.remove(path)
