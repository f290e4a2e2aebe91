"""The comparison's markdown report and training-curve plots, from the runs' ``state.json``."""
import os
import platform
import shlex
from typing import Dict, List, Optional, Sequence, Tuple

from .settings import TASKS

MODEL_LABELS = {"transformer": "Transformer", "memsizer": "Memsizer",
                "uptrained": "Memsizer uptrained from the Transformer"}
# The targets: Memsizer within these of the Transformer.
BLEU_TOLERANCE = 1.0
ROUGE_TOLERANCE = 1.0
PERPLEXITY_TOLERANCE = 0.10


def quality_rows(task: str, stages: Dict) -> List[Tuple[str, float, float, str, bool]]:
    """(measure, Transformer, Memsizer, difference, target met) per quality measure."""
    t, m = stages["evaluate:transformer"], stages["evaluate:memsizer"]
    if task == "translation":
        diff = m["sacrebleu"] - t["sacrebleu"]
        return [("sacreBLEU", t["sacrebleu"], m["sacrebleu"], f"{diff:+.2f}",
                 diff >= -BLEU_TOLERANCE)]
    if task == "summarization":
        rows = []
        for key, label in (("rouge1", "ROUGE-1"), ("rouge2", "ROUGE-2"), ("rougeL", "ROUGE-L")):
            diff = m[key] - t[key]
            rows.append((label, t[key], m[key], f"{diff:+.2f}",
                         diff >= -ROUGE_TOLERANCE if key == "rougeL" else None))
        return rows
    ratio = m["perplexity"] / t["perplexity"] - 1.0
    return [("test perplexity", t["perplexity"], m["perplexity"], f"{100 * ratio:+.1f}%",
             ratio <= PERPLEXITY_TOLERANCE)]


def generation_times(task: str, stages: Dict) -> Optional[Tuple[Dict, Dict, str]]:
    """({seconds, tokens} of the Transformer, of Memsizer, what was timed)."""
    if task == "language_modeling":
        timing = stages.get("lm_generation_timing")
        if not timing:
            return None
        what = (f"greedy, {timing['prompts']} prompts x {timing['new_tokens']} new tokens, "
                f"median of {timing['rounds']}")
        tokens = timing["prompts"] * timing["new_tokens"]
        return ({"seconds": timing["seconds"]["transformer"], "tokens": tokens},
                {"seconds": timing["seconds"]["memsizer"], "tokens": tokens}, what)
    t, m = stages["evaluate:transformer"], stages["evaluate:memsizer"]
    return ({"seconds": t["generation_seconds"], "tokens": t["tokens"]},
            {"seconds": m["generation_seconds"], "tokens": m["tokens"]},
            f"fairseq-generate, beam 4, {t['sentences']} test items")


def _rate(timing: Dict) -> float:
    return timing["tokens"] / timing["seconds"] if timing["seconds"] > 0 else float("inf")


def _target(met: Optional[bool]) -> str:
    return "" if met is None else ("yes" if met else "**no**")


def results_table(states: Dict[str, Dict]) -> List[str]:
    lines = ["| task (corpus) | measure | Transformer | Memsizer | Memsizer - Transformer | "
             "target met |",
             "|---|---|---|---|---|---|"]
    for name, state in states.items():
        stages = state["stages"]
        if "evaluate:memsizer" not in stages:
            continue
        corpus = f"{name} ({TASKS[name].corpus})"
        for label, t, m, diff, met in quality_rows(name, stages):
            lines.append(f"| {corpus} | {label} | {t:.2f} | {m:.2f} | {diff} | {_target(met)} |")
        times = generation_times(name, stages)
        if times:
            t, m, what = times
            speedup = _rate(m) / _rate(t)
            lines.append(
                f"| {corpus} | generation ({what}): time, tokens/s | {t['seconds']:.1f} s, "
                f"{_rate(t):.0f} | {m['seconds']:.1f} s, {_rate(m):.0f} | {speedup:.2f}x "
                f"tokens/s | {_target(speedup > 1)} |")
    return lines


def setup_table(states: Dict[str, Dict]) -> List[str]:
    lines = ["| task | train / valid / test (lines; sentencepiece tokens of the train source) | "
             "updates | parameters: Transformer / Memsizer | training time, side by side: "
             "Transformer / Memsizer (threads each) |",
             "|---|---|---|---|---|"]
    for name, state in states.items():
        stages = state["stages"]
        if "train" not in stages:
            continue
        d, tr = stages["data"], stages["train"]
        t, m = tr["transformer"], tr["memsizer"]
        lines.append(
            f"| {name} | {d['train_lines']:,} / {d['valid_lines']:,} / {d['test_lines']:,}; "
            f"{d['train_tokens']:,} | {m['updates']} | {t['parameters']:,} / "
            f"{m['parameters']:,} | {t['wall_seconds'] / 60:.1f} / "
            f"{m['wall_seconds'] / 60:.1f} min ({t['threads']}) |")
    return lines


def valid_metric(task: str) -> Tuple[str, str, bool]:
    """(key in the valid records, label, higher is better)."""
    if task == "translation":
        return "bleu", "valid BLEU (greedy)", True
    if task == "summarization":
        return "rouge_l", "valid ROUGE-L (greedy)", True
    return "ppl", "valid perplexity", False


def uptraining_summary(name: str, state: Dict) -> Optional[Dict]:
    """When the uptrained model first came within the tolerance of the Transformer (on valid)."""
    stages = state["stages"]
    if "uptrain" not in stages:
        return None
    key, label, higher = valid_metric(name)
    best = _best_value(stages["train"]["transformer"], key, higher)
    if best is None:
        return None
    if higher:
        threshold = best - (BLEU_TOLERANCE if name == "translation" else ROUGE_TOLERANCE)
        reached = lambda value: value >= threshold  # noqa: E731
    else:
        threshold = best * (1 + PERPLEXITY_TOLERANCE)
        reached = lambda value: value <= threshold  # noqa: E731
    first = next((int(r["num_updates"]) for r in stages["uptrain"]["valid"]
                  if key in r and reached(r[key])), None)
    from_scratch = stages["train"]["transformer"]["updates"]
    return {"metric": label, "transformer_best": best, "threshold": threshold,
            "first_update": first, "from_scratch_updates": from_scratch,
            "fraction": first / from_scratch if first else None,
            "uptrain_updates": stages["uptrain"]["updates"],
            "uptrained_best": _best_value(stages["uptrain"], key, higher)}


def uptraining_lines(states: Dict[str, Dict]) -> List[str]:
    lines = []
    for name, state in states.items():
        summary = uptraining_summary(name, state)
        if not summary:
            continue
        stages = state["stages"]
        lines.append(f"**{name}.** The trained Transformer was converted with "
                     f"`python -m memsizer_fairseq.uptrain` and fine-tuned as Memsizer for "
                     f"{summary['uptrain_updates']} updates. The Transformer's best "
                     f"{summary['metric']} is {summary['transformer_best']:.2f}, so the target is "
                     f"{summary['threshold']:.2f}; ")
        if summary["first_update"]:
            lines[-1] += (f"the fine-tuned model first reached it after **"
                          f"{summary['first_update']} updates = {100 * summary['fraction']:.0f}% "
                          f"of the {summary['from_scratch_updates']} from-scratch updates**.")
        else:
            lines[-1] += (f"the fine-tuned model did not reach it within its budget (best "
                          f"{summary['uptrained_best']:.2f}).")
        evaluated = stages.get("evaluate:uptrained")
        if evaluated:
            rows = []
            for label, t, m, diff, _met in quality_rows(
                    name, {"evaluate:transformer": stages["evaluate:transformer"],
                           "evaluate:memsizer": evaluated}):
                rows.append(f"{label} {m:.2f} ({diff} against the Transformer's {t:.2f})")
            lines[-1] += " Test set after fine-tuning: " + "; ".join(rows) + "."
        lines.append("")
    return lines


def tried_lines(states: Dict[str, Dict]) -> List[str]:
    """The Memsizer flags tried on a task (``tried/N/record.json``) next to the current ones,
    judged on the validation set only."""
    lines = []
    for name, state in states.items():
        current = (state["stages"].get("train") or {}).get("memsizer")
        if not state.get("tried") or not current:
            continue
        key, label, higher = valid_metric(name)
        runs = [(record["memsizer_args"], record["train"]) for record in state["tried"]]
        runs.append((state["settings"]["memsizer_args"], current))
        lines += [f"**{name}** (Transformer: best {label} "
                  f"{_best(state['stages']['train']['transformer'], key, higher)}, valid NLL "
                  f"{_last_loss(state['stages']['train']['transformer'])})", "",
                  f"| `--memsizer-args` | updates | best {label} | "
                  "last valid NLL (bits per token) |",
                  "|---|---|---|---|"]
        for number, (args, train) in enumerate(runs, 1):
            if not train:
                continue
            flags = f"`{shlex.join(args)}`" if args else "(none: the preset)"
            mark = " (reported above)" if number == len(runs) else ""
            lines.append(f"| {flags}{mark} | {train['updates']} | "
                         f"{_best(train, key, higher)} | {_last_loss(train)} |")
        lines.append("")
    return lines


def _best_value(train: Dict, key: str, higher: bool) -> Optional[float]:
    """A training run's best validation score (None when it has none)."""
    values = [r[key] for r in train["valid"] if key in r]
    return (max if higher else min)(values) if values else None


def _best(train: Dict, key: str, higher: bool) -> str:
    value = _best_value(train, key, higher)
    return "-" if value is None else f"{value:.2f}"


def _last_loss(train: Dict) -> str:
    # label-smoothed runs log nll_loss; cross-entropy (LM) runs log the NLL as loss
    losses = [r.get("nll_loss", r.get("loss")) for r in train["valid"]
              if "nll_loss" in r or "loss" in r]
    return f"{losses[-1]:.3f}" if losses else "-"


def plot_curves(name: str, state: Dict, path: str) -> Optional[str]:
    import logging

    import matplotlib

    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = state["stages"]
    if "train" not in stages:
        return None
    runs = {run: stages["train"][run] for run in ("transformer", "memsizer")}
    if "uptrain" in stages:
        runs["uptrained"] = stages["uptrain"]
    key, label, _ = valid_metric(name)
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for run, summary in runs.items():
        train = summary["train_inner"]
        left.plot([r["num_updates"] for r in train], [r["loss"] for r in train],
                  label=MODEL_LABELS[run])
        valid = [r for r in summary["valid"] if key in r]
        right.plot([r["num_updates"] for r in valid], [r[key] for r in valid], marker="o",
                   label=MODEL_LABELS[run])
    left.set(xlabel="updates", ylabel="training loss (base 2)", title=f"{name}: training loss")
    right.set(xlabel="updates", ylabel=label, title=f"{name}: {label}")
    if key == "ppl":
        right.set_yscale("log")
    for axis in (left, right):
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def machine_line(threads: int, device: str) -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    plural = "" if threads == 1 else "s"
    return (f"{device.upper()}, {os.cpu_count()} cores ({cpu}), {threads} thread{plural}; torch "
            f"{torch.__version__}, Python {platform.python_version()}")


def write_report(states: Dict[str, Dict], out_dir: str, command: str, threads: int,
                 device: str, tiny: bool) -> str:
    os.makedirs(out_dir, exist_ok=True)
    lines = ["# Memsizer against the Transformer, side by side", "",
             f"Made by `{command}`{' (tiny mode: synthetic corpora)' if tiny else ''} on "
             f"{machine_line(threads, device)}. Both models of a task have the same width, depth, "
             "optimizer, schedule, batches and seed; only the attention differs. Test-set "
             "numbers use each model's best checkpoint on the validation set.", "",
             *results_table(states), "", "## Set-up", "", *setup_table(states), ""]
    tried = tried_lines(states)
    if tried:
        lines += ["## Memsizer settings tried (validation set)", "", *tried]
    uptraining = uptraining_lines(states)
    if uptraining:
        lines += ["## Uptraining", "", *uptraining]
    plots = []
    for name, state in states.items():
        path = plot_curves(name, state, os.path.join(out_dir, f"curves_{name}.png"))
        if path:
            plots.append(f"![{name}](curves_{name}.png)")
    if plots:
        lines += ["## Training curves", "", *plots, ""]
    report = os.path.join(out_dir, "report.md")
    with open(report, "w") as f:
        f.write("\n".join(lines))
    return report


def load_states(work_dirs: Sequence[Tuple[str, str]]) -> Dict[str, Dict]:
    """Each task's state.json, with the records of Memsizer runs set aside under ``tried``."""
    import glob
    import json

    states = {}
    for name, work_dir in work_dirs:
        path = os.path.join(work_dir, "state.json")
        if os.path.isfile(path):
            with open(path) as f:
                states[name] = json.load(f)
            tried = glob.glob(os.path.join(work_dir, "tried", "*", "record.json"))
            tried.sort(key=lambda p: int(os.path.basename(os.path.dirname(p))))
            states[name]["tried"] = []
            for record in tried:
                with open(record) as f:
                    states[name]["tried"].append(json.load(f))
    return states
