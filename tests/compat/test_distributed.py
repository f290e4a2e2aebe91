"""Data-parallel training through fairseq's engine: 2 CPU ranks (gloo) = 1 rank, twice the batch.

Each rank is its own ``fairseq-train`` process, launched as fairseq documents for CPU::

    --cpu --distributed-backend gloo --ddp-backend legacy_ddp --distributed-world-size 2
    --distributed-rank R --distributed-init-method tcp://127.0.0.1:PORT --distributed-no-spawn

fairseq deals the batches of an epoch out to the ranks in turn (rank r takes batches r, r + 2,
...) and sums the gradients, so after N updates 2 ranks hold the same parameters as 1 rank with
``--update-freq 2`` (which sums the gradients of the same two consecutive batches). Dropout is
off: the ranks draw their dropout masks from the same seed, one rank with ``--update-freq 2`` from
one stream. The translation run is also stopped and resumed on 2 ranks: rank 0 loads the
checkpoint and ``broadcast_object`` sends it to rank 1, which reads it with torch's safe loader.
The one-rank references run in this process.
"""
import os
import random
import socket
import subprocess

from memsizer_fairseq.tools.toolkit.fairseq_cli import USER_DIR, fairseq_command
from fairseq_helpers import (
    child_env,
    load_params,
    loaded_updates,
    max_param_diff,
    run_cli_in_process,
    train_args,
    write_translation_data,
)
from memsizer_fairseq import compat

TOL = 1e-5


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def distributed_flags(world_size, rank, port):
    return [
        "--distributed-backend", "gloo", "--ddp-backend", "legacy_ddp",
        "--distributed-world-size", str(world_size), "--distributed-rank", str(rank),
        "--distributed-init-method", f"tcp://127.0.0.1:{port}", "--distributed-no-spawn",
    ]


# the ranks resume in epoch 2 on the batches the uninterrupted run took, with the fixes the
# one-rank reference has in this process (those change no uninterrupted run)
RESUMABLE = {compat.ENVIRONMENT_VARIABLE: ",".join(
    ["default", "same_batches_after_resume", *compat.installed_fixes()])}


def train_on_ranks(args, world_size=2, timeout=300):
    """One ``fairseq-train`` process per rank; returns their outputs (rank 0 first)."""
    port = free_port()
    procs = [
        subprocess.Popen(
            fairseq_command("train", [*args, *distributed_flags(world_size, rank, port)]),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env=child_env(RESUMABLE),
        )
        for rank in range(world_size)
    ]
    outputs = []
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=timeout)[0])
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for rank, (proc, out) in enumerate(zip(procs, outputs)):
        assert proc.returncode == 0, f"rank {rank} failed:\n{out[-4000:]}"
    assert f"training on {world_size} devices" in outputs[0], outputs[0][-3000:]
    return outputs


def test_memsizer_transformer_two_ranks_equal_one_rank_with_twice_the_batch(tmp_path):
    data = write_translation_data(str(tmp_path / "mt"))
    common = ["--dropout", "0", "--disable-validation", "--no-epoch-checkpoints"]

    two = str(tmp_path / "two_ranks")
    # 6 updates (4 per epoch), then resumed on 2 ranks in the middle of epoch 2, to 8.
    train_on_ranks(train_args(data, two, *common, "--max-update", "6"))
    rank0, _ = train_on_ranks(train_args(data, two, *common, "--max-update", "8"))
    assert loaded_updates(rank0) == 6, rank0[-3000:]
    assert "num_updates 8" in rank0.replace("=", " ")

    one = str(tmp_path / "one_rank")
    run_cli_in_process("train", train_args(data, one, *common, "--max-update", "8",
                                           "--update-freq", "2"))

    got = load_params(os.path.join(two, "checkpoint_last.pt"))
    want = load_params(os.path.join(one, "checkpoint_last.pt"))
    assert max_param_diff(got, want) <= TOL


def _lm_line(rng, words=20):
    start, length = rng.randrange(words), rng.randint(4, 10)
    return " ".join(f"w{(start + i) % words}" for i in range(length))


def test_memsizer_lm_two_ranks_equal_one_rank_with_twice_the_batch(tmp_path):
    rng = random.Random(0)
    for split, size in (("train", 300), ("valid", 20)):
        (tmp_path / f"{split}.txt").write_text("\n".join(_lm_line(rng) for _ in range(size)) + "\n")
    data = str(tmp_path / "bin")
    run_cli_in_process("preprocess", [
        "--only-source", "--trainpref", tmp_path / "train.txt", "--validpref",
        tmp_path / "valid.txt", "--destdir", data, "--workers", "1",
    ])

    def lm_args(save_dir, *extra):
        return [
            data, "--user-dir", USER_DIR, "--task", "language_modeling", "--arch", "memsizer_lm",
            "--decoder-layers", "1", "--decoder-embed-dim", "32", "--decoder-ffn-embed-dim", "64",
            "--decoder-attention-heads", "2", "--causal-proj-dim", "8",
            "--tokens-per-sample", "32", "--sample-break-mode", "none", "--dropout", "0",
            "--optimizer", "adam", "--lr", "1e-3", "--max-tokens", "128", "--max-update", "5",
            "--seed", "2", "--cpu", "--num-workers", "0", "--disable-validation",
            "--no-epoch-checkpoints", "--log-format", "simple", "--log-interval", "1",
            "--save-dir", save_dir, *extra,
        ]

    two, one = str(tmp_path / "two_ranks"), str(tmp_path / "one_rank")
    train_on_ranks(lm_args(two))
    run_cli_in_process("train", lm_args(one, "--update-freq", "2"))
    got = load_params(os.path.join(two, "checkpoint_last.pt"))
    want = load_params(os.path.join(one, "checkpoint_last.pt"))
    assert max_param_diff(got, want) <= TOL


def test_the_launch_documentation_names_the_tested_flags():
    """docs/distributed.md shows the CPU launch tested here and the GPU launchers."""
    doc = open(os.path.join(os.path.dirname(USER_DIR), "docs", "distributed.md")).read()
    for flag in distributed_flags(2, 0, 1)[::2] + ["--cpu", "gloo", "legacy_ddp"]:
        assert flag in doc, flag
    for launcher in ("torchrun", "srun", "--distributed-port"):
        assert launcher in doc, launcher
