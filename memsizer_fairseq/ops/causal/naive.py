"""The causal read written from its definition, position by position: the reference every fast
form is tested against.

    y_t = a_t M_t,    M_t = n_t^(-1/2) sum_{j <= t, j real} l_j r_j^T,    n_t = #{j <= t real}

(continuing an initial unscaled sum ``S_0`` and count ``n_0``). O(T^2 k d): tests only.
"""
from typing import Optional, Tuple

import torch
from torch import Tensor

from ..common import prepare


def naive_causal_read(a: Tensor, l: Tensor, r: Tensor, keep: Optional[Tensor] = None,
                      init_sum: Optional[Tensor] = None, init_count: Optional[Tensor] = None
                      ) -> Tuple[Tensor, Tensor, Tensor]:
    """a, l: ``B x T x k``; r: ``B x T x d``; keep: ``B x T`` (1 = real position); init_sum:
    ``B x k x d``; init_count: ``B``. Returns (y ``B x T x d`` in r's dtype, the final unscaled
    sum ``B x k x d``, the final count ``B``)."""
    out_dtype = r.dtype
    a, l, r, keep = prepare(a, l, r, keep)
    bsz, length, slots = a.shape
    rows, sums, counts = [], [], []
    for b in range(bsz):
        start = (torch.zeros(slots, r.size(-1), dtype=r.dtype, device=r.device)
                 if init_sum is None else init_sum[b].to(r.dtype))
        start_count = 0.0 if init_count is None else init_count[b].to(r.dtype)
        outputs = []
        for t in range(length):
            memory = start + sum((torch.outer(l[b, j], r[b, j]) for j in range(t + 1)),
                                 torch.zeros_like(start))
            n_t = start_count + keep[b, : t + 1].sum()
            outputs.append(a[b, t] @ memory / torch.clamp(torch.as_tensor(n_t), min=1).sqrt())
        total = start + sum((torch.outer(l[b, j], r[b, j]) for j in range(length)),
                            torch.zeros_like(start))
        rows.append(torch.stack(outputs) if outputs else r.new_zeros(0, r.size(-1)))
        sums.append(total)
        counts.append(start_count + keep[b].sum())
    return (torch.stack(rows).to(out_dtype), torch.stack(sums),
            torch.stack([torch.as_tensor(c, dtype=r.dtype) for c in counts]))
