"""The comparison run in this process (its console output captured), and what a run left."""
import contextlib
import io
import json
import os
import signal
from dataclasses import dataclass

import torch

from memsizer_fairseq.tools.compare.__main__ import main


@dataclass
class Finished:
    returncode: int
    stdout: str
    stderr: str


def run_compare(work_dir, *args) -> Finished:
    """``python -m memsizer_fairseq.tools.compare --budget tiny ARGS`` in this process; the
    signal handler and thread count it sets are restored after (the fairseq fixes it turns on
    are on only while it runs)."""
    out, err = io.StringIO(), io.StringIO()
    saved = signal.getsignal(signal.SIGTERM), torch.get_num_threads()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["--budget", "tiny", "--no-progress", "--work-dir", str(work_dir),
                         *map(str, args)])
    finally:
        signal.signal(signal.SIGTERM, saved[0])
        torch.set_num_threads(saved[1])
    return Finished(code, out.getvalue(), err.getvalue())


def state_of(work_dir, task, budget="tiny"):
    with open(os.path.join(work_dir, budget, task, "state.json")) as f:
        return json.load(f)


def checkpoint(work_dir, task, config, seed=1, which="best", budget="tiny"):
    return os.path.join(work_dir, budget, task, "checkpoints", config, f"seed{seed}",
                        f"checkpoint_{which}.pt")


def log_of(work_dir, task, config, seed=1, kind="train", budget="tiny"):
    return os.path.join(work_dir, budget, task, "logs", config, f"{kind}.seed{seed}.log")
