"""Uptraining into either cross-attention mode: what is copied is copied exactly."""
import pytest
import torch

from fairseq_helpers import build_translation_model, write_dicts
from memsizer_fairseq.models.attention import MemsizerAttention
from memsizer_fairseq.tools.uptrain import build_memsizer_model, convert_state

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
