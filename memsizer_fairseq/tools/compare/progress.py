"""How far a comparison's training runs have come (``--status``), from their JSON log records
and the work directory's ``state.json``.

A long run (a plateau study with ``--patience``) is followed while it trains or between
sittings: for each run, its updates, best and last validation score, the validations since the
best (what ``--patience`` counts) and whether it finished or fairseq stopped it early; and the
training curves. Nothing is trained or written into the task's work directory.
"""
import glob
import json
import os
from typing import Dict, List, Optional

from ..toolkit import fairseq_logs
from ..toolkit.tables import table
from .plots import plot_run_curves
from .settings import TASKS
from .tables import model_label, run_order


def run_progress(log_path: str, task: str, finished: Optional[Dict] = None) -> Dict:
    """One training run's progress from its log; ``finished``: its step's summary in
    ``state.json`` (None while it trains or is paused)."""
    measure = TASKS[task].task.valid
    records = fairseq_logs.read_records(log_path)
    updates = max([int(r["num_updates"]) for r in records["train_inner"] + records["valid"]],
                  default=0)
    state = ("training or paused" if finished is None
             else "stopped early (patience)" if finished["updates"] < finished["max_update"]
             else "finished")
    progress = {"updates": updates, "valid": records["valid"],
                "train_inner": records["train_inner"], "state": state}
    valid = [r for r in records["valid"] if measure.key in r]
    if valid:
        best = (max if measure.higher_is_better else min)(valid, key=lambda r: r[measure.key])
        progress.update(best=best[measure.key], best_at=int(best["num_updates"]),
                        last=valid[-1][measure.key],
                        since_best=sum(1 for r in valid if r["num_updates"] > best["num_updates"]))
    return progress


def task_status(task: str, work_dir: str, plot_path: Optional[str] = None) -> List[str]:
    """Markdown lines: a table of the task's training runs; the curves into ``plot_path``."""
    logs = glob.glob(os.path.join(work_dir, "logs", "*", "train.seed*.log"))
    if not logs:
        return [f"### {task}", "", f"no training run in {work_dir} yet", ""]
    stages = {}
    if os.path.isfile(os.path.join(work_dir, "state.json")):
        with open(os.path.join(work_dir, "state.json")) as f:
            stages = json.load(f)["stages"]
    runs = {}
    for path in logs:
        config = os.path.basename(os.path.dirname(path))
        seed = int(os.path.basename(path)[len("train.seed"):-len(".log")])
        runs[config, seed] = run_progress(path, task, stages.get(f"train:{config}@{seed}"))
    order = sorted(runs, key=lambda run: (run_order(run[0]), run))
    rows = []
    for config, seed in order:
        run = runs[config, seed]
        scores = ((f"{run['best']:g}", run["best_at"], f"{run['last']:g}", run["since_best"])
                  if "best" in run else ("-",) * 4)
        rows.append((model_label(config), seed, run["updates"], *scores, run["state"]))
    lines = [f"### {task}", "", *table(
        ("run", "seed", "updates", f"best {TASKS[task].task.valid.label}", "at update", "last",
         "validations since best", "state"), rows), ""]
    if plot_path:
        plot_run_curves(task, {f"{model_label(c)}, seed {s}": runs[c, s] for c, s in order},
                        plot_path)
        lines += [f"![{task}]({os.path.basename(plot_path)})", ""]
    return lines
