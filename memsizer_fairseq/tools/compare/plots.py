"""The comparison report's plots: training curves and the efficiency-accuracy frontier."""
from typing import Dict, List, Optional

from .settings import TASKS
from .tables import model_label, point_label, trained_runs, valid_metric

def _bytes(value: float, _position=None) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if value >= size:
            return f"{value / size:g} {unit}"
    return f"{value:g} B"


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
    headline = TASKS[task].task.headline_measure()
    quality, higher = headline.label, headline.higher_is_better
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
