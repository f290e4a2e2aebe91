"""fairseq-train runs of the comparison: one run with its progress bar and log, runs side by side
on shares of the cores, and what a finished run's log says."""
import os
import shlex
import threading
import time
from dataclasses import dataclass
from typing import Dict, List

from ..toolkit import fairseq_cli, fairseq_output


@dataclass
class TrainingRun:
    """One fairseq-train run of the comparison (its flags, directory and log)."""

    name: str  # transformer, memsizer, frontier-<NAME>, uptrained
    args: List[str]
    save_dir: str
    log_path: str
    max_update: int


def run_training(run: TrainingRun, threads: int, label: str, out, progress: bool = True,
                 position: int = 0):
    """fairseq-train on ``threads`` threads, its output appended to the run's log under a
    session header, its updates shown as a progress bar."""
    from tqdm import tqdm

    os.makedirs(os.path.dirname(run.log_path), exist_ok=True)
    bar = tqdm(total=run.max_update, desc=label, unit="upd", position=position, file=out,
               disable=not progress, leave=True)
    with open(run.log_path, "a", encoding="utf-8") as log:
        log.write(f"{fairseq_output.SESSION_HEADER} {shlex.join(run.args)}\n")

        def on_line(line: str):
            log.write(line + "\n")
            log.flush()
            parsed = fairseq_output.json_record(line)
            if parsed and parsed[0] == "train_inner":
                updates = parsed[1].get("num_updates")
                if updates is not None:
                    bar.n = min(int(float(updates)), run.max_update)
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
    times: Dict[str, float] = {}

    def work(run: TrainingRun, position: int):
        start = time.time()
        try:
            run_training(run, threads, f"{task}: {run.name}", out, progress, position)
        except BaseException as error:  # reported below, after both finish
            errors.append(error)
        times[run.name] = time.time() - start

    workers = [threading.Thread(target=work, args=(run, i), daemon=True)
               for i, run in enumerate(runs)]
    for worker in workers:
        worker.start()
    for worker in workers:
        while worker.is_alive():
            worker.join(0.5)
    if errors:
        raise errors[0]
    return {run.name: dict(training_summary(run), threads=threads,
                           this_session_seconds=round(times[run.name], 1)) for run in runs}


def training_summary(run: TrainingRun) -> Dict:
    """Wall time, updates, parameters and the logged records of a run (all its sessions)."""
    records = fairseq_output.read_records(run.log_path)
    with open(run.log_path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    valid = records["valid"]
    return {
        "wall_seconds": fairseq_output.training_wall_seconds(text),
        "updates": max([int(r["num_updates"]) for r in records["train_inner"] + valid],
                       default=None),
        "parameters": fairseq_output.model_parameters(text),
        "valid": valid,
        "train_inner": records["train_inner"],
    }
