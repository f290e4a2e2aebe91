"""The comparison report's tables and notes, from the runs' ``state.json``: results against the
targets, set-up, uptraining, settings tried and the efficiency-accuracy frontier. What a task
measures comes from its description (``tools/tasks.py``)."""
import shlex
from typing import Dict, List, Optional, Tuple

from .run_state import EVALUATE, FRONTIER, LM_TIMING
from .settings import ARCHS, TASKS

MODEL_LABELS = {"transformer": "Transformer", "memsizer": "Memsizer",
                "uptrained": "Memsizer uptrained from the Transformer"}

def model_label(run: str) -> str:
    if run.startswith(FRONTIER):
        return f"Memsizer {run[len(FRONTIER):]}"
    return MODEL_LABELS[run]


def point_label(run: str) -> str:
    """A short label for a point of the frontier plot (a frontier run: its name)."""
    if run.startswith(FRONTIER):
        return run[len(FRONTIER):]
    return "uptrained" if run == "uptrained" else model_label(run)


def quality_rows(task: str, stages: Dict) -> List[Tuple[str, float, float, str, Optional[bool]]]:
    """(measure, Transformer, Memsizer, difference, target met or None) per quality measure."""
    t, m = stages["evaluate:transformer"], stages["evaluate:memsizer"]
    return [(measure.label, t[measure.key], m[measure.key],
             measure.difference(m[measure.key], t[measure.key]),
             measure.met(m[measure.key], t[measure.key]))
            for measure in TASKS[task].task.quality]


def generation_timing(task: str, stages: Dict, run: str) -> Optional[Dict]:
    """{seconds, sentences, tokens} of a run's timed generation (None when not timed)."""
    if not TASKS[task].task.evaluator.times_generation:
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
    if not TASKS[task].task.evaluator.times_generation:
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
    return lines + [_setup_row(name, state["stages"]) for name, state in states.items()
                    if "train" in state["stages"]]


def _setup_row(name: str, stages: Dict) -> str:
    d, trained = stages["data"], stages["train"]
    t, m = trained["transformer"], trained["memsizer"]
    # runs stopped early (--patience) end at updates of their own
    updates = (f"{m['updates']}" if t["updates"] == m["updates"]
               else f"{t['updates']} / {m['updates']}")
    return (f"| {name} | {d['train_lines']:,} / {d['valid_lines']:,} / {d['test_lines']:,}; "
            f"{d['train_tokens']:,} | {updates} | {t['parameters']:,} / "
            f"{m['parameters']:,} | {t['wall_seconds'] / 60:.1f} / "
            f"{m['wall_seconds'] / 60:.1f} min ({t['threads']}) |")


def valid_metric(task: str) -> Tuple[str, str, bool]:
    """(key in the valid records, label, higher is better)."""
    measure = TASKS[task].task.valid
    return measure.key, measure.label, measure.higher_is_better


def uptraining_summary(name: str, state: Dict) -> Optional[Dict]:
    """When the uptrained model first came within the tolerance of the Transformer (on valid)."""
    stages = state["stages"]
    if "uptrain" not in stages:
        return None
    measure = TASKS[name].task.valid
    key, higher = measure.key, measure.higher_is_better
    best = _best_value(stages["train"]["transformer"], key, higher)
    if best is None:
        return None
    first = next((int(r["num_updates"]) for r in stages["uptrain"]["valid"]
                  if key in r and measure.reached(r[key], best)), None)
    from_scratch = stages["train"]["transformer"]["updates"]
    return {"metric": measure.label, "transformer_best": best, "threshold": measure.threshold(best),
            "within": measure.describe_tolerance(),
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
    quality_key = TASKS[task].task.headline
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
    quality = TASKS[task].task.headline_measure().label
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
    seq2seq = TASKS[task].task.paired
    if seq2seq:
        notes.append("Length: words of the detokenized hypotheses over words of the references.")
    if measured:
        notes.append(
            "Decoding state: every tensor of fairseq's incremental decoding state (all decoder "
            f"layers{'; the encoder output not counted' if seq2seq else ''}), measured with "
            + "; ".join(measured) + ". Memsizer's state does not depend on these lengths; "
            "softmax self-attention's grows with the output length"
            + (" and softmax cross-attention's with the source length." if seq2seq else "."))
    return notes
