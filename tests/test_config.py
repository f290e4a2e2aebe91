"""One config: each option has one name as flag, field and layer argument; values come only
from the presets table; reading the options checks them in one place, naming the flag."""
import argparse
import ast
import inspect
import os
from dataclasses import fields

import pytest

from memsizer_fairseq.config import RENAMED, MemsizerConfig, fill_unset, flag_of
from memsizer_fairseq.layers import MemsizerLayer
from memsizer_fairseq.models.presets import LM_DEFAULTS, MT_DEFAULTS, PRESETS

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       "memsizer_fairseq")
AUTHORS_FLAGS = ("--use-memsizer", "--encoder-use-memsizer", "--decoder-use-memsizer",
                 "--causal-proj-dim", "--cross-proj-dim", "--q-init-scale", "--kv-init-scale")


def parser():
    p = argparse.ArgumentParser()
    MemsizerConfig.add_args(p)
    return p


def test_each_field_is_a_flag_of_its_name_with_no_default():
    actions = {a.dest: a for a in parser()._actions if a.dest != "help"}
    assert set(actions) == {f.name for f in fields(MemsizerConfig)}
    for name, action in actions.items():
        assert flag_of(name) in action.option_strings and action.default is None
    assert all(any(flag in a.option_strings for a in actions.values()) for flag in AUTHORS_FLAGS)
    assert all(getattr(MemsizerConfig(), f.name) is None for f in fields(MemsizerConfig))


def test_layer_arguments_are_named_as_the_flags():
    layer_args = set(inspect.signature(MemsizerLayer.__init__).parameters)
    for role in ("causal", "self", "cross"):
        config = MemsizerConfig.from_args(argparse.Namespace(**MT_DEFAULTS))
        for name in config.layer_args(role):
            assert name in layer_args
            assert name == "proj_dim" or name in {f.name for f in fields(MemsizerConfig)}


def test_the_presets_table_is_where_values_live():
    names = {f.name for f in fields(MemsizerConfig)}
    assert set(MT_DEFAULTS) == set(LM_DEFAULTS) == names
    for preset in PRESETS:
        args = argparse.Namespace()
        for values in preset.fills:
            fill_unset(args, values)
        MemsizerConfig.from_args(args)  # every preset resolves every option


@pytest.mark.parametrize("flags, message", [
    (["--causal-proj-dim", "0"], "--causal-proj-dim"),
    (["--cross-attention", "linear"], "--cross-attention"),
    (["--causal-form", "flash"], "--causal-form"),
    (["--causal-short-conv", "1"], "--causal-short-conv"),
])
def test_bad_flags_are_refused_by_argparse_naming_the_flag(flags, message, capsys):
    with pytest.raises(SystemExit):
        parser().parse_args(flags)
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("name, value", [
    ("q_init_scale", -1.0), ("read_init_gain", "loud"), ("cross_attention", "memsizer,linear"),
    ("causal_block_size", 0),
])
def test_values_from_a_config_or_checkpoint_are_checked_naming_the_flag(name, value):
    args = argparse.Namespace(**dict(MT_DEFAULTS, **{name: value}))
    with pytest.raises(ValueError, match=flag_of(name)):
        MemsizerConfig.from_args(args)


def test_an_option_no_preset_set_is_refused():
    with pytest.raises(ValueError, match="--causal-proj-dim .*no --arch preset set it"):
        MemsizerConfig.from_args(argparse.Namespace(**dict(MT_DEFAULTS, causal_proj_dim=None)))


def test_earlier_names_in_checkpoints_keep_their_meaning():
    assert RENAMED == {"memsizer_block_size": "causal_block_size"}
    old = argparse.Namespace(**{k: v for k, v in MT_DEFAULTS.items() if k != "causal_block_size"},
                             memsizer_block_size=16)
    fill_unset(old, MT_DEFAULTS)  # the preset does not override the checkpoint's value
    assert MemsizerConfig.from_args(old).causal_block_size == 16
    assert parser().parse_args(["--memsizer-block-size", "8"]).causal_block_size == 8


def test_resolution_of_use_memsizer_and_the_encoder_slots():
    config = MemsizerConfig.from_args(argparse.Namespace(**dict(MT_DEFAULTS, use_memsizer=True)))
    assert config.encoder_use_memsizer and config.decoder_use_memsizer
    assert config.encoder_proj_dim == config.cross_proj_dim == 32
    assert config.layer_args("self")["proj_dim"] == 32
    gain = MemsizerConfig.from_args(
        argparse.Namespace(**dict(MT_DEFAULTS, read_init_gain="sqrt-k")))
    assert gain.layer_args("cross")["read_init_gain"] == 32 ** 0.5


def _imports(path):
    tree = ast.parse(open(path).read())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def test_the_math_and_the_config_do_not_import_fairseq():
    paths = [os.path.join(PACKAGE, "config.py")]
    for folder in ("ops", "layers"):
        for root, _, files in os.walk(os.path.join(PACKAGE, folder)):
            paths += [os.path.join(root, f) for f in files if f.endswith(".py")]
    for path in paths:
        assert not [m for m in _imports(path) if m.split(".")[0] == "fairseq"], path


def test_the_plugin_never_imports_a_tool():
    """Not in its source, and not when fairseq loads it (a fresh interpreter)."""
    import subprocess
    import sys

    probe = ("import sys, memsizer_fairseq; "
             "print([m for m in sys.modules if m.startswith('memsizer_fairseq.tools') "
             "or m.split('.')[0] == 'matplotlib'])")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         cwd=os.path.dirname(PACKAGE))
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr
    for root, _, files in os.walk(PACKAGE):
        if os.path.join(PACKAGE, "tools") in root:
            continue
        for name in files:
            if name.endswith(".py"):
                text = open(os.path.join(root, name)).read()
                assert "tools" not in [m.split(".")[1] for m in _imports(os.path.join(root, name))
                                       if m.startswith("memsizer_fairseq.")], name
                assert "from .tools" not in text and "from ..tools" not in text, name
                assert "matplotlib" not in list(_imports(os.path.join(root, name))), name
