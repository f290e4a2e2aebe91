"""Crash and resume: a SIGKILLed ``fairseq-train`` resumes and ends where an unbroken run ends, with
the fixes a resumable run needs turned on (``same_batches_after_resume``, ``patience_resume``);
``atomic_checkpoint_copies`` is on by default."""
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from memsizer_fairseq import compat
from fairseq_helpers import (
    child_env,
    load_params,
    loaded_updates,
    max_param_diff,
    run_cli_in_process,
    train_args,
    train_subprocess,
    write_translation_data,
)
from memsizer_fairseq.tools.toolkit.fairseq_cli import fairseq_command

_STAT = r"\| {name} \| epoch (\d+) \|.*? loss ([\d.]+)"


def final_losses(log):
    """The last epoch's train and valid loss (fairseq's end-of-epoch lines, 3 decimals)."""
    train = re.findall(_STAT.format(name="train"), log)
    valid = re.findall(_STAT.format(name="valid"), log)
    return (int(train[-1][0]), float(train[-1][1])), (int(valid[-1][0]), float(valid[-1][1]))


# -- the resume tests ---------------------------------------------------------------------------

MAX_UPDATE = 24
# what fairseq-train needs to resume on the batches it would have trained on
RESUMABLE = {"MEMSIZER_FAIRSEQ_FIXES": "default,same_batches_after_resume"}
RESUME_TRAIN = [
    "--max-update", str(MAX_UPDATE), "--save-interval-updates", "5", "--no-epoch-checkpoints",
    "--dropout", "0.1",  # resuming must also restore the dropout random stream
]

# Runs fairseq-train, but SIGKILLs the process halfway through the N-th checkpoint *copy*
# (fairseq writes a save's first file atomically, then copies it to checkpoint_last.pt / _best):
# what an outside SIGKILL at that moment leaves behind, made deterministic.
KILL_DURING_COPY = r'''
import os, runpy, shutil, signal, sys
target = int(os.environ["KILL_DURING_COPY"])
count = 0
copyfile = shutil.copyfile
def copy_then_die_halfway(src, dst, *args, **kwargs):
    global count
    if str(src).endswith(".pt"):
        count += 1
        if count == target:
            data = open(src, "rb").read()
            with open(dst, "wb") as f:
                f.write(data[: len(data) // 2])
                f.flush()
            print(f"FAULT: killed while copying {src} -> {dst}", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
    return copyfile(src, dst, *args, **kwargs)
shutil.copyfile = copy_then_die_halfway
sys.argv = ["fairseq-train"] + sys.argv[1:]
runpy.run_module("fairseq_cli.train", run_name="__main__")
'''


@pytest.fixture(scope="module")
def resume_data(tmp_path_factory):
    return write_translation_data(str(tmp_path_factory.mktemp("resume")))


@pytest.fixture(scope="module")
def uninterrupted(resume_data, tmp_path_factory):
    save = str(tmp_path_factory.mktemp("uninterrupted"))
    log = train_subprocess(train_args(resume_data, save, *RESUME_TRAIN), env=RESUMABLE)
    return log, os.path.join(save, "checkpoint_last.pt")


def kill_when(args, pattern, timeout=300):
    """Start fairseq-train and SIGKILL it as soon as a line of its output matches ``pattern``."""
    proc = subprocess.Popen(
        fairseq_command("train", args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, env=child_env(RESUMABLE),
    )
    lines, deadline = [], time.time() + timeout
    try:
        for line in proc.stdout:
            lines.append(line)
            if re.search(pattern, line):
                proc.send_signal(signal.SIGKILL)
                break
            assert time.time() < deadline, "".join(lines[-50:])
    finally:
        proc.stdout.close()
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "".join(lines[-50:])
    return "".join(lines)


def test_sigkilled_training_resumes_and_matches_an_uninterrupted_run(
    resume_data, uninterrupted, tmp_path
):
    log_ref, ckpt_ref = uninterrupted
    save = str(tmp_path / "ckpt")
    args = train_args(resume_data, save, *RESUME_TRAIN)

    # 1. killed halfway through copying the second save (end of epoch 1, written as
    #    checkpoint_best.pt) to checkpoint_last.pt; the first save (update 5) made two copies.
    script = tmp_path / "kill_during_copy.py"
    script.write_text(KILL_DURING_COPY)
    proc = subprocess.run(
        [sys.executable, str(script), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, env=child_env({"KILL_DURING_COPY": "3", **RESUMABLE}), timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL and "FAULT: killed while copying" in proc.stdout
    saved = re.findall(r"Saved checkpoint \S+ \(epoch \d+ @ (\d+) updates", proc.stdout)
    assert len(saved) == 1, proc.stdout[-3000:]  # one complete save, the second one interrupted
    leftovers = [name for name in os.listdir(save) if name.endswith(".tmp")]
    assert leftovers, os.listdir(save)  # the half-written copy went to a temporary file ...
    # ... and checkpoint_last.pt still holds the previous complete checkpoint
    assert torch.load(os.path.join(save, "checkpoint_last.pt"))["optimizer_history"][-1][
        "num_updates"] == int(saved[0])

    # 2. resumes from that checkpoint; killed again from outside in the middle of an epoch
    log = kill_when(args, r"num_updates=17\b")
    assert loaded_updates(log) == int(saved[0]), log[-3000:]
    saved = re.findall(r"Saved checkpoint \S+ \(epoch \d+ @ (\d+) updates", log)

    # 3. resumes from the latest checkpoint and finishes
    log = train_subprocess(args, env=RESUMABLE)
    assert loaded_updates(log) == int(saved[-1]), log[-3000:]
    assert f"num_updates {MAX_UPDATE}" in log.replace("=", " ")

    # fairseq prints losses with 3 decimals; the parameters (which determine every later loss)
    # are compared directly: the resumed run computes exactly what the unbroken one computed.
    (epoch, train), (_, valid) = final_losses(log)
    (epoch_ref, train_ref), (_, valid_ref) = final_losses(log_ref)
    assert epoch == epoch_ref
    assert abs(train - train_ref) <= 1e-4 and abs(valid - valid_ref) <= 1e-4, (train, valid)
    final = load_params(os.path.join(save, "checkpoint_last.pt"))
    diff = max_param_diff(final, load_params(ckpt_ref))
    assert diff <= 1e-6, diff


def test_interrupted_copy_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    """fairseq's checkpoint copies go through a temporary file: the target is never half-written."""
    from fairseq.file_io import PathManager

    good, new = tmp_path / "checkpoint_last.pt", tmp_path / "checkpoint_2_10.pt"
    good.write_bytes(b"previous complete checkpoint")
    new.write_bytes(b"x" * 1000)

    def copy_half_then_crash(src, dst, *args, **kwargs):
        with open(dst, "wb") as f:
            f.write(open(src, "rb").read()[:500])
        raise KeyboardInterrupt  # stands for the process dying here

    with compat.fixes_installed("atomic_checkpoint_copies"):
        monkeypatch.setattr(shutil, "copyfile", copy_half_then_crash)
        with pytest.raises(KeyboardInterrupt):
            PathManager.copy(str(new), str(good), overwrite=True)
        assert good.read_bytes() == b"previous complete checkpoint"
        monkeypatch.undo()
        assert PathManager.copy(str(new), str(good), overwrite=True)
    assert good.read_bytes() == b"x" * 1000
    assert sorted(os.listdir(tmp_path)) == ["checkpoint_2_10.pt", "checkpoint_last.pt"]


def test_interrupted_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    """A save's first file goes to NAME.tmp and is renamed only once complete (fairseq's own)."""
    from fairseq import checkpoint_utils

    path = tmp_path / "checkpoint_last.pt"
    checkpoint_utils.torch_persistent_save({"model": {"w": torch.zeros(3)}}, str(path))
    real_save = torch.save

    def save_half_then_crash(obj, f, *args, **kwargs):
        buffer = io.BytesIO()
        real_save(obj, buffer, *args, **kwargs)
        f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        raise KeyboardInterrupt  # stands for the process dying here

    monkeypatch.setattr(torch, "save", save_half_then_crash)
    with pytest.raises(KeyboardInterrupt):
        checkpoint_utils.torch_persistent_save({"model": {"w": torch.ones(3)}}, str(path))
    monkeypatch.undo()
    assert torch.equal(torch.load(str(path))["model"]["w"], torch.zeros(3))


# Validation every 2 updates; a learning rate too small to change any weight, so that no
# validation after the first is better and --patience 3 stops training at its fourth.
PATIENT = ["--patience", "3", "--validate-interval-updates", "2", "--save-interval-updates",
           "2", "--no-epoch-checkpoints", "--lr", "1e-12"]


def train_until_stopped(args):
    """fairseq-train in this process, starting as a new process would (no patience state);
    returns the updates of its last checkpoint."""
    from fairseq_cli import train

    for name in ("best", "num_runs"):
        if hasattr(train.should_stop_early, name):
            delattr(train.should_stop_early, name)
    run_cli_in_process("train", args)
    save_dir = args[args.index("--save-dir") + 1]
    return updates_in(os.path.join(save_dir, "checkpoint_last.pt"))


def updates_in(checkpoint):
    return torch.load(checkpoint)["optimizer_history"][-1]["num_updates"]


@pytest.fixture
def patience_resume():
    with compat.fixes_installed("patience_resume"):
        yield


def test_a_resumed_run_stops_early_where_the_uninterrupted_run_stops(
    resume_data, tmp_path, patience_resume
):
    stopped_at = train_until_stopped(
        train_args(resume_data, str(tmp_path / "whole"), *PATIENT, "--max-update", "100"))
    assert 4 < stopped_at < 100  # stopped by --patience, after the interruption below

    resumed = train_args(resume_data, str(tmp_path / "resumed"), *PATIENT)
    assert train_until_stopped([*resumed, "--max-update", "4"]) == 4
    saved = torch.load(str(tmp_path / "resumed" / "checkpoint_last.pt"))["extra_state"]
    assert saved["memsizer_patience"]["num_runs"] == 1  # validations at 2 (best) and 4
    checkpoint_at_4 = tmp_path / "resumed" / "checkpoint_4.pt"
    shutil.copy(tmp_path / "resumed" / "checkpoint_last.pt", checkpoint_at_4)
    assert train_until_stopped([*resumed, "--max-update", "100"]) == stopped_at

    # a checkpoint without the count: fairseq's best score is kept, the count starts afresh
    state = torch.load(str(checkpoint_at_4))
    del state["extra_state"]["memsizer_patience"]
    older = tmp_path / "older"
    older.mkdir()
    torch.save(state, older / "checkpoint_last.pt")
    assert train_until_stopped(
        [*train_args(resume_data, str(older), *PATIENT), "--max-update", "100"]
    ) == stopped_at + 2
