"""The fused decoding step (projections, LayerNorms, state update and read in a few kernels)
against the naive causal read of the same projections, position by position, with padding and
in half precision (its state kept in float32)."""
import pytest
import torch
import torch.nn.functional as F

from memsizer_fairseq.ops.causal import (
    empty_state,
    fused_causal_step,
    naive_causal_read,
    projected_causal_step,
)


def parameters(d_in=10, heads=3, slots=4, dim=6, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    weight = torch.randn(heads * slots + slots + dim, d_in, generator=gen).to(dtype)
    bias = torch.randn(heads * slots + slots + dim, generator=gen).to(dtype)
    l_norm = (torch.rand(slots, generator=gen).to(dtype) + 0.5,
              torch.randn(slots, generator=gen).to(dtype), 1e-5)
    r_norm = (torch.rand(dim, generator=gen).to(dtype) + 0.5,
              torch.randn(dim, generator=gen).to(dtype), 1e-5)
    return weight, bias, l_norm, r_norm


def naive(x, weight, bias, heads, slots, l_norm, r_norm, keep):
    """The projections one by one, then the causal read from its definition."""
    dim = weight.size(0) - heads * slots - slots
    logits, l, r = F.linear(x, weight, bias).split((heads * slots, slots, dim), dim=-1)
    a = torch.softmax(logits.view(*x.shape[:2], heads, slots), -1).mean(2)
    l = F.layer_norm(l, (slots,), *l_norm)
    r = F.layer_norm(r, (dim,), *r_norm)
    return naive_causal_read(a, l, r, keep)


@pytest.mark.parametrize("padded", [False, True])
def test_steps_equal_the_naive_read(padded):
    heads, slots = 3, 4
    weight, bias, l_norm, r_norm = parameters(heads=heads, slots=slots)
    x = torch.randn(3, 8, 10, dtype=torch.float64)
    keep = torch.ones(3, 8, dtype=torch.bool)
    if padded:
        keep[1, :3] = False  # a left-padded prompt
        keep[2] = False  # nothing but pads: reads zero, counts nothing
    want_y, want_sum, want_count = naive(x, weight, bias, heads, slots, l_norm, r_norm, keep)
    state_sum, state_count = empty_state(3, slots, 6, x)
    outs = []
    for t in range(8):
        y, state_sum, state_count = fused_causal_step(
            x[:, t:t + 1], weight, bias, heads, slots, l_norm, r_norm, state_sum, state_count,
            keep[:, t:t + 1] if padded else None)
        outs.append(y)
    tol = dict(rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(torch.cat(outs, 1), want_y, **tol)
    torch.testing.assert_close(state_sum, want_sum, **tol)
    torch.testing.assert_close(state_count, want_count, **tol)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_half_precision_steps_keep_a_float32_state(dtype):
    heads, slots = 2, 4
    weight, bias, l_norm, r_norm = parameters(heads=heads, slots=slots)
    x = torch.randn(2, 12, 10, dtype=torch.float64)
    want, _, _ = naive(x, weight, bias, heads, slots, l_norm, r_norm, None)
    half = (weight.to(dtype), bias.to(dtype), tuple(t.to(dtype) for t in l_norm[:2]) + (1e-5,),
            tuple(t.to(dtype) for t in r_norm[:2]) + (1e-5,))
    state_sum, state_count = empty_state(2, slots, 6, x.to(dtype))
    assert state_sum.dtype == torch.float32
    outs = []
    for t in range(12):
        y, state_sum, state_count = fused_causal_step(
            x[:, t:t + 1].to(dtype), half[0], half[1], heads, slots, half[2], half[3],
            state_sum, state_count)
        outs.append(y)
    got = torch.cat(outs, 1)
    assert got.dtype == dtype
    error = float((got.double() - want).abs().max() / want.abs().max().clamp(min=1.0))
    assert error <= (3e-2 if dtype == torch.bfloat16 else 4e-3)


def test_the_step_after_separate_projections_is_the_fused_step():
    """projected_causal_step (a compiled layer's step: one GEMM per projection) equals
    fused_causal_step, and both compile with TorchScript."""
    heads, slots = 3, 4
    weight, bias, l_norm, r_norm = parameters(heads=heads, slots=slots)
    x = torch.randn(3, 1, 10, dtype=torch.float64)
    keep = torch.tensor([[True], [False], [True]])
    fused, projected = torch.jit.script(fused_causal_step), torch.jit.script(projected_causal_step)
    results = []
    for step in (fused_causal_step, fused, projected_causal_step, projected):
        state_sum, state_count = empty_state(3, slots, 6, x)
        if step in (fused_causal_step, fused):
            results.append(step(x, weight, bias, heads, slots, l_norm, r_norm, state_sum,
                                state_count, keep))
        else:
            logits, l, r = (F.linear(x, w, b) for w, b in zip(
                weight.split((heads * slots, slots, 6)), bias.split((heads * slots, slots, 6))))
            results.append(step(logits, l, r, heads, l_norm, r_norm, state_sum, state_count,
                                keep))
    for result in results[1:]:
        for got, want in zip(result, results[0]):
            torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
