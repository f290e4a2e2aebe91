"""The comparison's markdown report, training-curve and frontier plots, from the runs'
``state.json``."""
import os
import platform
import shlex
from typing import Dict, List, Optional, Sequence, Tuple

from ..toolkit.plugin import atomic_write
from .runner import EVALUATE, FRONTIER, LM_TIMING
from .settings import ARCHS, TASKS

MODEL_LABELS = {"transformer": "Transformer", "memsizer": "Memsizer",
                "uptrained": "Memsizer uptrained from the Transformer"}
# The targets: Memsizer within these of the Transformer (test set, results table).
BLEU_TOLERANCE = 1.0
ROUGE_TOLERANCE = 1.0
PERPLEXITY_TOLERANCE = 0.10
# Uptraining has reached the Transformer once within this of its best validation perplexity.
UPTRAIN_PERPLEXITY_TOLERANCE = 0.05
# The test-set measure a frontier point is placed at: (key in evaluate:<run>, label, higher is
# better).
FRONTIER_QUALITY = {"translation": ("sacrebleu", "sacreBLEU", True),
                    "summarization": ("rougeL", "ROUGE-L", True),
                    "language_modeling": ("perplexity", "test perplexity", False)}


def model_label(run: str) -> str:
    if run.startswith(FRONTIER):
        return f"Memsizer {run[len(FRONTIER):]}"
    return MODEL_LABELS[run]


def point_label(run: str) -> str:
    """A short label for a point of the frontier plot (a frontier run: its name)."""
    if run.startswith(FRONTIER):
        return run[len(FRONTIER):]
    return "uptrained" if run == "uptrained" else model_label(run)


def _bytes(value: float, _position=None) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if value >= size:
            return f"{value / size:g} {unit}"
    return f"{value:g} B"


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


def generation_timing(task: str, stages: Dict, run: str) -> Optional[Dict]:
    """{seconds, sentences, tokens} of a run's timed generation (None when not timed)."""
    if task == "language_modeling":
        timing = stages.get(LM_TIMING)
        if not timing or run not in timing["seconds"]:
            return None
        return {"seconds": timing["seconds"][run], "sentences": timing["prompts"],
                "tokens": timing["prompts"] * timing["new_tokens"]}
    evaluated = stages.get(EVALUATE + run)
    if not evaluated:
        return None
    return {"seconds": evaluated["generation_seconds"], "sentences": evaluated["sentences"],
            "tokens": evaluated["tokens"]}


def timing_description(task: str, stages: Dict) -> Optional[str]:
    """What the generation timing of a task measured."""
    if task == "language_modeling":
        timing = stages.get(LM_TIMING)
        if not timing:
            return None
        return (f"greedy, {timing['prompts']} prompts x {timing['new_tokens']} new tokens, "
                f"median of {timing['rounds']}")
    return (f"fairseq-generate, beam 4, {stages[EVALUATE + 'transformer']['sentences']} "
            "test items")


def generation_times(task: str, stages: Dict) -> Optional[Tuple[Dict, Dict, str]]:
    """({seconds, sentences, tokens} of the Transformer, of Memsizer, what was timed)."""
    t, m = (generation_timing(task, stages, run) for run in ARCHS)
    if not (t and m):
        return None
    return t, m, timing_description(task, stages)


def _rate(timing: Dict, what: str = "tokens") -> float:
    return timing[what] / timing["seconds"] if timing["seconds"] > 0 else float("inf")


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
             "updates (Transformer / Memsizer where they differ) | parameters: Transformer / "
             "Memsizer | training time, side by side: "
             "Transformer / Memsizer (threads each) |",
             "|---|---|---|---|---|"]
    for name, state in states.items():
        stages = state["stages"]
        if "train" not in stages:
            continue
        d, tr = stages["data"], stages["train"]
        t, m = tr["transformer"], tr["memsizer"]
        # runs stopped early (--patience) end at updates of their own
        updates = (f"{m['updates']}" if t["updates"] == m["updates"]
                   else f"{t['updates']} / {m['updates']}")
        lines.append(
            f"| {name} | {d['train_lines']:,} / {d['valid_lines']:,} / {d['test_lines']:,}; "
            f"{d['train_tokens']:,} | {updates} | {t['parameters']:,} / "
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
        tolerance = BLEU_TOLERANCE if name == "translation" else ROUGE_TOLERANCE
        threshold = best - tolerance
        reached = lambda value: value >= threshold  # noqa: E731
        within = f"{tolerance:.1f} below it"
    else:
        threshold = best * (1 + UPTRAIN_PERPLEXITY_TOLERANCE)
        reached = lambda value: value <= threshold  # noqa: E731
        within = f"{100 * UPTRAIN_PERPLEXITY_TOLERANCE:.0f}% above it"
    first = next((int(r["num_updates"]) for r in stages["uptrain"]["valid"]
                  if key in r and reached(r[key])), None)
    from_scratch = stages["train"]["transformer"]["updates"]
    return {"metric": label, "transformer_best": best, "threshold": threshold, "within": within,
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
                     f"`python -m memsizer_fairseq.tools.uptrain` and fine-tuned as Memsizer for "
                     f"{summary['uptrain_updates']} updates. The Transformer's best "
                     f"{summary['metric']} is {summary['transformer_best']:.2f}, so the target is "
                     f"{summary['threshold']:.2f} ({summary['within']}); ")
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


def trained_runs(stages: Dict) -> Dict[str, Dict]:
    """The training summary of every run: Transformer, Memsizer, frontier runs, uptrained."""
    trained = stages.get("train") or {}
    runs = {run: trained[run] for run in ARCHS if run in trained}
    runs.update({stage[len("train:"):]: summary for stage, summary in stages.items()
                 if stage.startswith("train:" + FRONTIER)})
    if "uptrain" in stages:
        runs["uptrained"] = stages["uptrain"]
    return runs


def _pyplot():
    import logging

    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # before its import logs
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(name: str, state: Dict, path: str) -> Optional[str]:
    """The training curves of a comparison's trained runs (None before its ``train`` stage)."""
    stages = state["stages"]
    if "train" not in stages:
        return None
    return plot_run_curves(name, trained_runs(stages), path)


def plot_run_curves(name: str, runs: Dict[str, Dict], path: str) -> str:
    """Training loss and validation score against updates, one line per run (run name ->
    its ``train_inner`` and ``valid`` records)."""
    plt = _pyplot()
    key, label, _ = valid_metric(name)
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for run, summary in runs.items():
        train = summary["train_inner"]
        left.plot([r["num_updates"] for r in train], [r["loss"] for r in train],
                  label=model_label(run))
        valid = [r for r in summary["valid"] if key in r]
        right.plot([r["num_updates"] for r in valid], [r[key] for r in valid], marker="o",
                   label=model_label(run))
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


# -- the efficiency-accuracy frontier ---------------------------------------------------------
def run_order(run: str) -> int:
    """Transformer, Memsizer, frontier runs, uptrained: the order of tables and plots."""
    return (0 if run == "transformer" else 1 if run == "memsizer"
            else 3 if run == "uptrained" else 2)


def run_flags(task: str, state: Dict, run: str) -> str:
    """How a run differs from the shared training flags."""
    archs = TASKS[task].archs
    if run == "transformer":
        return f"`--arch {archs['transformer']}`"
    if run.startswith(FRONTIER):
        extra = state["settings"]["frontier"][run[len(FRONTIER):]]
    else:
        extra = state["settings"].get("memsizer_args") or []
    flags = f"`{shlex.join(['--arch', archs['memsizer'], *extra])}`"
    return f"converted Transformer, fine-tuned as {flags}" if run == "uptrained" else flags


def frontier_points(task: str, state: Dict) -> List[Dict]:
    """One point per evaluated model: test quality, output length, generation speed, decoding
    state size and best validation score (None where not measured)."""
    stages = state["stages"]
    quality_key = FRONTIER_QUALITY[task][0]
    valid_key, _, higher = valid_metric(task)
    trained = trained_runs(stages)
    runs = sorted((stage[len(EVALUATE):] for stage in stages if stage.startswith(EVALUATE)),
                  key=run_order)
    points = []
    for run in runs:
        evaluated = stages[EVALUATE + run]
        timing = generation_timing(task, stages, run)
        points.append({
            "run": run, "label": model_label(run), "flags": run_flags(task, state, run),
            "quality": evaluated[quality_key],
            "length_ratio": evaluated.get("length_ratio"),
            "seconds": timing["seconds"] if timing else None,
            "sentences_per_second": _rate(timing, "sentences") if timing else None,
            "tokens_per_second": _rate(timing) if timing else None,
            "state_bytes": evaluated.get("state_bytes_per_sentence"),
            "state_measured_at": evaluated.get("state_measured_at"),
            "best_valid": (_best_value(trained[run], valid_key, higher)
                           if run in trained else None),
        })
    return points


def _cell(value: Optional[float], form: str) -> str:
    return "-" if value is None else format(value, form)


def frontier_table(task: str, points: List[Dict]) -> List[str]:
    _, quality, _ = FRONTIER_QUALITY[task]
    _, valid_label, _ = valid_metric(task)
    reference = next((p["tokens_per_second"] for p in points if p["run"] == "transformer"), None)
    lines = [f"| configuration | flags | {quality} | hypothesis / reference length | "
             "sentences/s | tokens/s | tokens/s / Transformer's | decoding state, bytes per "
             f"sentence | best {valid_label} |",
             "|---|---|---|---|---|---|---|---|---|"]
    for p in points:
        relative = (p["tokens_per_second"] / reference
                    if p["tokens_per_second"] and reference else None)
        lines.append(
            f"| {p['label']} | {p['flags']} | {p['quality']:.2f} | "
            f"{_cell(p['length_ratio'], '.2f')} | {_cell(p['sentences_per_second'], '.1f')} | "
            f"{_cell(p['tokens_per_second'], '.0f')} | {_cell(relative, '.2f')} | "
            f"{_cell(p['state_bytes'], ',.0f')} | {_cell(p['best_valid'], '.2f')} |")
    return lines


def state_lengths(at: Dict) -> str:
    """Where a decoding state was measured, in words."""
    if "source_tokens" in at:
        return (f"{at['sentences']} test sentences (sources padded to {at['source_tokens']} "
                f"tokens) after {at['target_tokens']} decoder steps (the average test target "
                "length)")
    return (f"{at['sentences']} prompts of {at['prompt_tokens']} tokens after "
            f"{at['target_tokens']} decoder steps (prompt and new tokens of the timing)")


def frontier_notes(task: str, stages: Dict, points: List[Dict]) -> List[str]:
    measured = sorted({state_lengths(p["state_measured_at"]) for p in points
                       if p["state_measured_at"]})
    notes = []
    what = timing_description(task, stages)
    if what:
        notes.append(f"Speed: {what}.")
    if task != "language_modeling":
        notes.append("Length: words of the detokenized hypotheses over words of the references.")
    if measured:
        seq2seq = task != "language_modeling"
        notes.append(
            "Decoding state: every tensor of fairseq's incremental decoding state (all decoder "
            f"layers{'; the encoder output not counted' if seq2seq else ''}), measured with "
            + "; ".join(measured) + ". Memsizer's state does not depend on these lengths; "
            "softmax self-attention's grows with the output length"
            + (" and softmax cross-attention's with the source length." if seq2seq else "."))
    return notes


def _log_bytes_axis(axis, sizes: List[float]):
    """A log x axis in bytes, ticked at 1, 2 and 5 times powers of ten and padded so that a
    tick falls in even a narrow range of sizes."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.set_xscale("log")
    axis.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.xaxis.set_major_formatter(FuncFormatter(_bytes))
    axis.xaxis.set_minor_formatter(NullFormatter())
    if sizes:
        axis.set_xlim(min(sizes) / 1.6, max(sizes) * 1.6)


def plot_frontier(task: str, points: List[Dict], path: str) -> Optional[str]:
    """Quality against generation tokens/s and against decoding-state bytes, one labelled point
    per configuration, the Transformer drawn as a star."""
    if not points:
        return None
    plt = _pyplot()
    _, quality, higher = FRONTIER_QUALITY[task]
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    panels = ((axes[0], "tokens_per_second", "generation tokens/s", "speed"),
              (axes[1], "state_bytes", "decoding state, bytes per sentence", "state size"))
    for axis, key, xlabel, title in panels:
        placed = sorted((p for p in points if p[key] is not None), key=lambda p: p[key])
        for number, point in enumerate(placed):
            transformer = point["run"] == "transformer"
            axis.scatter(point[key], point["quality"], marker="*" if transformer else "o",
                         s=180 if transformer else 50,
                         color="black" if transformer else f"C{points.index(point)}",
                         zorder=3)
            # labels above and below in turn along x, so that neighbours overlap less
            label = axis.annotate(point_label(point["run"]), (point[key], point["quality"]),
                                  textcoords="offset points", fontsize=8,
                                  xytext=(5, 5 if number % 2 == 0 else -12))
            label.set_in_layout(False)
        axis.margins(x=0.12, y=0.08)
        better = "higher" if higher else "lower"
        axis.set(xlabel=xlabel, ylabel=f"{quality} ({better} is better)",
                 title=f"{task}: {quality} against {title}")
        axis.grid(alpha=0.3)
    _log_bytes_axis(axes[1], [p["state_bytes"] for p in points if p["state_bytes"]])
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def frontier_lines(states: Dict[str, Dict], out_dir: str) -> List[str]:
    lines = []
    for name, state in states.items():
        points = frontier_points(name, state)
        if not points:
            continue
        lines += [f"**{name}**", "", *frontier_table(name, points), "",
                  *frontier_notes(name, state["stages"], points), ""]
        if plot_frontier(name, points, os.path.join(out_dir, f"frontier_{name}.png")):
            lines += [f"![{name} frontier](frontier_{name}.png)", ""]
    return lines


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
    frontier = frontier_lines(states, out_dir)
    if frontier:
        lines += ["## Efficiency against accuracy (test set)", "",
                  "Every evaluated model of a task: its test quality beside its output length, "
                  "generation speed and decoding-state size.", "", *frontier]
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

    def write(path):
        with open(path, "w") as f:
            f.write("\n".join(lines))

    atomic_write(report, write)  # a stopped run leaves the previous report, never half of one
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
