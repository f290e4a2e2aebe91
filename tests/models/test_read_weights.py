"""Memsizer's implicit attention weights (``need_weights``) against the per-position reference:
full pass, per head, padding, incremental decoding through beam reorders."""
import pytest
import torch

from reference import reference_read_weights
from builders import TOL, make, pad_mask


@pytest.mark.parametrize("role", ["self", "cross"])
def test_weights_match_the_reference_and_rebuild_the_output(role):
    module = make(role, kdim=7 if role == "cross" else None)
    query = torch.randn(4, 3, 12, dtype=torch.float64)
    source = torch.randn(6, 3, 7, dtype=torch.float64) if role == "cross" else query
    mask = pad_mask([6, 4, 2], 6, left=False) if role == "cross" else pad_mask([4, 3, 1], 4, False)
    out, mean = module(query, source, source, key_padding_mask=mask, need_weights=True)
    _, heads = module(query, source, source, key_padding_mask=mask, need_head_weights=True)
    want = reference_read_weights(module, query, source, mask)
    torch.testing.assert_close(heads, want, **TOL)
    torch.testing.assert_close(mean, want.mean(0), **TOL)
    # the weights are the read: y_t = sum_j w_tj r_j
    r = module.r_norm(module.r_proj(source))
    rebuilt = torch.einsum("bts,sbd->tbd", mean, r)
    torch.testing.assert_close(out, rebuilt, **TOL)


def test_no_weights_unless_asked_and_none_for_causal():
    cross = make("cross")
    x = torch.randn(3, 2, 12, dtype=torch.float64)
    assert cross(x, x, x)[1] is None
    causal = make("causal")
    assert causal(x, x, x, need_weights=True, need_head_weights=True)[1] is None


def test_incremental_weights_follow_beam_reorders():
    """Step by step, with the source passed at every step (as fairseq's decoder does) and rows
    reordered and dropped as in beam search, each step's weights equal the full pass's row."""
    module = make("cross", kdim=7)
    beams, sentences, steps = 2, 3, 5
    source = torch.randn(6, sentences, 7, dtype=torch.float64).repeat_interleave(beams, dim=1)
    mask = pad_mask([6, 5, 3], 6, left=True).repeat_interleave(beams, dim=0)
    query = torch.randn(steps, sentences * beams, 12, dtype=torch.float64)
    orders = [torch.tensor([1, 1, 2, 3, 5, 4]), torch.tensor([0, 0, 3, 2, 4, 5]),
              torch.tensor([0, 1, 4, 5]), torch.tensor([1, 0, 2, 2])]
    state, rows = {}, torch.arange(sentences * beams)
    for step in range(steps):
        _, got = module(query[step:step + 1, rows], source[:, rows], source[:, rows],
                        key_padding_mask=mask[rows], incremental_state=state,
                        static_kv=True, need_head_weights=True)
        want = reference_read_weights(module, query[step:step + 1, rows], source[:, rows],
                                      mask[rows])
        torch.testing.assert_close(got, want, **TOL)
        if step < len(orders):
            order = orders[step]
            module.reorder_incremental_state(state, order)
            rows = rows[order]


def test_decoder_alignment_layer_and_heads(tmp_path):
    """fairseq's decoder picks the attention of ``alignment_layer`` and averages its first
    ``alignment_heads`` heads: with Memsizer cross-attention these are the per-head read
    weights of that layer (once the layers are asked for weights, as --print-alignment does)."""
    from fairseq_helpers import build_translation_model, write_dicts

    model, _, _, _ = build_translation_model(write_dicts(str(tmp_path)),
                                             "memsizer_transformer_tiny")
    model.eval()
    src = torch.randint(4, 20, (2, 6))
    prev = torch.randint(4, 20, (2, 3))
    encoder_out = model.encoder(src, src_lengths=torch.tensor([6, 6]))
    assert model.decoder(prev, encoder_out)[1]["attn"][0] is None  # not asked: no weights
    model.make_generation_fast_(need_attn=True)
    layer = model.decoder.layers[0]
    captured = {}
    layer.encoder_attn.register_forward_hook(lambda m, args, out: captured.update(heads=out[1]))
    _, extra = model.decoder(prev, encoder_out, alignment_layer=0, alignment_heads=1)
    heads = captured["heads"]
    assert heads.shape == (layer.encoder_attn.num_heads, 2, 3, 6)
    torch.testing.assert_close(extra["attn"][0], heads[:1].mean(0))
