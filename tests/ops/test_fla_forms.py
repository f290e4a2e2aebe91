"""fla-core's forms of the causal read against the naive read: forward, gradients (also of the
initial state), padding, a state carried from the chunked kernel into recurrent steps, half
precision; and a language model on them, its full pass against its incremental decoding.

On a CPU the kernels run under Triton's interpreter (tests/conftest.py), in float32 (fp32
``tl.dot`` on recent GPUs uses TF32 unless TRITON_F32_DEFAULT=ieee: looser there)."""
import copy
import os

import pytest
import torch

from builders import make_lm, random_tokens
from memsizer_fairseq.ops.causal import (
    fla_available,
    fla_causal_step,
    fla_chunk_causal_read,
    fla_recurrent_causal_read,
    naive_causal_read,
)

pytestmark = pytest.mark.triton
FORMS = {"fla_chunk": fla_chunk_causal_read, "fla_recurrent": fla_recurrent_causal_read}


def tolerance(device):
    """fp32 against the float64 reference: the interpreter computes in IEEE fp32, and so does a
    GPU with TRITON_F32_DEFAULT=ieee (scripts/gpu_check.sh sets it); otherwise Triton's fp32
    ``tl.dot`` on Ampere and later runs in TF32 (a 10-bit mantissa, errors near 1e-3 that add up
    over the blocks)."""
    if device.type == "cpu" or os.environ.get("TRITON_F32_DEFAULT") == "ieee":
        return dict(rtol=1e-4, atol=1e-4)
    return dict(rtol=2e-2, atol=2e-2)


def inputs(device, bsz=2, length=40, slots=4, dim=24, seed=0, padding="left"):
    gen = torch.Generator().manual_seed(seed)
    a = torch.rand(bsz, length, slots, generator=gen).softmax(-1)
    l = torch.randn(bsz, length, slots, generator=gen)
    r = torch.randn(bsz, length, dim, generator=gen)
    keep = torch.ones(bsz, length)
    if padding == "left":
        keep[1, :7] = 0  # a left-padded LM batch
    elif padding == "right":
        keep[0, -9:] = 0  # a right-padded target
    s0 = torch.randn(bsz, slots, dim, generator=gen)
    n0 = torch.tensor([3.0, 1.0])[:bsz]
    return [t.to(device) for t in (a, l, r, keep, s0, n0)]


def test_the_kernels_are_at_hand(fla_kernels):
    assert fla_available(fla_kernels)


@pytest.mark.parametrize("form", sorted(FORMS))
@pytest.mark.parametrize("padding", ["left", "right"])
@pytest.mark.parametrize("slots", [4, 32])
def test_forms_equal_the_naive_read_with_gradients(fla_kernels, form, padding, slots):
    a, l, r, keep, s0, n0 = inputs(fla_kernels, slots=slots, padding=padding)
    tensors = [a, l, r, s0]
    for t in tensors:
        t.requires_grad_()
    got = FORMS[form](a, l, r, keep, s0, n0)
    want = naive_causal_read(*(t.double() for t in (a, l, r, keep, s0, n0)))
    for g, w in zip(got, want):
        torch.testing.assert_close(g.double(), w, **tolerance(fla_kernels))
    weights = torch.randn_like(got[0])
    grads = torch.autograd.grad((got[0] * weights).sum() + got[1].sum(), tensors)
    expected = torch.autograd.grad((want[0] * weights.double()).sum() + want[1].sum(),
                                   tensors)
    for g, w in zip(grads, expected):
        torch.testing.assert_close(g.double(), w.double(), **tolerance(fla_kernels))


def test_a_chunked_prefix_then_recurrent_steps_carry_the_state(fla_kernels):
    a, l, r, keep, _, _ = inputs(fla_kernels, length=150)
    want = naive_causal_read(a.double(), l.double(), r.double(), keep)
    y, state_sum, state_count = fla_chunk_causal_read(a[:, :100], l[:, :100], r[:, :100],
                                                      keep[:, :100])
    outs = [y]
    for t in range(100, 150):
        y, state_sum, state_count = fla_causal_step(
            a[:, t:t + 1], l[:, t:t + 1], r[:, t:t + 1], keep[:, t:t + 1], state_sum,
            state_count)
        outs.append(y)
    torch.testing.assert_close(torch.cat(outs, 1).double(), want[0], **tolerance(fla_kernels))
    torch.testing.assert_close(state_sum.double(), want[1], **tolerance(fla_kernels))
    assert state_sum.dtype == torch.float32 and state_sum.shape == (2, 4, 24)
    torch.testing.assert_close(state_count.double(), want[2])


def test_half_precision_keeps_a_float32_state(fla_kernels):
    a, l, r, keep, s0, n0 = inputs(fla_kernels, length=30, dim=30)
    y, state_sum, _ = fla_chunk_causal_read(a.half(), l.half(), r.half(), keep, s0, n0)
    want = naive_causal_read(*(t.double() for t in (a, l, r, keep, s0, n0)))
    assert y.dtype == torch.float16 and state_sum.dtype == torch.float32
    assert float((y.double() - want[0]).abs().max()) < 5e-2


@pytest.mark.parametrize("form", sorted(FORMS))
def test_a_language_model_decodes_what_its_full_pass_computes(fla_kernels, form):
    """memsizer_lm with --causal-form on fla: its full pass equals the PyTorch form's, and
    token-by-token decoding (fla's step) with beam reorders equals the full pass."""
    torch.manual_seed(0)
    model, dictionary = make_lm(causal_form=form)
    model = model.to(fla_kernels).eval()
    reference = copy.deepcopy(model)
    for module in reference.modules():
        if getattr(module, "causal", False) is True:
            module.causal_form = "quadratic"
    tokens = random_tokens(dictionary, 4, 12).to(fla_kernels)
    with torch.no_grad():
        full, _ = model.decoder(tokens)
        torch.testing.assert_close(full, reference.decoder(tokens)[0], **tolerance(fla_kernels))
        state, outs = {}, []
        history = tokens
        for t in range(12):
            logits, _ = model.decoder(history[:, : t + 1], incremental_state=state)
            outs.append(logits)
            if t == 5:  # permute within two beams of two sentences, as beam search does
                order = torch.tensor([1, 1, 3, 2], device=fla_kernels)
                model.decoder.reorder_incremental_state_scripting(state, order)
                history, outs = history[order], [o[order] for o in outs]
        want, _ = reference.decoder(history)
    torch.testing.assert_close(torch.cat(outs, 1), want, **tolerance(fla_kernels))
