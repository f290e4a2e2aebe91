"""With nothing set, the plugin changes no result of a stock fairseq model: fairseq's own
``transformer`` trains (a remainder batch, an epoch boundary, a resume in the middle of epoch 2),
validates and generates exactly as without ``--user-dir memsizer_fairseq``: the same JSON log
records, bitwise the same checkpoints, the same fairseq-generate output. The fixes that would
change it (``keep_last_batch``, ``same_batches_after_resume``, ``patience_resume``,
``diverse_beam_groups``, ``no_repeat_ngram``) are off by default; turned on, the same runs
differ.

Each side is one new interpreter that runs fairseq-train, the resumed fairseq-train and
fairseq-generate in turn (``stock_driver.py``); the side without the plugin loads fairseq's
checkpoints with torch's unsafe loader (``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``), the only way stock
fairseq reads them under torch >= 2.6. The runs with every fix turned on share this process.
"""
import contextlib
import io
import json
import os
import re
import subprocess
import sys

import pytest
import stock_driver
import torch

from fairseq_helpers import child_env, write_translation_data
from memsizer_fairseq import compat
from memsizer_fairseq.tools.toolkit.fairseq_cli import USER_DIR

# 61 training pairs in batches of 8: 7 full batches and a remainder of 5, which fairseq-fixed
# drops (keep_last_batch keeps it); 13 validation and 19 test sentences leave remainders too.
SIZES = {"train": 61, "valid": 13, "test": 19}
MODEL = [
    "--arch", "transformer", "--encoder-layers", "1", "--decoder-layers", "1",
    "--encoder-embed-dim", "16", "--decoder-embed-dim", "16", "--encoder-ffn-embed-dim", "32",
    "--decoder-ffn-embed-dim", "32", "--encoder-attention-heads", "2",
    "--decoder-attention-heads", "2", "--share-all-embeddings",
]
TRAIN = [
    "--optimizer", "adam", "--lr", "1e-3", "--dropout", "0.1", "--batch-size", "8",
    "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1", "--seed", "2",
    "--patience", "5", "--cpu", "--num-workers", "0", "--no-epoch-checkpoints",
    "--log-format", "json", "--log-interval", "1",
]
# epoch 1 (7 updates) and 3 updates of epoch 2, then resumed to the end of epoch 2
FIRST, RESUMED = ["--max-update", "10"], ["--max-epoch", "2"]
GENERATE = ["--beam", "2", "--batch-size", "8", "--max-len-b", "12", "--cpu"]

TIMING = {"wps", "ups", "wall", "train_wall", "gb_free", "cuda_gb_allocated", "cuda_gb_reserved",
          "cuda_gb_free"}


def commands(data, save, plugin):
    return [data, save, USER_DIR if plugin else "", [*MODEL, *TRAIN], FIRST, RESUMED, GENERATE]


def start_side(data, save, plugin):
    """The commands in a new interpreter, with the plugin and nothing set, or without it."""
    env = child_env()
    env.pop("MEMSIZER_FAIRSEQ_FIXES", None)
    if not plugin:
        env["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"
    return subprocess.Popen([sys.executable, stock_driver.__file__,
                             json.dumps(commands(data, save, plugin))],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def finish(proc, save):
    output = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, output[-4000:]
    return Side(output, os.path.join(save, "checkpoint_last.pt"))


class Side:
    """What one side produced: fairseq's JSON records, the generated lines, the checkpoint."""

    def __init__(self, output, checkpoint):
        self.output = output
        self.records = []  # (tag, stats without timings)
        for line in output.splitlines():
            for tag in ("train_inner", "train", "valid"):
                marker = f"| {tag} | "
                if marker in line and line.rstrip().endswith("}"):
                    stats = json.loads(line.split(marker, 1)[1])
                    self.records.append((tag, {k: v for k, v in stats.items()
                                               if k.split("_", 1)[-1] not in TIMING
                                               and k not in TIMING}))
        self.generated = [line for line in output.splitlines() if line[:2] in ("S-", "T-", "H-",
                                                                              "D-", "P-")]
        self.checkpoint = torch.load(checkpoint, map_location="cpu", weights_only=False)

    def updates(self):
        return [int(stats["num_updates"]) for tag, stats in self.records if tag == "train_inner"]


def assert_same_tensors(a, b, where):
    if torch.is_tensor(a):
        assert torch.is_tensor(b) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), (where, a.keys(), b.keys())
        for key in a:
            assert_same_tensors(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_tensors(x, y, f"{where}[{i}]")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_translation_data(str(tmp_path_factory.mktemp("stock")), SIZES)


@pytest.fixture(scope="module")
def sides(data, tmp_path_factory):
    """Stock fairseq, and fairseq with the plugin and nothing set; run side by side."""
    saves = {name: str(tmp_path_factory.mktemp(name)) for name in ("stock", "plugin")}
    procs = {name: start_side(data, saves[name], plugin=name == "plugin") for name in saves}
    return {name: finish(procs[name], saves[name]) for name in saves}


def test_the_runs_cover_a_remainder_an_epoch_boundary_and_a_resume(sides):
    stock = sides["stock"]
    assert stock.updates() == list(range(1, 15)), stock.updates()  # 7 per epoch: 61 // 8
    assert re.search(r"Loaded checkpoint \S+ \(epoch 2 @ 10 updates\)", stock.output)
    assert [tag for tag, _ in stock.records].count("valid") >= 3
    assert len([line for line in stock.generated if line.startswith("H-")]) == 16  # 19 // 8 * 8


def test_the_plugin_with_nothing_set_changes_no_result(sides):
    stock, plugin = sides["stock"], sides["plugin"]
    assert "fairseq fixes installed: replace_unk_alignment, data_buffer_exit, " \
           "atomic_checkpoint_copies; not installed: keep_last_batch, same_batches_after_resume, " \
           "diverse_beam_groups, no_repeat_ngram, patience_resume" in plugin.output
    assert plugin.records == stock.records
    assert plugin.generated == stock.generated
    assert_same_tensors(plugin.checkpoint["model"], stock.checkpoint["model"], "model")
    assert_same_tensors(plugin.checkpoint["last_optimizer_state"],
                        stock.checkpoint["last_optimizer_state"], "optimizer")
    extra_plugin, extra_stock = plugin.checkpoint["extra_state"], stock.checkpoint["extra_state"]
    assert extra_plugin.keys() == extra_stock.keys()
    assert extra_plugin["train_iterator"] == extra_stock["train_iterator"]
    assert extra_plugin["best"] == extra_stock["best"]


def test_the_result_changing_fixes_change_these_runs_when_asked_for(data, sides, tmp_path):
    """The test can fail: with every fix, the last batches are kept and the resumed run takes the
    batches of epoch 1, so the same runs give other updates, losses and translations."""
    save = str(tmp_path / "all")
    # other tests may have run fairseq-train in this process: their --patience count, which
    # patience_resume would save into these checkpoints, is dropped
    imported = sys.modules.get("fairseq_cli.train")
    for name in ("best", "num_runs"):
        if imported is not None and hasattr(imported.should_stop_early, name):
            delattr(imported.should_stop_early, name)
    out = io.StringIO()
    with compat.fixes_installed("all"), contextlib.redirect_stdout(out):  # in this process
        stock_driver.train_resume_generate(*commands(data, save, plugin=True))
    every = Side(out.getvalue(), os.path.join(save, "checkpoint_last.pt"))
    stock = sides["stock"]
    assert every.checkpoint["optimizer_history"][-1]["num_updates"] == 16  # 8 per epoch
    assert len([line for line in every.generated if line.startswith("H-")]) == 19
    assert every.generated != stock.generated
    assert every.checkpoint["extra_state"]["train_iterator"]["epoch"] == 3
    assert "memsizer_patience" in every.checkpoint["extra_state"]
    with pytest.raises(AssertionError):
        assert_same_tensors(every.checkpoint["model"], stock.checkpoint["model"], "model")
