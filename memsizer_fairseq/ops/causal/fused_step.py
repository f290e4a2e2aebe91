"""The decoding step of causal Memsizer without autograd, fused into as few kernels as it takes
(at decoding sizes each kernel costs more than its arithmetic):

    [Phi x_t; W_l x_t; W_r x_t] = W x_t + b         one GEMM on the stacked weights
    l_t = LN(W_l x_t), r_t = LN(W_r x_t)            the two LayerNorms
    S_t = S_{t-1} + l_t r_t^T, n_t = n_{t-1} + 1    in place
    y_t = (sum_h softmax_h(Phi_h x_t) / (h sqrt(n_t))) S_t

the head mean and ``n_t^(-1/2)`` folded into one ``(1 x h) (h x k)`` product per sentence before
the read. It equals the projections followed by :func:`~.recurrent.causal_step`.
:func:`projected_causal_step` is the same step after the projections (for callers that project
otherwise, such as a TorchScript-compiled layer, which has no stacked weights).
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

Norm = Tuple[Tensor, Tensor, float]  # a LayerNorm's weight, bias and eps


def slot_softmax(logits: Tensor) -> Tensor:
    """The softmax over the last dimension, the slots. PyTorch's softmax kernel is slow over a few
    slots (over the 4 of causal self-attention it takes 2.5 times as long as these four kernels
    on a CPU); from 16 slots on it is the faster."""
    if logits.size(-1) >= 16:
        return torch.softmax(logits, dim=-1)
    exp = (logits - logits.amax(dim=-1, keepdim=True)).exp_()
    return exp.div_(exp.sum(dim=-1, keepdim=True))


def fused_causal_step(x: Tensor, weight: Tensor, bias: Tensor, heads: int, slots: int,
                      l_norm: Norm, r_norm: Norm, state_sum: Tensor, state_count: Tensor,
                      keep: Optional[Tensor] = None) -> Tuple[Tensor, Tensor, Tensor]:
    """x: ``B x 1 x d_in``; weight ``(h k + k + d) x d_in`` and bias: ``Phi``, ``W_l``, ``W_r``
    stacked; state_sum ``B x k x d`` and state_count ``B`` (accumulation dtype); keep: ``B x 1``
    (False at a pad, which writes nothing and does not count) or None.

    Returns (y ``B x 1 x d`` in x's dtype, the new sum, the new count): the state tensors are
    updated in place and returned, except state made under ``torch.inference_mode`` used outside
    it, which cannot be written in place (new tensors are returned).
    """
    dim = weight.size(0) - heads * slots - slots
    projected = F.linear(x, weight, bias)
    return projected_causal_step(
        projected.narrow(2, 0, heads * slots), projected.narrow(2, heads * slots, slots),
        projected.narrow(2, heads * slots + slots, dim), heads, l_norm, r_norm, state_sum,
        state_count, keep)


def projected_causal_step(logits: Tensor, l: Tensor, r: Tensor, heads: int, l_norm: Norm,
                          r_norm: Norm, state_sum: Tensor, state_count: Tensor,
                          keep: Optional[Tensor] = None) -> Tuple[Tensor, Tensor, Tensor]:
    """:func:`fused_causal_step` after the projections: ``logits = Phi x_t`` (``B x 1 x h k``),
    ``l = W_l x_t``, ``r = W_r x_t`` (before their LayerNorms)."""
    bsz = logits.size(0)
    slots = l.size(2)
    out_dtype = logits.dtype
    l = F.layer_norm(l, (slots,), l_norm[0], l_norm[1], l_norm[2])
    r = F.layer_norm(r, (r.size(2),), r_norm[0], r_norm[1], r_norm[2])
    acc = state_sum.dtype
    if r.dtype != acc:  # half types: the running sum is float32
        l, r, logits = l.to(acc), r.to(acc), logits.to(acc)
    step: Optional[Tensor] = None
    if keep is not None:
        step = keep.to(acc).view(bsz)
        l = l * step.view(bsz, 1, 1)
    in_place = True
    if not torch.jit.is_scripting():  # TorchScript does not know inference mode
        in_place = not state_sum.is_inference() or torch.is_inference_mode_enabled()
    if in_place:
        state_sum.baddbmm_(l.transpose(1, 2), r)
        if step is None:
            state_count.add_(1.0)
        else:
            state_count.add_(step)
    else:  # state made under torch.inference_mode, used outside it
        state_sum = torch.baddbmm(state_sum, l.transpose(1, 2), r)
        state_count = state_count + 1.0 if step is None else state_count + step
    # n_t = 0 only in a row that has read nothing but pads (S_t = 0 there)
    count = state_count if keep is None else state_count.clamp(min=1)
    scale = (count.view(bsz, 1, 1) * float(heads * heads)).rsqrt_().expand(bsz, 1, heads)
    probs = slot_softmax(logits.view(bsz, heads, slots))
    y = torch.bmm(torch.bmm(scale, probs), state_sum)
    return (y if y.dtype == out_dtype else y.to(out_dtype)), state_sum, state_count
