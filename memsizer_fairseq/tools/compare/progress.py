"""How far a comparison's training runs have come, read from their logs (``--status``).

A long run (a plateau study with ``--patience``) is followed while it trains or between
sittings: for each run, its updates, best and last validation score, the validations since the
best (what ``--patience`` counts) and whether fairseq stopped it early; and the training curves.
Nothing is trained or written into the task's work directory.
"""
import glob
import os
import re
from typing import Dict, List, Optional

from ..toolkit import fairseq_output
from .plots import plot_run_curves
from .tables import model_label, run_order, valid_metric

_EARLY_STOP = re.compile(r"early stop since valid performance hasn't improved for last (\d+) runs")


def run_progress(log_path: str, task: str) -> Dict:
    """One training run's progress from its fairseq-train log."""
    key, _, higher = valid_metric(task)
    records = fairseq_output.read_records(log_path)
    with open(log_path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    valid = [r for r in records["valid"] if key in r]
    updates = max([int(r["num_updates"]) for r in records["train_inner"] + records["valid"]],
                  default=0)
    # how the latest session ended: a run stopped early may have been resumed since
    latest = (fairseq_output.sessions(text) or [text])[-1]
    progress = {"updates": updates, "valid": records["valid"],
                "train_inner": records["train_inner"],
                "early_stop": bool(_EARLY_STOP.search(latest)),
                "finished": fairseq_output.finished(latest)}
    if valid:
        pick = max if higher else min
        best = pick(valid, key=lambda r: r[key])
        progress.update(best=best[key], best_at=int(best["num_updates"]), last=valid[-1][key],
                        since_best=sum(1 for r in valid if r["num_updates"] > best["num_updates"]))
    return progress


def _run_name(log_path: str) -> str:
    return os.path.basename(log_path)[len("train."):-len(".log")]


def task_status(task: str, work_dir: str, plot_path: Optional[str] = None) -> List[str]:
    """Markdown lines: a table of the task's training runs; the curves into ``plot_path``."""
    logs = sorted(glob.glob(os.path.join(work_dir, "logs", "train.*.log")),
                  key=lambda path: (run_order(_run_name(path)), path))
    if not logs:
        return [f"### {task}", "", f"no training run in {work_dir} yet", ""]
    _, label, _ = valid_metric(task)
    runs = {_run_name(path): run_progress(path, task) for path in logs}
    lines = [f"### {task}", "",
             f"| run | updates | best {label} | at update | last | validations since best "
             f"| state |", "|---|---|---|---|---|---|---|"]
    for name, run in runs.items():
        state = ("stopped early (patience)" if run["early_stop"]
                 else "finished" if run["finished"] else "training or paused")
        if "best" in run:
            scores = (f"{run['best']:g}", run["best_at"], f"{run['last']:g}", run["since_best"])
        else:
            scores = ("-", "-", "-", "-")
        lines.append("| " + " | ".join(map(str, (model_label(name), run["updates"], *scores,
                                                   state))) + " |")
    lines.append("")
    if plot_path:
        plot_run_curves(task, runs, plot_path)
        lines += [f"![{task}]({os.path.basename(plot_path)})", ""]
    return lines
