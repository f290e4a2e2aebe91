"""The comparison report's plots: training curves and the efficiency-accuracy frontier."""
import os
from typing import Dict, Optional

from .run_state import parse_step
from .settings import TASKS
from .tables import model_label


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


def _save(plt, figure, path: str) -> str:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def plot_curves(name: str, state: Dict, path: str) -> Optional[str]:
    """The training curves of a comparison's trained runs (None before any)."""
    runs = {f"{model_label(config)}, seed {seed}": summary
            for stage, summary in state["stages"].items()
            for kind, config, seed in [parse_step(stage)] if kind == "train"}
    return plot_run_curves(name, runs, path) if runs else None


def plot_run_curves(name: str, runs: Dict[str, Dict], path: str) -> str:
    """Training loss and validation score against updates, one line per run (label -> its
    ``train_inner`` and ``valid`` records)."""
    plt = _pyplot()
    key, label = TASKS[name].task.valid.key, TASKS[name].task.valid.label
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for run, summary in runs.items():
        train = summary["train_inner"]
        left.plot([r["num_updates"] for r in train], [r["loss"] for r in train], label=run)
        valid = [r for r in summary["valid"] if key in r]
        right.plot([r["num_updates"] for r in valid], [r[key] for r in valid], marker="o",
                   label=run)
    left.set(xlabel="updates", ylabel="training loss (base 2)", title=f"{name}: training loss")
    right.set(xlabel="updates", ylabel=label, title=f"{name}: {label}")
    if key == "ppl":
        right.set_yscale("log")
    for axis in (left, right):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    return _save(plt, figure, path)


def plot_frontier(task: str, points, path: str) -> Optional[str]:
    """Quality against generation sentences/s and against decoding-state bytes, one labelled
    point per configuration (``points``: a frame indexed by configuration, means over seeds),
    the Transformer drawn as a star."""
    if points.empty:
        return None
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    plt = _pyplot()
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    headline = TASKS[task].task.headline_measure()
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    panels = ((axes[0], "sentences_per_second", "generation sentences/s", "speed"),
              (axes[1], "state_bytes", "decoding state, bytes per sentence", "state size"))
    for axis, key, xlabel, title in panels:
        placed = points[points[key].notna()].sort_values(key)
        for number, (config, point) in enumerate(placed.iterrows()):
            transformer = config == "transformer"
            axis.scatter(point[key], point[headline.key], marker="*" if transformer else "o",
                         s=180 if transformer else 50, zorder=3,
                         color="black" if transformer else f"C{list(points.index).index(config)}")
            # labels above and below in turn along x, so that neighbours overlap less
            label = axis.annotate(model_label(config).replace("Memsizer ", "") or config,
                                  (point[key], point[headline.key]), textcoords="offset points",
                                  fontsize=8, xytext=(5, 5 if number % 2 == 0 else -12))
            label.set_in_layout(False)
        axis.margins(x=0.12, y=0.08)
        better = "higher" if headline.higher_is_better else "lower"
        axis.set(xlabel=xlabel, ylabel=f"{headline.label} ({better} is better)",
                 title=f"{task}: {headline.label} against {title}")
        axis.grid(alpha=0.3)
    # state sizes on a log axis in bytes, ticked at 1, 2 and 5 times powers of ten and padded
    # so that a tick falls in even a narrow range of sizes
    axes[1].set_xscale("log")
    axes[1].xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axes[1].xaxis.set_major_formatter(FuncFormatter(_bytes))
    axes[1].xaxis.set_minor_formatter(NullFormatter())
    sizes = [v for v in points["state_bytes"] if v == v and v]
    if sizes:
        axes[1].set_xlim(min(sizes) / 1.6, max(sizes) * 1.6)
    return _save(plt, figure, path)
