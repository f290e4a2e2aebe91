"""The comparison's markdown report (``report.md``) with its tables (``tables.py``) and plots
(``plots.py``), from the runs' ``state.json``."""
import os
import platform
from typing import Dict, List, Sequence, Tuple

from ..toolkit.plugin import atomic_write
from .plots import plot_curves, plot_frontier
from .tables import (frontier_notes, frontier_points, frontier_table, results_table, setup_table,
                     tried_lines, uptraining_lines)

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
