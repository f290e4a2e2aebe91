"""The comparison's markdown report (``WORK_DIR/report.md``) from every budget's and task's
``state.json``: per budget the results against the targets, the set-up, every configuration with
each seed and the mean, uptraining, distillation, settings tried and the plots
(``WORK_DIR/<budget>/*.png``)."""
import glob
import json
import os
import platform
import shlex
from pathlib import Path
from typing import Dict, List, Tuple

import pandas as pd

from ..toolkit.plugin import atomic_write
from ..toolkit.tables import markdown, table
from .plots import plot_curves, plot_frontier
from .run_state import DISTILLED, LM_TIMING, UPTRAINED, parse_step
from .settings import BUDGETS, TASKS
from .tables import (best_valid, means, model_label, run_flags, run_order, runs_frame,
                     with_means)

Key = Tuple[str, str]  # (budget, task)


def load_states(work_dir: str) -> Dict[Key, Dict]:
    """Each ``WORK_DIR/<budget>/<task>/state.json``, with the records of Memsizer settings set
    aside under ``tried``."""
    states = {}
    for budget in BUDGETS:
        for task in TASKS:
            folder = os.path.join(work_dir, budget, task)
            if not os.path.isfile(os.path.join(folder, "state.json")):
                continue
            with open(os.path.join(folder, "state.json")) as f:
                state = json.load(f)
            tried = glob.glob(os.path.join(folder, "tried", "*", "record.json"))
            state["tried"] = []
            for record in sorted(tried, key=lambda p: int(os.path.basename(os.path.dirname(p)))):
                with open(record) as f:
                    state["tried"].append(json.load(f))
            states[budget, task] = state
    return states


def machine_line(threads: int, device: str) -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    plural = "" if threads == 1 else "s"
    return (f"{device.upper()}, {os.cpu_count()} cores ({cpu}), {threads} thread{plural}; torch "
            f"{torch.__version__}, Python {platform.python_version()}")


def _target(met) -> str:
    return "" if met is None else ("yes" if met else "**no**")


def _pairs(frames: Dict[str, pd.DataFrame]):
    """(task, frame, the Transformer's mean, Memsizer's mean) of each task that has both."""
    for task, frame in frames.items():
        mean = means(frame)
        if {"transformer", "memsizer"} <= set(mean.index):
            yield task, frame, mean.loc["transformer"], mean.loc["memsizer"]


def results_lines(frames: Dict[str, pd.DataFrame]) -> List[str]:
    """Memsizer against the Transformer, mean over seeds, each measure against its target."""
    rows = []
    for task, _, t, m in _pairs(frames):
        corpus = f"{task} ({TASKS[task].corpus})"
        for measure in TASKS[task].task.quality:
            a, b = t[measure.key], m[measure.key]
            rows.append((corpus, measure.label, f"{a:.2f}", f"{b:.2f}", measure.difference(b, a),
                         _target(measure.met(b, a))))
        if pd.notna(m["speed_ratio"]):
            rows.append((corpus, "generation, sentences/s", f"{t['sentences_per_second']:.1f}",
                         f"{m['sentences_per_second']:.1f}", f"{m['speed_ratio']:.2f}x",
                         _target(m["speed_ratio"] > 1)))
    return table(("task (corpus)", "measure", "Transformer", "Memsizer",
                   "Memsizer - Transformer", "target met"), rows)


def setup_lines(states: Dict[str, Dict], frames: Dict[str, pd.DataFrame]) -> List[str]:
    rows = []
    for task, frame, t, m in _pairs(frames):
        d = states[task]["stages"]["data"]
        threads = states[task]["stages"][f"train:transformer@{frame['seed'].iloc[0]}"]["threads"]
        rows.append((task, f"{d['train_lines']:,} / {d['valid_lines']:,} / {d['test_lines']:,}; "
                     f"{d['train_tokens']:,}", ", ".join(map(str, sorted(frame["seed"].unique()))),
                     f"{t['updates']:g} / {m['updates']:g}",
                     f"{t['parameters']:,.0f} / {m['parameters']:,.0f}",
                     f"{t['train_minutes']:.1f} / {m['train_minutes']:.1f} min ({threads})"))
    return table(("task", "train / valid / test (lines; sentencepiece tokens of the train source)",
                   "seeds", "updates: Transformer / Memsizer",
                   "parameters: Transformer / Memsizer", "training time, side by side: "
                   "Transformer / Memsizer (threads each)"), rows)


def configuration_lines(task: str, state: Dict, frame: pd.DataFrame) -> List[str]:
    """Every evaluated configuration and seed (and the mean), with notes on what was measured."""
    described, stages = TASKS[task].task, state["stages"]
    shown = with_means(frame)
    shown["label"] = shown["config"].map(model_label)
    shown["flags"] = shown["config"].map(lambda c: run_flags(task, state["settings"], c))
    lines = [f"**{task}**", "", *markdown(shown, {
        "label": ("configuration", ""), "seed": ("seed", ""), "flags": ("flags", ""),
        described.headline: (described.headline_measure().label, ".2f"),
        "length_ratio": ("hypothesis / reference length", ".2f"),
        "sentences_per_second": ("sentences/s", ".1f"),
        "speed_ratio": ("sentences/s / Transformer's", ".2f"),
        "tokens_per_second": ("tokens/s", ".0f"),
        "state_bytes": ("decoding state, bytes per sentence", ",.0f"),
        "updates": ("updates", ".0f"), "train_minutes": ("training, min", ".1f"),
        "best_valid": (f"best {described.valid.label}", ".2f"),
        "cost_updates": ("updates in all", ".0f"), "cost_minutes": ("minutes in all", ".1f")}),
        ""]
    evaluated = [value for name, value in stages.items() if name.startswith("evaluate:")]
    if described.evaluator.times_generation:
        lines += [f"Speed: the beam search alone, {evaluated[0]['sentences']} test items, each "
                  "model alone on the machine; relative to the Transformer of the same seed.",
                  "Length: words of the detokenized hypotheses over words of the references."]
    else:
        timing = next((v for k, v in stages.items() if k.startswith(f"{LM_TIMING}@")), None)
        lines += [] if timing is None else [
            f"Speed: greedy, {timing['prompts']} prompts x {timing['new_tokens']} new tokens, "
            f"median of {timing['rounds']}, the models of a seed taking turns."]
    measured = sorted({_state_lengths(v["state_measured_at"]) for v in evaluated
                       if "state_measured_at" in v})
    seq2seq = described.paired
    if measured:
        lines.append(
            "Decoding state: every tensor of fairseq's incremental decoding state (all decoder "
            f"layers{'; the encoder output not counted' if seq2seq else ''}), measured with "
            + "; ".join(measured) + ". Memsizer's state does not depend on these lengths; "
            "softmax self-attention's grows with the output length"
            + (" and softmax cross-attention's with the source length." if seq2seq else "."))
    return lines + ["In all: the updates and training minutes of the run and of what it was made "
                    "from (the Transformer, the distillation pass, the conversion).", ""]


def _state_lengths(at: Dict) -> str:
    if "source_tokens" in at:
        return (f"{at['sentences']} test sentences (sources padded to {at['source_tokens']} "
                f"tokens) after {at['target_tokens']} decoder steps (the average test target "
                "length)")
    return (f"{at['sentences']} prompts of {at['prompt_tokens']} tokens after "
            f"{at['target_tokens']} decoder steps (prompt and new tokens of the timing)")


def uptraining_lines(task: str, state: Dict) -> List[str]:
    """Each uptrained run: its conversion (attention transfer), fine-tuning, and when its
    validation score first came within the target of the Transformer's best."""
    stages, measure = state["stages"], TASKS[task].task.valid
    rows = []
    for name, train in stages.items():
        kind, config, seed = parse_step(name)
        if kind != "train" or UPTRAINED not in config:
            continue
        transformer = stages.get(f"train:transformer@{seed}")
        best = best_valid(transformer, task) if transformer else None
        first = next((int(r["num_updates"]) for r in train["valid"] if best is not None
                      and measure.key in r and measure.reached(r[measure.key], best)), None)
        convert = stages.get(f"convert:{config}@{seed}", {})
        layers = (convert.get("layers") or {}).values()
        rows.append({
            "label": model_label(config), "seed": str(seed), "order": run_order(config),
            "transfer": convert.get("transfer_updates"),
            "seconds": convert.get("convert_seconds"),
            "error": (f"{sum(v['before'] for v in layers) / len(layers):.3f} -> "
                      f"{sum(v['after'] for v in layers) / len(layers):.3f}" if layers else None),
            "updates": train["updates"], "minutes": train["wall_seconds"] / 60,
            "target": measure.threshold(best) if best is not None else None,
            "first": (f"{first} ({100 * first / transformer['updates']:.0f}% of the "
                      f"Transformer's {transformer['updates']})" if first else "not reached"),
            "best": best_valid(train, task)})
    if not rows:
        return []
    rows.sort(key=lambda row: (row.pop("order"), row["label"], row["seed"]))
    return [f"**{task}** (the target: the Transformer's best {measure.label} of the same seed, "
            f"{measure.describe_tolerance()})", "", *markdown(pd.DataFrame(rows), {
                "label": ("configuration", ""), "seed": ("seed", ""),
                "transfer": ("transfer updates", ".0f"), "seconds": ("conversion, s", ".1f"),
                "error": ("attention output error, mean over layers: before -> after", ""),
                "updates": ("fine-tuning updates", ".0f"), "minutes": ("fine-tuning, min", ".1f"),
                "target": ("target", ".2f"), "first": ("target first reached at update", ""),
                "best": (f"best {measure.label}", ".2f")}), ""]


def distillation_lines(task: str, state: Dict) -> List[str]:
    stages = state["stages"]
    rows = [{"seed": str(seed), "teacher": stages[f"train:transformer@{seed}"]["wall_seconds"] / 60,
             **value} for name, value in stages.items()
            for kind, _, seed in [parse_step(name)] if kind == "distill"]
    if not rows:
        return []
    return [f"**{task}**: the Transformer (best checkpoint) translated the training split with "
            "the test's beam settings; its translations (sentencepiece pieces) are the "
            "training targets of the `distilled` runs, valid and test unchanged.", "",
            *markdown(pd.DataFrame(rows), {
                "seed": ("seed", ""), "teacher": ("Transformer training, min", ".1f"),
                "seconds": ("generation pass, s", ".1f"), "sentences": ("sentences", ".0f"),
                "gold_kept": ("gold targets kept (skipped by generation)", ".0f")}), ""]


def tried_lines(task: str, state: Dict) -> List[str]:
    """The Memsizer flags tried (``tried/N/record.json``) next to the current ones, judged on
    the validation set only."""
    if not state.get("tried"):
        return []
    current = {"memsizer_args": state["settings"]["memsizer_args"], "stages": state["stages"]}
    rows = []
    for record in [*state["tried"], current]:
        for name, train in record["stages"].items():
            kind, config, seed = parse_step(name)
            if kind == "train" and config == "memsizer":
                losses = [r.get("nll_loss", r.get("loss")) for r in train["valid"]]
                args = record["memsizer_args"]
                rows.append({"flags": (f"`{shlex.join(args)}`" if args else "(none: the preset)")
                             + (" (reported above)" if record is current else ""),
                             "seed": str(seed), "updates": train["updates"],
                             "best": best_valid(train, task),
                             "loss": losses[-1] if losses else None})
    return [f"**{task}**", "", *markdown(pd.DataFrame(rows), {
        "flags": ("`--memsizer-args`", ""), "seed": ("seed", ""), "updates": ("updates", ".0f"),
        "best": (f"best {TASKS[task].task.valid.label}", ".2f"),
        "loss": ("last valid NLL (bits per token)", ".3f")}), ""]


def budget_lines(budget: str, states: Dict[str, Dict], out_dir: str) -> List[str]:
    frames = {task: runs_frame(task, state) for task, state in states.items()}
    frames = {task: frame for task, frame in frames.items() if not frame.empty}
    lines = [f"## Budget `{budget}`", "", "### Results (test set, mean over seeds)", "",
             *results_lines(frames), "", "### Set-up", "", *setup_lines(states, frames), "",
             "### Every configuration (test set)", ""]
    folder = os.path.join(out_dir, budget)
    for task, frame in frames.items():
        lines += configuration_lines(task, states[task], frame)
        if plot_frontier(task, means(frame), os.path.join(folder, f"frontier_{task}.png")):
            lines += [f"![{task} frontier]({budget}/frontier_{task}.png)", ""]
    for title, section in {"Uptraining": uptraining_lines, "Distillation": distillation_lines,
                           "Memsizer settings tried (validation set)": tried_lines}.items():
        body = [line for task, state in states.items() for line in section(task, state)]
        if body:
            lines += [f"### {title}", "", *body]
    plots = [f"![{task}]({budget}/curves_{task}.png)" for task, state in states.items()
             if plot_curves(task, state, os.path.join(folder, f"curves_{task}.png"))]
    return lines + (["### Training curves", "", *plots, ""] if plots else [])


def write_report(states: Dict[Key, Dict], out_dir: str, command: str, threads: int,
                 device: str) -> str:
    os.makedirs(out_dir, exist_ok=True)
    fixes = sorted({", ".join(s["settings"].get("fixes") or ["none"]) for s in states.values()})
    lines = ["# Memsizer against the Transformer, side by side", "",
             f"Made by `{command}` on {machine_line(threads, device)}. The models of a task and "
             "budget have the same width, depth, optimizer, schedule, batches and seed; only the "
             "attention (and for uptrained and distilled runs, how they start or what they "
             "learn from) differs. Test-set numbers use each run's best checkpoint on the "
             f"validation set. fairseq fixes on in every run (MEMSIZER_FAIRSEQ_FIXES): "
             f"{'; '.join(fixes)}.", ""]
    for budget in BUDGETS:
        chosen = {task: state for (b, task), state in states.items() if b == budget}
        if chosen:
            lines += budget_lines(budget, chosen, out_dir)
    report = os.path.join(out_dir, "report.md")
    # a stopped run leaves the previous report, never half of one
    atomic_write(report, lambda path: Path(path).write_text("\n".join(lines)))
    return report


__all__ = ["DISTILLED", "load_states", "write_report"]
