"""The Memsizer layer against the per-position reference (float64, 1e-8)."""
import pytest
import torch
import torch.nn.functional as F

from memsizer_fairseq.models.attention import MemsizerAttention
from builders import TOL, make, pad_mask
from reference import assert_gradients_match, reference_attention


def run_both(module, query, source=None, query_pad=None, source_pad=None):
    if module.self_attention:
        out, _ = module(query, query, query, key_padding_mask=query_pad)
        source, source_pad = None, query_pad
    else:
        out, _ = module(query, source, source, key_padding_mask=source_pad)
    ref = reference_attention(module, query, source, query_pad, source_pad)
    return out, ref


@pytest.mark.parametrize("role", ["causal", "self", "cross"])
@pytest.mark.parametrize("padding", [None, "left", "right"])
def test_forward_and_gradients_match_reference(role, padding):
    dim, kdim = 12, (7 if role == "cross" else None)
    module = make(role, dim=dim, kdim=kdim)
    tgt_len, src_len, bsz = 6, 5, 3
    query = torch.randn(tgt_len, bsz, dim, dtype=torch.float64, requires_grad=True)
    source = torch.randn(src_len, bsz, kdim or dim, dtype=torch.float64, requires_grad=True)
    query_pad = source_pad = None
    if padding:
        query_pad = pad_mask([6, 4, 2], tgt_len, padding == "left")
        source_pad = pad_mask([5, 3, 1], src_len, padding == "left")
    out, ref = run_both(module, query, source, query_pad, source_pad)
    if role != "cross" and query_pad is not None:
        # outputs at pad positions are not used by anyone; compare the real ones.
        keep = (~query_pad).t().unsqueeze(-1).double()
        out, ref = out * keep, ref * keep
    torch.testing.assert_close(out, ref, **TOL)

    inputs = [query] + ([source] if role == "cross" else [])
    assert_gradients_match(out, ref, inputs, module, **TOL)


@pytest.mark.parametrize("role", ["causal", "self", "cross"])
@pytest.mark.parametrize("left", [True, False])
def test_padded_batch_equals_each_sentence_alone(role, left):
    dim = 10
    module = make(role, dim=dim)
    lengths = [7, 3, 5]
    total = max(lengths)
    batch = torch.randn(total, len(lengths), dim, dtype=torch.float64)
    mask = pad_mask(lengths, total, left)
    reader = torch.randn(4, len(lengths), dim, dtype=torch.float64)
    if role == "cross":
        out, _ = module(reader, batch, batch, key_padding_mask=mask)
    else:
        out, _ = module(batch, batch, batch, key_padding_mask=mask)
    for b, n in enumerate(lengths):
        positions = slice(total - n, total) if left else slice(0, n)
        alone = batch[positions, b:b + 1]
        if role == "cross":
            want, _ = module(reader[:, b:b + 1], alone, alone)
            torch.testing.assert_close(out[:, b:b + 1], want, **TOL)
        else:
            want, _ = module(alone, alone, alone)
            torch.testing.assert_close(out[positions, b:b + 1], want, **TOL)


def test_attention_dropout_acts_on_each_head_before_the_average():
    """The authors' rule: dropout on each head's slot softmax, then the mean over heads."""
    module = make("self", dropout=0.4).train()
    x = torch.randn(5, 2, 12, dtype=torch.float64)
    torch.manual_seed(3)
    out, _ = module(x, x, x)
    with torch.no_grad():  # the layer computes batch first: B x T x h x k
        per_head = F.softmax(module.q_proj(x.transpose(0, 1)).view(
            2, 5, module.num_heads, module.proj_dim), -1)
    torch.manual_seed(3)
    dropped = F.dropout(per_head, p=0.4, training=True).mean(2).transpose(0, 1)
    torch.testing.assert_close(out, reference_attention(module, x, slot_probs=dropped), **TOL)
    torch.manual_seed(3)
    averaged_then_dropped = F.dropout(per_head.mean(2), p=0.4, training=True).transpose(0, 1)
    assert not torch.allclose(out, reference_attention(module, x, slot_probs=averaged_then_dropped))


def test_attention_dropout_zeroes_a_slot_only_when_every_head_drops_it():
    """A slot of a(z) is zero with probability p^h (per-head dropout), not p (dropout after the
    average would zero whole slots)."""
    module = make("self", heads=3, dropout=0.5).train()
    torch.manual_seed(0)
    a = module.memsizer.slot_distribution(torch.randn(400, 8, 12, dtype=torch.float64))
    zero = (a == 0).double().mean().item()
    assert abs(zero - 0.5 ** 3) < 0.02, zero
    torch.testing.assert_close(a.mean(), torch.tensor(1 / module.proj_dim, dtype=a.dtype),
                               rtol=0.02, atol=0)


def test_empty_and_fully_padded_rows_are_finite():
    module = make("cross")
    reader = torch.randn(3, 2, 12, dtype=torch.float64)
    source = torch.randn(4, 2, 12, dtype=torch.float64)
    mask = torch.tensor([[True] * 4, [False] * 4])
    out, _ = module(reader, source, source, key_padding_mask=mask)
    assert torch.isfinite(out).all()
    assert torch.count_nonzero(out[:, 0]) == 0
    causal = make("causal")
    out, _ = causal(source, source, source, key_padding_mask=mask)
    assert torch.isfinite(out).all()


def test_initialisation_follows_the_scales():
    torch.manual_seed(0)
    module = MemsizerAttention(512, 8, 32, causal=True, q_init_scale=8, kv_init_scale=2)
    bound_q = 8 ** -0.5 * (6 / (512 + 8 * 32)) ** 0.5
    bound_l = 2 ** -0.5 * (6 / (512 + 32)) ** 0.5
    bound_r = 2 ** -0.5 * (6 / (512 + 512)) ** 0.5
    for weight, bound in [
        (module.q_proj.weight, bound_q),
        (module.l_proj.weight, bound_l),
        (module.r_proj.weight, bound_r),
    ]:
        assert weight.abs().max() <= bound
        assert weight.abs().max() > 0.95 * bound
    for linear in (module.q_proj, module.l_proj, module.r_proj):
        assert torch.count_nonzero(linear.bias) == 0


@pytest.mark.parametrize(
    "kwargs, word",
    [
        (dict(proj_dim=0), "proj_dim"),
        (dict(num_heads=-1), "num_heads"),
        (dict(q_init_scale=0.0), "q_init_scale"),
        (dict(kv_init_scale=-2.0), "kv_init_scale"),
        (dict(dropout=1.0), "dropout"),
    ],
)
def test_bad_arguments_are_refused(kwargs, word):
    args = dict(embed_dim=8, num_heads=2, proj_dim=4, q_init_scale=1.0, kv_init_scale=1.0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=word):
        MemsizerAttention(**args)


def test_checkpoints_name_the_layers_parameters_as_fairseqs_attention_does():
    """The layer's parameters are saved and loaded without its ``memsizer.`` prefix, and a
    parameter a checkpoint lacks is named so."""
    module = make("causal", causal_short_conv=3)
    keys = set(module.state_dict())
    assert keys == {f"{m}.{p}" for m in ("q_proj", "l_proj", "r_proj", "l_norm", "r_norm")
                    for p in ("weight", "bias")} | {"short_conv"}
    assert {name for name, _ in module.named_parameters()} == {"memsizer." + k for k in keys}
    fresh = make("causal", causal_short_conv=3, q_init_scale=3.0)
    fresh.load_state_dict(module.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(fresh.parameters(), module.parameters()))
    partial = module.state_dict()
    del partial["l_proj.weight"]
    with pytest.raises(RuntimeError, match='Missing key\\(s\\) in state_dict: "l_proj.weight"'):
        fresh.load_state_dict(partial)
