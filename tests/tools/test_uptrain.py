"""Uptraining into either cross-attention mode: what is copied is copied exactly; attention
transfer (``--data``) lowers each converted layer's error and touches nothing else."""
import json
import os

import pytest
import torch

from fairseq_helpers import build_translation_model, write_dicts
from memsizer_fairseq.models.attention import MemsizerAttention
from memsizer_fairseq.tools.uptrain import ConversionError, build_memsizer_model, convert_state

SMALL = [
    "--encoder-embed-dim", "16", "--decoder-embed-dim", "16", "--encoder-ffn-embed-dim", "32",
    "--decoder-ffn-embed-dim", "32", "--encoder-layers", "2", "--decoder-layers", "2",
    "--encoder-attention-heads", "2", "--decoder-attention-heads", "2", "--dropout", "0",
]


@pytest.fixture(scope="module")
def transformer_state(tmp_path_factory):
    data_dir = write_dicts(str(tmp_path_factory.mktemp("dicts")))
    torch.manual_seed(0)
    model, _, args, _ = build_translation_model(data_dir, "transformer", SMALL)
    return {"model": model.state_dict(), "cfg": {"model": args}}


@pytest.mark.parametrize("cross, softmax_layers", [
    ("memsizer", []), ("softmax", [0, 1]), ("memsizer,softmax", [1]),
])
def test_conversion_keeps_softmax_cross_attention_bit_for_bit(transformer_state, cross,
                                                             softmax_layers):
    old = transformer_state["model"]
    new, report = convert_state(transformer_state, {"cross_attention": cross})
    assert new["cfg"]["model"].cross_attention == cross
    model = new["model"]
    converted = {key.rsplit(".", 2)[0] for key in report["initialised"]}
    expected = {f"decoder.layers.{i}.self_attn" for i in range(2)} | {
        f"decoder.layers.{i}.encoder_attn" for i in range(2) if i not in softmax_layers}
    assert converted == expected
    for i in softmax_layers:
        prefix = f"decoder.layers.{i}.encoder_attn."
        kept = [key for key in old if key.startswith(prefix)]
        assert len(kept) == 8  # q, k, v, out projections: weights and biases
        assert all(key in report["copied"] and torch.equal(model[key], old[key]) for key in kept)
    assert set(report["copied"]) == {key for key in model if key.rsplit(".", 2)[0]
                                     not in converted and not key.endswith("_float_tensor")}
    assert all(torch.equal(model[key], old[key]) for key in report["copied"])

    # the converted checkpoint loads strictly into the model its config describes
    size = model["decoder.embed_tokens.weight"].shape[0]
    memsizer = build_memsizer_model(new["cfg"]["model"], size, size, seed=1)
    memsizer.load_state_dict(model, strict=True)
    for i, layer in enumerate(memsizer.decoder.layers):
        assert isinstance(layer.encoder_attn, MemsizerAttention) == (i not in softmax_layers)


def test_conversion_into_the_short_convolution_starts_it_as_the_identity(transformer_state):
    new, report = convert_state(transformer_state, {"causal_short_conv": 4})
    conv_keys = [key for key in new["model"] if key.endswith("self_attn.short_conv")]
    assert len(conv_keys) == 2 and set(conv_keys) <= set(report["initialised"])
    for key in conv_keys:
        identity = torch.zeros_like(new["model"][key])
        identity[:, 0] = 1.0
        assert torch.equal(new["model"][key], identity)
    size = new["model"]["decoder.embed_tokens.weight"].shape[0]
    build_memsizer_model(new["cfg"]["model"], size, size, seed=1).load_state_dict(
        new["model"], strict=True)


def test_conversion_into_a_preset_takes_its_slots_and_yields_to_a_flag(transformer_state):
    new, _ = convert_state(transformer_state, arch="memsizer_transformer_causal_slots_32")
    args = new["cfg"]["model"]
    assert (args.arch, args.causal_proj_dim, args.cross_proj_dim) == (
        "memsizer_transformer_causal_slots_32", 32, 32)
    assert new["model"]["decoder.layers.0.self_attn.l_proj.weight"].shape[0] == 32
    assert new["model"]["decoder.layers.0.encoder_attn.l_proj.weight"].shape[0] == 32
    size = new["model"]["decoder.embed_tokens.weight"].shape[0]
    build_memsizer_model(args, size, size, seed=1).load_state_dict(new["model"], strict=True)
    flagged, _ = convert_state(transformer_state, {"causal_proj_dim": 8, "cross_proj_dim": 16},
                               arch="memsizer_transformer_causal_slots_32")
    assert (flagged["cfg"]["model"].causal_proj_dim, flagged["cfg"]["model"].cross_proj_dim) == (
        8, 16)
    with pytest.raises(ConversionError, match="--arch memsizer_lm: a checkpoint of transformer "
                                              "becomes one of memsizer_transformer, "):
        convert_state(transformer_state, arch="memsizer_lm")


@pytest.mark.parametrize("content, message", [
    ("text", "is not a fairseq checkpoint: torch's safe loader refused it"),
    ("truncated", "is not a readable checkpoint (PytorchStreamReader"),
    ("plain dict", "is not a fairseq checkpoint (it has no model parameters"),
])
def test_command_refuses_files_that_are_not_fairseq_checkpoints(tmp_path, capsys, content,
                                                                message):
    from memsizer_fairseq.tools.uptrain import main

    source, target = tmp_path / "in.pt", tmp_path / "out.pt"
    if content == "text":
        source.write_text("garbage\n")
    else:
        torch.save({"weights": torch.zeros(2000)}, str(source))
        if content == "truncated":
            source.write_bytes(source.read_bytes()[:1000])
    assert main([str(source), str(target)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.splitlines()) == 1, err
    assert list(tmp_path.iterdir()) == [source]  # nothing written


# -- attention transfer (uptrain --data) ---------------------------------------------------------

TRANSFORMER = [
    "--arch", "transformer", "--encoder-layers", "1", "--decoder-layers", "2",
    "--encoder-embed-dim", "32", "--decoder-embed-dim", "32", "--encoder-ffn-embed-dim", "64",
    "--decoder-ffn-embed-dim", "64", "--encoder-attention-heads", "2",
    "--decoder-attention-heads", "2", "--share-all-embeddings", "--optimizer", "adam",
    "--lr", "3e-3", "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1",
    "--max-tokens", "600", "--seed", "3", "--cpu", "--num-workers", "0", "--max-update", "40",
    "--no-epoch-checkpoints", "--no-save-optimizer-state", "--log-format", "simple",
]


@pytest.fixture(scope="module")
def trained_transformer(tmp_path_factory):
    """A fairseq transformer trained for a few updates on the toy task: (checkpoint, data)."""
    from fairseq_helpers import run_cli_in_process, write_translation_data

    root = tmp_path_factory.mktemp("transfer")
    data = write_translation_data(str(root))
    save_dir = str(root / "ckpt")
    run_cli_in_process("train", [data, *TRANSFORMER, "--save-dir", save_dir])
    return os.path.join(save_dir, "checkpoint_last.pt"), data


def test_attention_transfer_lowers_every_layers_error_and_leaves_the_rest_untouched(
        trained_transformer, tmp_path):
    from memsizer_fairseq.tools.transfer import TransferSettings
    from memsizer_fairseq.tools.uptrain import (
        convert_checkpoint,
        converted_layer,
        load_checkpoint,
    )

    source, data = trained_transformer
    plain, transferred = str(tmp_path / "plain.pt"), str(tmp_path / "transferred.pt")
    convert_checkpoint(source, plain)
    report = convert_checkpoint(source, transferred, data=data, transfer=TransferSettings(
        updates=60, lr=3e-3, max_tokens=600), log=lambda line: None)
    result = report["transfer"]
    layers = {f"decoder.layers.{i}.{kind}" for i in range(2) for kind in ("self_attn",
                                                                         "encoder_attn")}
    assert set(result.before) == set(result.after) == layers
    for name in layers:
        assert result.after[name] < 0.8 * result.before[name], (name, result.before,
                                                                 result.after)
    before, after = load_checkpoint(plain)["model"], load_checkpoint(transferred)["model"]
    assert before.keys() == after.keys()
    learned = {key for key in after if converted_layer(key, layers) is not None}
    assert learned == set(report["initialised"])
    for key in after:
        if key in learned:
            continue
        assert torch.equal(after[key], before[key]), key  # frozen: bit-identical
    assert any(not torch.equal(after[key], before[key]) for key in learned)


def test_transfer_summary_is_written_as_json(trained_transformer, tmp_path):
    from memsizer_fairseq.tools.uptrain import main

    source, data = trained_transformer
    summary = tmp_path / "out.json"
    assert main([source, str(tmp_path / "out.pt"), "--data", data, "--transfer-updates", "2",
                 "--transfer-max-tokens", "300", "--summary", str(summary)]) == 0
    written = json.loads(summary.read_text())
    assert written["arch"] == "memsizer_transformer" and written["transfer_updates"] == 2
    assert set(written["layers"]) == {f"decoder.layers.{i}.{kind}" for i in range(2)
                                      for kind in ("self_attn", "encoder_attn")}
    assert all(error["before"] > 0 and error["after"] > 0
               for error in written["layers"].values())


@pytest.mark.parametrize("problem, message", [
    ("missing data", "--data {tmp}/nowhere: no such directory"),
    ("not binarized", "--data {tmp}: no binarized training split"),
    ("no data", "--transfer-updates needs --data"),
    ("not a transformer", "the checkpoint's --arch is 'lstm'"),
])
def test_uptrain_with_transfer_refuses_bad_input_in_one_line(trained_transformer, tmp_path,
                                                              capsys, problem, message):
    from memsizer_fairseq.tools.uptrain import load_checkpoint, main

    source, data = trained_transformer
    argv = ["--data", data]
    if problem == "missing data":
        argv = ["--data", str(tmp_path / "nowhere")]
    elif problem == "not binarized":
        argv = ["--data", str(tmp_path)]
    elif problem == "no data":
        argv = ["--transfer-updates", "5"]
    elif problem == "not a transformer":
        state = load_checkpoint(source)
        state["cfg"]["model"].arch = state["cfg"]["model"]._name = "lstm"
        source = str(tmp_path / "lstm.pt")
        torch.save(state, source)
    existing = set(tmp_path.iterdir())
    target = tmp_path / "out.pt"
    assert main([source, str(target), *argv, "--summary", str(tmp_path / "s.json")]) == 2
    err = capsys.readouterr().err
    assert message.format(tmp=tmp_path) in err and len(err.strip().splitlines()) == 1, err
    assert set(tmp_path.iterdir()) == existing  # nothing written
