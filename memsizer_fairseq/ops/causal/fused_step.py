"""The decoding step of causal Memsizer without autograd, fused into as few kernels as it takes
(at decoding sizes each kernel costs more than its arithmetic):

    [Phi x_t; W_l x_t; W_r x_t] = W x_t + b         one GEMM on the stacked weights
    l_t = LN(W_l x_t), r_t = LN(W_r x_t)            the two LayerNorms
    S_t = S_{t-1} + l_t r_t^T, n_t = n_{t-1} + 1    in place
    y_t = (sum_h softmax_h(Phi_h x_t) / (h sqrt(n_t))) S_t

the head mean and ``n_t^(-1/2)`` folded into one ``(1 x h) (h x k)`` product per sentence before
the read. It equals the projections followed by :func:`~.recurrent.causal_step`.
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

Norm = Tuple[Tensor, Tensor, float]  # a LayerNorm's weight, bias and eps


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
    bsz = x.size(0)
    dim = weight.size(0) - heads * slots - slots
    logits, l, r = F.linear(x, weight, bias).split((heads * slots, slots, dim), dim=2)
    l = F.layer_norm(l, (slots,), *l_norm)
    r = F.layer_norm(r, (dim,), *r_norm)
    acc = state_sum.dtype
    if r.dtype != acc:  # half types: the running sum is float32
        l, r, logits = l.to(acc), r.to(acc), logits.to(acc)
    if keep is None:
        step = 1
    else:
        step = keep.to(acc).view(bsz, 1)
        l = l * step.unsqueeze(2)
        step = step.view(bsz)
    if state_sum.is_inference() and not torch.is_inference_mode_enabled():
        state_sum = torch.baddbmm(state_sum, l.transpose(1, 2), r)
        state_count = state_count + step
    else:
        state_sum.baddbmm_(l.transpose(1, 2), r)
        state_count.add_(step)
    # n_t = 0 only in a row that has read nothing but pads (S_t = 0 there)
    count = state_count if keep is None else state_count.clamp(min=1)
    scale = (count.view(bsz, 1, 1) * float(heads * heads)).rsqrt_().expand(bsz, 1, heads)
    probs = torch.softmax(logits.view(bsz, heads, slots), dim=2)
    y = torch.bmm(torch.bmm(scale, probs), state_sum)
    return (y if y.dtype == x.dtype else y.to(x.dtype)), state_sum, state_count
