"""Checkpoints load under torch's safe loader; a code-carrying checkpoint is refused unrun."""
import os
import pickle

import pytest
import torch
from fairseq import checkpoint_utils

import memsizer_fairseq  # noqa: F401  (installs the allowlist)
from memsizer_fairseq.tools.toolkit.fairseq_cli import USER_DIR


class RunsCode:
    """Unpickling this calls os.system: what a malicious checkpoint does."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def write_malicious_checkpoint(path, marker):
    torch.save({"args": RunsCode(marker), "model": {}, "cfg": None}, path)


def test_fairseq_loader_refuses_code_and_does_not_run_it(tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pt"
    write_malicious_checkpoint(path, marker)
    assert "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD" not in os.environ
    with pytest.raises(pickle.UnpicklingError, match="system"):
        checkpoint_utils.load_checkpoint_to_cpu(str(path))
    assert not marker.exists()


def test_fairseq_generate_refuses_code_and_does_not_run_it(tmp_path):
    from fairseq_helpers import run_cli_in_process, write_dicts

    data = write_dicts(str(tmp_path / "data"))
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pt"
    write_malicious_checkpoint(path, marker)
    with pytest.raises(pickle.UnpicklingError, match="system"):
        run_cli_in_process("generate", [data, "--user-dir", USER_DIR, "--path", path,
                                         "-s", "src", "-t", "tgt", "--cpu"])
    assert not marker.exists()


def test_a_plain_namespace_checkpoint_loads_safely(tmp_path):
    import argparse

    path = tmp_path / "ok.pt"
    state = {"args": argparse.Namespace(arch="memsizer_transformer"), "model": {"w": torch.ones(2)}}
    torch.save(state, path)
    loaded = torch.load(path)  # torch's default: weights_only=True
    assert loaded["args"].arch == "memsizer_transformer"
    assert torch.equal(loaded["model"]["w"], torch.ones(2))
