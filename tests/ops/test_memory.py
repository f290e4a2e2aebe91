"""The non-causal read through the source memory, and its read weights, against their naive
references (float64, 1e-8): padding, empty sources, memories shared by beams."""
import pytest
import torch

from memsizer_fairseq.ops.memory import (
    fused_memory_read,
    memory_read,
    naive_memory_read,
    naive_read_weights,
    read_memory,
    read_weights,
    source_memory,
)

TOL = dict(rtol=1e-8, atol=1e-8)


def inputs(bsz=3, length=4, src_len=6, heads=2, slots=5, dim=7, seed=0):
    gen = torch.Generator().manual_seed(seed)
    heads_probs = torch.rand(bsz, length, heads, slots, dtype=torch.float64, generator=gen)
    heads_probs = heads_probs / heads_probs.sum(-1, keepdim=True)
    l = torch.randn(bsz, src_len, slots, dtype=torch.float64, generator=gen)
    r = torch.randn(bsz, src_len, dim, dtype=torch.float64, generator=gen)
    keep = torch.ones(bsz, src_len, dtype=torch.bool)
    keep[1, :2] = False  # left padded
    if bsz > 2:
        keep[2, 3:] = False  # right padded
    return heads_probs, l, r, keep


@pytest.mark.parametrize("padded", [False, True])
def test_memory_read_equals_the_naive_read_with_gradients(padded):
    heads_probs, l, r, keep = inputs()
    keep = keep if padded else None
    a = heads_probs.mean(2).requires_grad_()
    l.requires_grad_(), r.requires_grad_()
    got, want = memory_read(a, l, r, keep), naive_memory_read(a, l, r, keep)
    torch.testing.assert_close(got, want, **TOL)
    weights = torch.randn_like(got)
    for g, w in zip(torch.autograd.grad((got * weights).sum(), (a, l, r)),
                    torch.autograd.grad((want * weights).sum(), (a, l, r))):
        torch.testing.assert_close(g, w, **TOL)


def test_read_weights_equal_the_naive_weights_and_give_the_read():
    heads_probs, l, r, keep = inputs()
    got = read_weights(heads_probs, l, keep)
    torch.testing.assert_close(got, naive_read_weights(heads_probs, l, keep), **TOL)
    assert got.shape == (2, 3, 4, 6) and torch.count_nonzero(got[:, 1, :, :2]) == 0
    # y_t = sum_j mean_h(w^h_tj) r_j
    read = torch.einsum("bts,bsd->btd", got.mean(0), r)
    torch.testing.assert_close(read, memory_read(heads_probs.mean(2), l, r, keep), **TOL)


def test_an_empty_source_reads_zero():
    heads_probs, l, r, keep = inputs()
    keep[0] = False
    out = memory_read(heads_probs.mean(2), l, r, keep)
    assert torch.isfinite(out).all() and torch.count_nonzero(out[0]) == 0


def test_a_memory_serves_its_beams():
    """U memories read by U x g consecutive rows equal one memory per row."""
    heads_probs, l, r, _ = inputs(bsz=2)
    beams = 3
    a = torch.rand(2 * beams, 4, 5, dtype=torch.float64)
    shared = read_memory(a, source_memory(l, r))
    per_row = read_memory(a, source_memory(l.repeat_interleave(beams, 0),
                                           r.repeat_interleave(beams, 0)))
    torch.testing.assert_close(shared, per_row, **TOL)
    with pytest.raises(ValueError, match="2 memories for 5 rows"):
        read_memory(a[:5], source_memory(l, r))


def test_half_precision_memories_are_float32():
    _, l, r, keep = inputs()
    memory = source_memory(l.half(), r.half(), keep)
    assert memory.dtype == torch.float32


@pytest.mark.parametrize("beams", [1, 3])
def test_the_fused_read_equals_the_read_of_the_slot_distribution(beams):
    """fused_memory_read (the decoding step's read, no autograd): the GEMM, the per-head
    softmax and its mean, then read_memory; each memory read by ``beams`` rows."""
    _, l, r, keep = inputs(bsz=2)
    memory = source_memory(l, r, keep)
    x = torch.randn(2 * beams, 4, 9, dtype=torch.float64)
    weight, bias = torch.randn(2 * 5, 9, dtype=torch.float64), torch.randn(10, dtype=torch.float64)
    a = torch.softmax(torch.nn.functional.linear(x, weight, bias).view(2 * beams, 4, 2, 5),
                      dim=-1).mean(2)
    torch.testing.assert_close(fused_memory_read(x, weight, bias, 2, memory),
                               read_memory(a, memory), **TOL)


def test_read_weights_of_a_source_read_by_its_beams():
    heads_probs, l, _, keep = inputs(bsz=2)
    beams = heads_probs.repeat_interleave(3, dim=0)
    torch.testing.assert_close(read_weights(beams, l, keep),
                               read_weights(beams, l.repeat_interleave(3, dim=0),
                                            keep.repeat_interleave(3, dim=0)), **TOL)


def test_the_reads_compile_with_torchscript():
    heads_probs, l, r, keep = inputs()
    a = heads_probs.mean(2)
    x = torch.randn(3, 4, 9, dtype=torch.float64)
    weight, bias = torch.randn(10, 9, dtype=torch.float64), torch.randn(10, dtype=torch.float64)
    memory = source_memory(l, r, keep)
    for function, arguments in ((source_memory, (l, r, keep)), (read_memory, (a, memory)),
                                (read_weights, (heads_probs, l, keep)),
                                (fused_memory_read, (x, weight, bias, 2, memory))):
        torch.testing.assert_close(torch.jit.script(function)(*arguments), function(*arguments),
                                   rtol=0, atol=0)
