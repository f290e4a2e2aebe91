"""The causal read one position at a time on its state, the running sum ``S_t`` and count
``n_t``: ``S_t = S_{t-1} + l_t r_t^T``, ``y_t = a_t S_t / sqrt(n_t)``. O(k d) per position and a
``k x d`` state: incremental decoding."""
from typing import List, Optional, Tuple

import torch
from torch import Tensor

from ..common import accumulation_dtype


def causal_step(a: Tensor, l: Tensor, r: Tensor, keep: Optional[Tensor], state_sum: Tensor,
                state_count: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """One position (T = 1). a, l: ``B x 1 x k``; r: ``B x 1 x d``; keep: ``B x 1`` or None;
    state_sum ``B x k x d`` (its dtype is the accumulation dtype); state_count ``B``. Returns (y
    ``B x 1 x d``, the new sum, the new count). Without autograd the state is updated in place (no
    allocation of ``B x k x d`` per step)."""
    out_dtype = r.dtype
    acc = state_sum.dtype
    a, l, r = a.to(acc), l.to(acc), r.to(acc)
    in_place = not torch.is_grad_enabled() or not (
        a.requires_grad or l.requires_grad or r.requires_grad or state_sum.requires_grad
        or state_count.requires_grad)
    if keep is not None:
        step = keep.to(acc).view(-1)
        l = l * step.view(-1, 1, 1)
        new_count = state_count.add_(step) if in_place else state_count + step
    else:
        new_count = state_count.add_(1.0) if in_place else state_count + 1.0
    if in_place:
        new_sum = state_sum.baddbmm_(l.transpose(1, 2), r)
    else:
        new_sum = torch.baddbmm(state_sum, l.transpose(1, 2), r)
    # scale the k-vector a_t rather than the d-vector read: (a_t / sqrt(n_t)) S_t
    scaled_a = a * new_count.clamp(min=1).rsqrt().view(-1, 1, 1)
    return torch.bmm(scaled_a, new_sum).to(out_dtype), new_sum, new_count


def empty_state(bsz: int, slots: int, dim: int, like: Tensor) -> Tuple[Tensor, Tensor]:
    """The state before the first position: ``S_0 = 0`` (``B x k x d``) and ``n_0 = 0``, in the
    accumulation dtype of ``like``."""
    acc = accumulation_dtype(like.dtype)
    return (like.new_zeros(bsz, slots, dim, dtype=acc), like.new_zeros(bsz, dtype=acc))


def recurrent_causal_read(a: Tensor, l: Tensor, r: Tensor, keep: Optional[Tensor] = None,
                          init_sum: Optional[Tensor] = None, init_count: Optional[Tensor] = None
                          ) -> Tuple[Tensor, Tensor, Tensor]:
    """Arguments and results of :func:`~.naive.naive_causal_read`, by :func:`causal_step` over
    the positions (the initial state is not modified)."""
    bsz, length, slots = a.shape
    state_sum, state_count = empty_state(bsz, slots, r.size(-1), r)
    if init_sum is not None:
        state_sum = state_sum + init_sum.to(state_sum.dtype)
    if init_count is not None:
        state_count = state_count + init_count.to(state_count.dtype)
    outputs: List[Tensor] = []
    for t in range(length):
        step_keep: Optional[Tensor] = None
        if keep is not None:
            step_keep = keep[:, t:t + 1]
        y, state_sum, state_count = causal_step(
            a[:, t:t + 1], l[:, t:t + 1], r[:, t:t + 1], step_keep, state_sum, state_count)
        outputs.append(y)
    if len(outputs) == 0:
        return r.new_zeros(bsz, 0, r.size(-1)), state_sum, state_count
    return torch.cat(outputs, dim=1), state_sum, state_count
