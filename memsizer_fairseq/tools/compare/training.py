"""fairseq-train runs of the comparison: one run with its progress bar and log, runs side by side
on shares of the cores, and what a finished run left (its JSON records and checkpoint).

fairseq-train stays a subprocess: a run stopped with Ctrl-C resumes from ``checkpoint_last.pt``.
"""
import os
import shlex
import threading
from dataclasses import dataclass
from typing import Dict, List, Optional

from ..toolkit import fairseq_cli, fairseq_logs

SESSION_HEADER = "$ fairseq-train"  # the line before each session's output in a run's log


@dataclass
class TrainingRun:
    name: str  # CONFIG@SEED
    args: List[str]
    save_dir: str
    log_path: str
    max_update: int
    started_from: Optional[str] = None  # --finetune-from-model: its training time is not ours


def run_training(run: TrainingRun, threads: int, label: str, out, progress: bool = True,
                 position: int = 0):
    """fairseq-train on ``threads`` threads, its output appended to the run's log under a
    session header, its updates shown as a progress bar."""
    from tqdm import tqdm

    os.makedirs(os.path.dirname(run.log_path), exist_ok=True)
    bar = tqdm(total=run.max_update, desc=label, unit="upd", position=position, file=out,
               disable=not progress, leave=True)
    with open(run.log_path, "a", encoding="utf-8") as log:
        log.write(f"{SESSION_HEADER} {shlex.join(run.args)}\n")

        def on_line(line: str):
            log.write(line + "\n")
            log.flush()
            record = fairseq_logs.json_record(line)
            if record and record[0] == "train_inner":
                bar.n = min(int(record[1]["num_updates"]), run.max_update)
                bar.refresh()

        try:
            fairseq_cli.run_fairseq("train", run.args, env={"OMP_NUM_THREADS": str(threads)},
                                    on_line=on_line)
        finally:
            bar.close()


def train_side_by_side(runs: List[TrainingRun], threads: int, task: str, out,
                       progress: bool = True) -> Dict[str, Dict]:
    """Train the runs at the same time, ``threads`` threads each, then summarise each."""
    errors: List[BaseException] = []

    def work(run: TrainingRun, position: int):
        try:
            run_training(run, threads, f"{task}: {run.name}", out, progress, position)
        except BaseException as error:  # reported below, after all finish
            errors.append(error)

    workers = [threading.Thread(target=work, args=(run, i), daemon=True)
               for i, run in enumerate(runs)]
    for worker in workers:
        worker.start()
    for worker in workers:
        while worker.is_alive():
            worker.join(0.5)
    if errors:
        raise errors[0]
    return {run.name: dict(training_summary(run), threads=threads) for run in runs}


def training_summary(run: TrainingRun) -> Dict:
    """Updates and training time (every session's, from the last checkpoint, less that of the
    checkpoint it was fine-tuned from, which fairseq carries on) and the JSON records of a
    run."""
    records = fairseq_logs.read_records(run.log_path)
    state = fairseq_logs.training_state(os.path.join(run.save_dir, "checkpoint_last.pt")) or \
        {"updates": 0, "wall_seconds": 0.0}
    if run.started_from:
        before = fairseq_logs.training_state(run.started_from)
        state["wall_seconds"] = round(state["wall_seconds"] - before["wall_seconds"], 1)
    return {**state, "max_update": run.max_update, "valid": records["valid"],
            "train_inner": records["train_inner"]}
