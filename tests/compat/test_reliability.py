"""Bad input gets a clear error before any work starts; every checkpoint path uses the safe loader.

fairseq's tools run in this process (their ``cli_main``, as the command line would): nothing is
gained by paying a new interpreter for each.
The check that needs a process *without* the plugin (no ``--user-dir``) runs as a subprocess.
Invalid Memsizer flag values (``--causal-proj-dim 0`` ...) and heads that do not divide the width
are tested in ``test_model.py`` and ``test_lm.py``.
"""
import argparse
import os
import pickle
import re
import subprocess

import numpy as np
import pytest
import torch

from fairseq_helpers import build_translation_model, write_dicts
from memsizer_fairseq.compat import checkpoint_safety
from memsizer_fairseq.models.checkpoint_mismatch import CheckpointMismatchError
from memsizer_fairseq.models.transformer import MemsizerTransformerModel
from memsizer_fairseq.tools.toolkit.fairseq_cli import USER_DIR, fairseq_command
from fairseq_helpers import (
    TINY_MT,
    TINY_TRAIN,
    child_env,
    fairseq_log,
    run_cli_in_process,
    train_args,
    write_translation_data,
)

LONG, EMPTY = 3, 4  # test-set lines: a 36-word source, an empty source
MAX_POSITIONS = ["--max-source-positions", "20", "--max-target-positions", "20"]


def _edit(split, src, tgt):
    if split == "train":
        src[5] = ""  # empty source
        tgt[7] = ""  # empty target
        src[9] = tgt[9] = ""  # both empty
        src[11] = " ".join([src[0]] * 12)  # longer than --max-source-positions 20
    if split == "test":
        src[LONG] = " ".join([src[0]] * 12)
        src[EMPTY] = ""


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_translation_data(str(tmp_path_factory.mktemp("reliability")), edit=_edit)


@pytest.fixture(scope="module")
def memsizer_run(corpus, tmp_path_factory):
    save = str(tmp_path_factory.mktemp("memsizer_ckpt"))
    with fairseq_log() as log:
        run_cli_in_process("train", train_args(
            corpus, save, "--max-update", "6", "--dropout", "0", "--no-epoch-checkpoints",
            *MAX_POSITIONS,
        ))
    return save, os.path.join(save, "checkpoint_last.pt"), log.getvalue()


@pytest.fixture(scope="module")
def transformer_checkpoint(corpus, tmp_path_factory):
    """A plain fairseq ``transformer_tiny`` checkpoint of the same width (trained in-process)."""
    save = str(tmp_path_factory.mktemp("transformer_ckpt"))
    arch = TINY_MT.index("--arch") + 1
    model = TINY_MT[:arch] + ["transformer_tiny"] + TINY_MT[arch + 1:]
    run_cli_in_process("train", [
        corpus, "--user-dir", USER_DIR, *model, *TINY_TRAIN, "--max-update", "1",
        "--disable-validation", "--no-epoch-checkpoints", "--save-dir", save,
    ])
    return os.path.join(save, "checkpoint_last.pt")


def causes(error):
    """``error`` and everything it was raised from or while handling."""
    seen = []
    while error is not None and error not in seen:
        seen.append(error)
        error = error.__cause__ or error.__context__
    return seen


# -- a Memsizer checkpoint without --user-dir --------------------------------------------------


def test_memsizer_checkpoint_without_user_dir_says_which_flag_to_add(
    corpus, memsizer_run, tmp_path
):
    _, checkpoint, _ = memsizer_run
    first_key = next(iter(torch.load(checkpoint)))
    assert first_key == checkpoint_safety.MARKER_KEY == "memsizer_fairseq"
    proc = subprocess.run(  # plain fairseq: the plugin is not imported, nor its allowlist
        fairseq_command("generate", [corpus, "--path", checkpoint, "--cpu"]),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=child_env(),
        cwd=str(tmp_path), timeout=300,
    )
    assert proc.returncode != 0
    assert "Unsupported global: GLOBAL memsizer_fairseq." in proc.stdout, proc.stdout[-3000:]
    assert "load_it_with_--user-dir_memsizer_fairseq" in proc.stdout


def test_only_the_plugins_models_carry_the_marker(memsizer_run, transformer_checkpoint):
    state = torch.load(transformer_checkpoint)
    assert checkpoint_safety.MARKER_KEY not in state
    assert not checkpoint_safety.is_plugin_checkpoint(state)
    assert checkpoint_safety.is_plugin_checkpoint(torch.load(memsizer_run[1]))


def test_forcing_the_unsafe_loader_is_warned_about(monkeypatch):
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.warns(UserWarning, match="runs any code a checkpoint carries"):
        checkpoint_safety.install_safe_loading()


# -- a checkpoint of another architecture --------------------------------------------------------


@pytest.mark.parametrize("flag", ["--finetune-from-model", "--restore-file"])
def test_transformer_checkpoint_into_a_memsizer_preset_names_the_mismatch(
    corpus, transformer_checkpoint, tmp_path, flag
):
    with pytest.raises(Exception) as info:
        run_cli_in_process("train", train_args(
            corpus, str(tmp_path / "ckpt"), "--max-update", "1", flag, transformer_checkpoint,
        ))
    mismatch = [e for e in causes(info.value) if isinstance(e, CheckpointMismatchError)]
    assert mismatch, [repr(e)[:300] for e in causes(info.value)]
    message = str(mismatch[0])
    assert "--arch memsizer_transformer_tiny" in message
    assert "hold softmax attention (k_proj/v_proj/out_proj) in the checkpoint" in message
    assert "decoder.layers.0.self_attn" in message and "decoder.layers.0.encoder_attn" in message
    assert "Missing Memsizer parameters (16): decoder.layers.0.self_attn.l_proj.weight" in message
    assert "Unexpected parameters in the checkpoint (12)" in message and "k_proj" in message
    assert not os.path.exists(tmp_path / "ckpt" / "checkpoint_last.pt")  # nothing trained


SMALL = ["--encoder-embed-dim", "16", "--decoder-embed-dim", "16", "--encoder-layers", "1",
         "--decoder-layers", "1", "--encoder-attention-heads", "2",
         "--decoder-attention-heads", "2"]


@pytest.fixture(scope="module")
def dicts(tmp_path_factory):
    return write_dicts(str(tmp_path_factory.mktemp("dicts")))


def _model(dicts, *flags):
    return build_translation_model(dicts, "memsizer_transformer_tiny", SMALL + list(flags))[0]


def test_memsizer_checkpoint_with_other_settings_names_the_flag(dicts):
    four = _model(dicts, "--causal-proj-dim", "4")
    eight = _model(dicts, "--causal-proj-dim", "8")
    with pytest.raises(CheckpointMismatchError) as info:
        eight.load_state_dict(four.state_dict())
    message = str(info.value)
    assert "Shape of decoder.layers.0.self_attn.l_proj.weight: checkpoint (4, 16), model (8, 16)" \
        in message
    assert "--causal-proj-dim" in message and "Missing" not in message

    memsizer_encoder = _model(dicts, "--encoder-use-memsizer")
    with pytest.raises(CheckpointMismatchError, match="--encoder-use-memsizer") as info:
        four.load_state_dict(memsizer_encoder.state_dict())
    assert "hold Memsizer attention in the checkpoint where this model has softmax attention: " \
        "encoder.layers.0.self_attn" in str(info.value)
    with pytest.raises(CheckpointMismatchError, match="encoder.layers.0.self_attn"):
        memsizer_encoder.load_state_dict(four.state_dict())
    four.load_state_dict(_model(dicts, "--causal-proj-dim", "4").state_dict())  # fits: no error


# -- sources longer than --max-source-positions, empty lines -------------------------------------


def _generate(corpus, checkpoint, *extra):
    """fairseq-generate in batches of 16, the last one smaller (fairseq-fixed drops a batch that
    is not a multiple of --required-batch-size-multiple, 8 unless set)."""
    return run_cli_in_process("generate", [
        corpus, "--user-dir", USER_DIR, "--path", checkpoint, "--cpu", "--beam", "2",
        "--max-len-b", "10", "--batch-size", "16", "--required-batch-size-multiple", "1", *extra,
    ])


def _lines(output, kind):
    found = {}
    for line in output.splitlines():
        if line.startswith(kind + "-"):
            ident, rest = line[2:].split("\t", 1)
            found[int(ident)] = rest
    return found


def test_too_long_sources_are_refused_skipped_or_truncated_as_the_flags_say(corpus, memsizer_run):
    _, checkpoint, train_log = memsizer_run
    # training skips (and names) the too-long example, as fairseq does for training data
    assert re.search(r"1 samples have invalid sizes and will be skipped, max_positions=\(20, 20\)",
                     train_log), train_log[-3000:]
    with pytest.raises(Exception, match=rf"Size of sample #{LONG} is invalid \(=\(37, \d+\)\) "
                       r"since max_positions=\(20, 20\), skip this example with "
                       r"--skip-invalid-size-inputs-valid-test"):
        _generate(corpus, checkpoint, "--max-source-positions", "20")
    skipped = _lines(_generate(corpus, checkpoint, "--max-source-positions", "20",
                               "--skip-invalid-size-inputs-valid-test"), "S")
    assert sorted(skipped) == [i for i in range(40) if i != LONG]
    truncated = _lines(_generate(corpus, checkpoint, "--max-source-positions", "20",
                                 "--truncate-source"), "S")
    assert len(truncated) == 40 and len(truncated[LONG].split()) == 19  # + </s> = 20


def test_empty_lines_train_and_decode(corpus, memsizer_run, tmp_path):
    _, checkpoint, train_log = memsizer_run
    losses = [float(x) for x in re.findall(r"\bloss=([^,\s]+)", train_log)]
    assert len(losses) == 6 and all(np.isfinite(losses)), train_log[-2000:]
    out = _generate(corpus, checkpoint, "--skip-invalid-size-inputs-valid-test",
                    "--max-source-positions", "20")
    assert _lines(out, "S")[EMPTY] == ""
    scores = [float(h.split("\t")[0]) for h in _lines(out, "H").values()]
    assert len(scores) == 39 and all(np.isfinite(scores)), out[-2000:]
    lines = tmp_path / "input.txt"
    lines.write_text("kaka lomi\n\nmiru\n")
    for precision in ([], ["--fp16"]):  # fairseq's --fp16 decoding runs on CPU too (slowly)
        out = run_cli_in_process("interactive", [
            corpus, "--user-dir", USER_DIR, "--path", checkpoint, "--cpu", "--beam", "2",
            "-s", "src", "-t", "tgt", "--input", lines, "--max-len-b", "10", *precision,
        ])
        hypotheses = _lines(out, "H")
        assert sorted(hypotheses) == [0, 1, 2] and _lines(out, "S")[1] == ""
        scores = [float(h.split("\t")[0]) for h in hypotheses.values()]
        assert all(np.isfinite(scores)), out


# -- safe loading on every path -------------------------------------------------------------------


class RunsCode:
    """Unpickling this calls os.system: what a malicious checkpoint does."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _lm_dict(root):
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, "dict.txt"), "w") as f:
        f.writelines(f"w{i} {100 - i}\n" for i in range(20))
    return root


def _load_through(path, corpus, checkpoint, tmp_path):
    folder, name = os.path.split(checkpoint)
    if path == "generate":
        return _generate(corpus, checkpoint)
    if path == "interactive":
        (tmp_path / "in.txt").write_text("kaka\n")
        return run_cli_in_process("interactive", [
            corpus, "--user-dir", USER_DIR, "--path", checkpoint, "--cpu", "-s", "src",
            "-t", "tgt", "--input", tmp_path / "in.txt"])
    if path == "validate":
        return run_cli_in_process("validate", [
            corpus, "--user-dir", USER_DIR, "--path", checkpoint, "--cpu",
            "--task", "translation", "--max-tokens", "1000"])
    if path == "eval-lm":
        return run_cli_in_process("eval-lm", [
            _lm_dict(str(tmp_path / "lm")), "--user-dir", USER_DIR, "--path", checkpoint,
            "--cpu", "--task", "language_modeling"])
    if path in ("--restore-file", "--finetune-from-model"):
        return run_cli_in_process("train", train_args(
            corpus, str(tmp_path / "save"), "--max-update", "1", path, checkpoint))
    if path == "from_pretrained":
        return MemsizerTransformerModel.from_pretrained(
            folder, checkpoint_file=name, data_name_or_path=corpus, user_dir=USER_DIR)
    raise AssertionError(path)


LOAD_PATHS = ["generate", "interactive", "validate", "eval-lm", "--restore-file",
              "--finetune-from-model", "from_pretrained"]


@pytest.mark.parametrize("path", LOAD_PATHS)
def test_a_crafted_checkpoint_is_refused_unrun_on_every_path(corpus, tmp_path, path):
    assert "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD" not in os.environ
    ran = tmp_path / "code-ran"
    evil = str(tmp_path / "evil.pt")
    torch.save({"args": RunsCode(ran), "cfg": None, "model": {}}, evil)
    with pytest.raises(Exception) as info:
        _load_through(path, corpus, evil, tmp_path)
    refused = [e for e in causes(info.value) if isinstance(e, pickle.UnpicklingError)]
    assert refused and re.search(r"GLOBAL (posix|nt)\.system", str(refused[0])), \
        repr(info.value)[:2000]
    assert not ran.exists()


def test_the_hub_interface_loads_and_translates_a_memsizer_checkpoint(corpus, memsizer_run):
    save, _, _ = memsizer_run
    hub = MemsizerTransformerModel.from_pretrained(
        save, checkpoint_file="checkpoint_last.pt", data_name_or_path=corpus, user_dir=USER_DIR)
    assert isinstance(hub.translate("kaka lomi", beam=2, max_len_b=5), str)


def test_old_checkpoints_with_argparse_namespaces_still_load(corpus, memsizer_run, tmp_path):
    """fairseq < 0.10 stored ``args`` (an argparse.Namespace) and no ``cfg``; numpy scalars too."""
    _, checkpoint, _ = memsizer_run
    state = torch.load(checkpoint)
    state.pop(checkpoint_safety.MARKER_KEY)
    args = state["cfg"]["model"]  # a legacy model's config: the full training Namespace
    assert isinstance(args, argparse.Namespace)
    state["args"], state["cfg"] = args, None
    state["extra_state"]["val_loss"] = np.float64(state["extra_state"]["val_loss"])
    state["extra_state"]["best"] = np.float32(1.5)
    old = str(tmp_path / "old.pt")
    torch.save(state, old)
    loaded = torch.load(old)  # the safe loader, with the plugin's allowlist
    assert isinstance(loaded["args"], argparse.Namespace)
    out = _generate(corpus, old, "--skip-invalid-size-inputs-valid-test",
                    "--max-source-positions", "20")
    assert len(_lines(out, "H")) == 39
