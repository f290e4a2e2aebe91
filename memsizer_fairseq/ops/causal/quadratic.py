"""The causal read as two GEMMs, ``((A L^T) o causal mask) R``: O(T^2 (k + d)), the fastest form
for short sequences (few, large kernels)."""
from typing import Optional, Tuple

import torch
from torch import Tensor

from ..common import prepare, scaled_by_counts, with_initial_sum


def quadratic_causal_read(a: Tensor, l: Tensor, r: Tensor, keep: Optional[Tensor] = None,
                          init_sum: Optional[Tensor] = None, init_count: Optional[Tensor] = None
                          ) -> Tuple[Tensor, Tensor, Tensor]:
    """Arguments and results of :func:`~.naive.naive_causal_read`."""
    out_dtype = r.dtype
    a, l, r, keep = prepare(a, l, r, keep)
    length = a.size(1)
    scores = torch.bmm(a, l.transpose(1, 2))  # B x T x T, scores[t, j] = a_t . l_j
    causal = torch.ones(length, length, dtype=torch.bool, device=a.device).tril()
    read = torch.bmm(scores.masked_fill(~causal, 0.0), r)
    if init_sum is not None:
        read = read + torch.bmm(a, init_sum.to(a.dtype))
    y, count = scaled_by_counts(read, keep, init_count)
    final_sum = with_initial_sum(torch.bmm(l.transpose(1, 2), r), init_sum)
    return y.to(out_dtype), final_sum, count
