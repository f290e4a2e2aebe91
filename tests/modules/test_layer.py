"""The Memsizer layer against the per-position reference (float64, 1e-8)."""
import pytest
import torch
import torch.nn.functional as F

from memsizer_fairseq.modules import MemsizerAttention
from memsizer_fairseq.modules.causal_read import (
    causal_read,
    chunked_causal_read,
    quadratic_causal_read,
)
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
    with torch.no_grad():
        per_head = F.softmax(module.q_proj(x).view(5, 2, module.num_heads, module.num_slots), -1)
    torch.manual_seed(3)
    dropped = F.dropout(per_head, p=0.4, training=True).mean(2)
    torch.testing.assert_close(out, reference_attention(module, x, slot_probs=dropped), **TOL)
    torch.manual_seed(3)
    averaged_then_dropped = F.dropout(per_head.mean(2), p=0.4, training=True)
    assert not torch.allclose(out, reference_attention(module, x, slot_probs=averaged_then_dropped))


def test_attention_dropout_zeroes_a_slot_only_when_every_head_drops_it():
    """A slot of a(z) is zero with probability p^h (per-head dropout), not p (dropout after the
    average would zero whole slots)."""
    module = make("self", heads=3, dropout=0.5).train()
    torch.manual_seed(0)
    a = module.slot_distribution(torch.randn(400, 8, 12, dtype=torch.float64))
    zero = (a == 0).double().mean().item()
    assert abs(zero - 0.5 ** 3) < 0.02, zero
    torch.testing.assert_close(a.mean(), torch.tensor(1 / module.num_slots, dtype=a.dtype),
                               rtol=0.02, atol=0)


@pytest.mark.parametrize("length", [1, 7, 64, 100, 1000])
@pytest.mark.parametrize("form", ["quadratic", "chunked", "auto"])
def test_causal_forms_match_prefix_sum_definition(length, form):
    bsz, slots, dim = 2, 3, 4
    a = torch.rand(bsz, length, slots, dtype=torch.float64, requires_grad=True)
    l = torch.randn(bsz, length, slots, dtype=torch.float64, requires_grad=True)
    r = torch.randn(bsz, length, dim, dtype=torch.float64, requires_grad=True)
    keep = torch.ones(bsz, length)
    keep[1, : length // 3] = 0  # left padding in the second row
    fn = {
        "quadratic": quadratic_causal_read,
        "chunked": lambda *x: chunked_causal_read(*x, block_size=16),
        "auto": causal_read,
    }[form]
    y, final_sum, final_count = fn(a, l, r, keep)
    # Definition: explicit running sum of outer products.
    lk = l * keep.unsqueeze(-1).double()
    outer = torch.einsum("btk,btd->btkd", lk, r).cumsum(dim=1)
    counts = keep.double().cumsum(1).clamp(min=1)
    want = torch.einsum("btk,btkd->btd", a, outer) / counts.sqrt().unsqueeze(-1)
    torch.testing.assert_close(y, want, **TOL)
    torch.testing.assert_close(final_sum, outer[:, -1], **TOL)
    torch.testing.assert_close(final_count, keep.double().sum(1), **TOL)
    weights = torch.randn_like(y)
    got = torch.autograd.grad((y * weights).sum(), (a, l, r))
    ref = torch.autograd.grad((want * weights).sum(), (a, l, r))
    for g, w in zip(got, ref):
        torch.testing.assert_close(g, w, **TOL)


def test_causal_forms_with_initial_state_continue_the_prefix():
    a, l = torch.rand(2, 50, 3, dtype=torch.float64), torch.randn(2, 50, 3, dtype=torch.float64)
    r = torch.randn(2, 50, 4, dtype=torch.float64)
    full, _, _ = quadratic_causal_read(a, l, r)
    _, s0, n0 = quadratic_causal_read(a[:, :20], l[:, :20], r[:, :20])
    for fn in (quadratic_causal_read, lambda *x: chunked_causal_read(*x, block_size=8)):
        rest, _, _ = fn(a[:, 20:], l[:, 20:], r[:, 20:], None, s0, n0)
        torch.testing.assert_close(rest, full[:, 20:], **TOL)


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
        (dict(num_slots=0), "num_slots"),
        (dict(num_heads=-1), "num_heads"),
        (dict(q_init_scale=0.0), "q_init_scale"),
        (dict(kv_init_scale=-2.0), "kv_init_scale"),
        (dict(dropout=1.0), "dropout"),
    ],
)
def test_bad_arguments_are_refused(kwargs, word):
    args = dict(embed_dim=8, num_heads=2, num_slots=4)
    args.update(kwargs)
    with pytest.raises(ValueError, match=word):
        MemsizerAttention(**args)
