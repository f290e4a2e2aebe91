"""Every form of the causal read against its naive reference (the definition, position by
position) and the prefix-sum definition: outputs, final state, gradients (also of the initial
state), padding and a state carried across calls (float64, 1e-8)."""
import pytest
import torch

from memsizer_fairseq.ops.causal import (
    CAUSAL_FORMS,
    FLA_FORMS,
    causal_form,
    causal_read,
    chunk_causal_read,
    naive_causal_read,
    quadratic_causal_read,
)

TOL = dict(rtol=1e-8, atol=1e-8)
# the PyTorch forms; flash-linear-attention's kernels: tests/ops/test_fla_forms.py
TORCH_FORMS = sorted(name for name in CAUSAL_FORMS if name not in FLA_FORMS)
FAST_FORMS = [name for name in TORCH_FORMS if name != "naive"]


def inputs(bsz=2, length=13, slots=3, dim=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    a = torch.rand(bsz, length, slots, dtype=torch.float64, generator=gen)
    l = torch.randn(bsz, length, slots, dtype=torch.float64, generator=gen)
    r = torch.randn(bsz, length, dim, dtype=torch.float64, generator=gen)
    keep = torch.ones(bsz, length, dtype=torch.float64)
    keep[1, : length // 3] = 0  # left padding in the second row
    if length > 3:
        keep[0, -2:] = 0  # right padding in the first
    init_sum = torch.randn(bsz, slots, dim, dtype=torch.float64, generator=gen)
    init_count = torch.tensor([2.0, 5.0], dtype=torch.float64)[:bsz]
    return a, l, r, keep, init_sum, init_count


@pytest.mark.parametrize("form", FAST_FORMS)
@pytest.mark.parametrize("length", [1, 5, 13])
@pytest.mark.parametrize("with_state", [False, True], ids=["from-zero", "initial-state"])
def test_each_form_equals_the_naive_read_with_gradients(form, length, with_state):
    a, l, r, keep, s0, n0 = inputs(length=length)
    tensors = [a, l, r] + ([s0] if with_state else [])
    for t in tensors:
        t.requires_grad_()
    state = (s0, n0) if with_state else (None, None)
    got = causal_form(form, block_size=4)(a, l, r, keep, *state)
    want = naive_causal_read(a, l, r, keep, *state)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, **TOL)
    weights = torch.randn_like(got[0])
    grads = torch.autograd.grad((got[0] * weights).sum() + got[1].sum(), tensors)
    expected = torch.autograd.grad((want[0] * weights).sum() + want[1].sum(), tensors)
    for g, w in zip(grads, expected):
        torch.testing.assert_close(g, w, **TOL)


@pytest.mark.parametrize("form", TORCH_FORMS)
def test_a_state_carried_across_calls_continues_the_sequence(form):
    """A prefix read by one call, the rest by another from its final state: the read of the
    whole sequence."""
    a, l, r, keep, _, _ = inputs(length=11)
    whole = naive_causal_read(a, l, r, keep)
    read = causal_form(form, block_size=3)
    _, s, n = read(a[:, :6], l[:, :6], r[:, :6], keep[:, :6])
    rest, s_end, n_end = read(a[:, 6:], l[:, 6:], r[:, 6:], keep[:, 6:], s, n)
    torch.testing.assert_close(rest, whole[0][:, 6:], **TOL)
    torch.testing.assert_close(s_end, whole[1], **TOL)
    torch.testing.assert_close(n_end, whole[2], **TOL)


def test_the_naive_read_is_the_definition():
    """Its own check: the explicit running sums of outer products, scaled by the counts."""
    a, l, r, keep, _, _ = inputs(length=9)
    y, final_sum, count = naive_causal_read(a, l, r, keep)
    lk = l * keep.unsqueeze(-1)
    outer = torch.einsum("btk,btd->btkd", lk, r).cumsum(dim=1)
    counts = keep.cumsum(1).clamp(min=1)
    torch.testing.assert_close(
        y, torch.einsum("btk,btkd->btd", a, outer) / counts.sqrt().unsqueeze(-1), **TOL)
    torch.testing.assert_close(final_sum, outer[:, -1], **TOL)
    torch.testing.assert_close(count, keep.sum(1), **TOL)


def test_unknown_forms_are_refused_by_name():
    with pytest.raises(ValueError, match="unknown causal form 'flash'.*quadratic"):
        causal_form("flash")


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
        "chunked": lambda *x: chunk_causal_read(*x, block_size=16),
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
    for fn in (quadratic_causal_read, lambda *x: chunk_causal_read(*x, block_size=8)):
        rest, _, _ = fn(a[:, 20:], l[:, 20:], r[:, 20:], None, s0, n0)
        torch.testing.assert_close(rest, full[:, 20:], **TOL)




@pytest.mark.parametrize("form", ["auto", *CAUSAL_FORMS])
def test_compiled_the_read_runs_the_pytorch_form_of_each_form(form):
    """TorchScript compiles causal_read to torch_causal_read: the PyTorch forms, flash-linear-
    attention's kernels (which do not compile) by the forms computing the same numbers."""
    a, l, r, keep, s0, n0 = inputs(length=9)
    compiled = torch.jit.script(causal_read)
    same = {"fla_chunk": "chunk", "fla_recurrent": "recurrent", "naive": "quadratic"}
    want = causal_read(a, l, r, keep, s0, n0, form=same.get(form, form), block_size=4)
    got = compiled(a, l, r, keep, s0, n0, form, 4)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=0, atol=0)
