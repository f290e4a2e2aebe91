"""The comparison report's tables, from the runs' ``state.json``: one row per trained
configuration and seed (pandas), with the mean over seeds; what a task measures comes from its
description (``tools/tasks.py``)."""
import shlex
from typing import Dict, Optional

import pandas as pd

from .run_state import DISTILLED, FRONTIER, LM_TIMING, UPTRAINED, parse_step
from .settings import TASKS


def model_label(config: str) -> str:
    if config.startswith(DISTILLED):
        return model_label(config.removeprefix(DISTILLED)) + ", distilled"
    if config.startswith(FRONTIER):
        return "Memsizer " + config.removeprefix(FRONTIER)
    if config.startswith(UPTRAINED):
        return f"Memsizer uptrained ({config.removeprefix(UPTRAINED)})"
    return {"transformer": "Transformer", "memsizer": "Memsizer"}[config]


def run_order(config: str) -> int:
    """Transformer, Memsizer, frontier, uptrained, then the distilled ones."""
    base = config.removeprefix(DISTILLED)
    rank = (0 if base == "transformer" else 1 if base == "memsizer"
            else 3 if base.startswith(UPTRAINED) else 2)
    return rank + 4 * config.startswith(DISTILLED)


def best_valid(train: Dict, task: str) -> Optional[float]:
    measure = TASKS[task].task.valid
    values = [r[measure.key] for r in train.get("valid", []) if measure.key in r]
    return (max if measure.higher_is_better else min)(values) if values else None


def run_flags(task: str, settings: Dict, config: str) -> str:
    """How a configuration differs from the shared training flags."""
    archs, base = TASKS[task].archs, config.removeprefix(DISTILLED)
    if base == "transformer":
        return f"`--arch {archs['transformer']}`"
    if base.startswith(FRONTIER):
        extra = settings["frontier"][base.removeprefix(FRONTIER)]
    else:
        extra = settings.get("memsizer_args") or []
    flags = f"`{shlex.join(['--arch', archs['memsizer'], *extra])}`"
    if base.startswith(UPTRAINED):
        uptrain = settings["uptrain_configs"][base.removeprefix(UPTRAINED)]
        flags = (f"uptrain `{shlex.join(uptrain)}`" if uptrain else "uptrain") + \
            f", fine-tuned as {flags}"
    return flags


def _timing(stages: Dict, config: str, seed: int, task: str) -> Dict:
    """Seconds, sentences and tokens of a run's timed generation (empty when not timed)."""
    if TASKS[task].task.evaluator.times_generation:
        evaluated = stages[f"evaluate:{config}@{seed}"]
        return {"seconds": evaluated["generation_seconds"], "sentences": evaluated["sentences"],
                "tokens": evaluated["tokens"]}
    timing = stages.get(f"{LM_TIMING}@{seed}")
    if not timing or config not in timing["seconds"]:
        return {}
    return {"seconds": timing["seconds"][config], "sentences": timing["prompts"],
            "tokens": timing["prompts"] * timing["new_tokens"]}


def runs_frame(task: str, state: Dict) -> pd.DataFrame:
    """One row per evaluated configuration and seed: test quality, output length, speed (and
    relative to the Transformer of the seed), decoding state, parameters, updates and training
    time, best validation score, and the cost in all (a run made from the Transformer adds the
    Transformer's training, the distillation pass and the conversion)."""
    stages = state["stages"]
    rows = []
    for name in stages:
        kind, config, seed = parse_step(name)
        if kind != "evaluate":
            continue
        evaluated, train = stages[name], stages.get(f"train:{config}@{seed}", {})
        timing = _timing(stages, config, seed, task)
        seconds = timing.get("seconds")
        steps = [train]
        if config != "transformer" and (UPTRAINED in config or config.startswith(DISTILLED)):
            steps.append(stages.get(f"train:transformer@{seed}", {}))
        convert = stages.get(f"convert:{config}@{seed}", {})
        distill = stages.get(f"distill@{seed}", {}) if config.startswith(DISTILLED) else {}
        rows.append({
            "config": config, "seed": seed,
            **{m.key: evaluated.get(m.key) for m in TASKS[task].task.quality},
            "length_ratio": evaluated.get("length_ratio"),
            "sentences_per_second": timing["sentences"] / seconds if seconds else None,
            "tokens_per_second": timing["tokens"] / seconds if seconds else None,
            "state_bytes": evaluated.get("state_bytes_per_sentence"),
            "parameters": evaluated.get("parameters"),
            "updates": train.get("updates"),
            "train_minutes": train["wall_seconds"] / 60 if "wall_seconds" in train else None,
            "best_valid": best_valid(train, task),
            "transfer_updates": convert.get("transfer_updates"),
            "convert_seconds": convert.get("convert_seconds"),
            "distill_seconds": distill.get("seconds"),
            "cost_updates": sum(s.get("updates", 0) for s in steps)
            + convert.get("transfer_updates", 0),
            "cost_minutes": (sum(s.get("wall_seconds", 0.0) for s in steps)
                             + convert.get("convert_seconds", 0.0)
                             + distill.get("seconds", 0.0)) / 60,
        })
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame["order"] = frame["config"].map(run_order)
    frame = frame.sort_values(["order", "config", "seed"]).drop(columns="order")
    reference = frame[frame["config"] == "transformer"].set_index("seed")["sentences_per_second"]
    frame["speed_ratio"] = frame["sentences_per_second"] / frame["seed"].map(reference)
    return frame.reset_index(drop=True)


def with_means(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with a row ``seed = mean`` after each configuration trained with more than
    one seed."""
    if frame.empty or frame["seed"].nunique() < 2:
        return frame.astype({"seed": str})
    parts = []
    for config, group in frame.groupby("config", sort=False):
        parts.append(group.astype({"seed": str}))
        if len(group) > 1:
            mean = group.mean(numeric_only=True).to_frame().T.drop(columns="seed")
            parts.append(mean.assign(config=config, seed="mean"))
    return pd.concat(parts, ignore_index=True)


def means(frame: pd.DataFrame) -> pd.DataFrame:
    """The mean over seeds of each configuration, indexed by configuration."""
    return frame.groupby("config", sort=False).mean(numeric_only=True)
