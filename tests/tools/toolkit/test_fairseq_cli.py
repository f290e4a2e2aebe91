"""The tools' way to run fairseq's command-line tools: each run in a process of its own, forked
from a server that imported torch and fairseq once, runs as ``python -m fairseq_cli.<tool>`` in a
new interpreter does: the same output, the same checkpoint, its own environment and input."""
import os
import re
import subprocess

import pytest
import torch

from fairseq_helpers import TOY_MODEL, TOY_TRAIN
from memsizer_fairseq import compat
from memsizer_fairseq.tools.toolkit import fairseq_cli


def train_args(data, save_dir, updates):
    return [data, "--user-dir", fairseq_cli.USER_DIR, *TOY_MODEL, *TOY_TRAIN,
            "--max-update", str(updates), "--log-interval", "5", "--save-dir", str(save_dir)]


def comparable(output, save_dir):
    """The output without what differs between two equal runs: times, speeds, the save dir."""
    output = output.replace(str(save_dir), "SAVE_DIR")
    output = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", "TIME", output)
    output = re.sub(r"\b(wps|ups|train_wall|wall|gb_free)( |=)[\d.]+", r"\1 X", output)
    output = re.sub(r"(took|in) [\d.]+ seconds", r"\1 X seconds", output)
    return output.splitlines()


def test_a_forked_run_equals_a_new_interpreters(trained, tmp_path):
    data, *_ = trained
    forked = fairseq_cli.run_fairseq("train", train_args(data, tmp_path / "forked", 12),
                                     env={"OMP_NUM_THREADS": "1"})
    new = subprocess.run(fairseq_cli.fairseq_command("train", train_args(data, tmp_path / "new",
                                                                         12)),
                         env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1"),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert new.returncode == 0, new.stdout[-3000:]
    assert comparable(forked, tmp_path / "forked") == comparable(new.stdout, tmp_path / "new")
    assert "| INFO | fairseq_cli.train | done training" in forked  # fairseq-train's log format
    weights = [torch.load(tmp_path / run / "checkpoint_last.pt", weights_only=False)["model"]
               for run in ("forked", "new")]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0])


def test_each_run_has_its_own_environment(trained, tmp_path, monkeypatch):
    """The plugin is imported by each run through --user-dir, with the fixes its own
    MEMSIZER_FAIRSEQ_FIXES asks for (None: the variable removed, the default fixes); this
    process keeps its own."""
    data, *_ = trained
    monkeypatch.setenv(compat.ENVIRONMENT_VARIABLE, "none")
    before = compat.installed_fixes(), dict(os.environ)
    for value, expected in [("all", ", ".join(compat.fix_table())), ("none", "none"),
                            (None, ", ".join(compat.selected_fixes("default")))]:
        output = fairseq_cli.run_fairseq("train", train_args(data, tmp_path / str(value), 1),
                                         env={compat.ENVIRONMENT_VARIABLE: value})
        assert f"fairseq fixes installed: {expected};" in output
    assert (compat.installed_fixes(), dict(os.environ)) == before


def test_input_reaches_the_tool_and_a_failure_names_it(trained):
    data, save_dir, _ = trained
    output = fairseq_cli.run_fairseq("interactive", [
        data, "--user-dir", fairseq_cli.USER_DIR, "--path",
        os.path.join(save_dir, "checkpoint_best.pt"), "--cpu", "--beam", "2"],
        stdin="poru karu gude\nnesi loru sine\n")
    assert [line.split("\t")[0] for line in output.splitlines()
            if line.startswith("S-")] == ["S-0", "S-1"]
    with pytest.raises(fairseq_cli.FairseqCommandError,
                       match=r"fairseq-train failed \(exit 2\)(.|\n)*invalid choice"):
        fairseq_cli.run_fairseq("train", [data, "--arch", "no_such_arch"])
