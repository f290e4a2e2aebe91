"""The authors' causal training formulation, kept only as a baseline for the benchmark.

Their plugin forms the per-position outer products ``l_j r_j^T`` as a ``T x B x k x d`` tensor,
mixes them with a ``T x T`` causal matrix (row t: ones up to t, scaled by ``n_t^(-1/2)``) into the
per-position memories ``M_t`` (again ``T x B x k x d``) and reads ``y_t = a_t M_t``:
O(T^2 k d) time and O(T k d) memory per layer. Same arguments and results as
:func:`~.naive.naive_causal_read`; the model uses it only when asked (``causal_form="authors"``).
"""
from typing import Optional, Tuple

import torch
from torch import Tensor

from ..common import prepare, running_counts, with_initial_sum


def authors_causal_read(a: Tensor, l: Tensor, r: Tensor, keep: Optional[Tensor] = None,
                        init_sum: Optional[Tensor] = None, init_count: Optional[Tensor] = None
                        ) -> Tuple[Tensor, Tensor, Tensor]:
    """a, l: ``B x T x k``; r: ``B x T x d``; keep: ``B x T``. Returns (y, final sum, count)."""
    out_dtype = r.dtype
    a, l, r, keep = prepare(a, l, r, keep)
    acc = r.dtype
    bsz, seq_len, slots = l.shape
    dim = r.size(-1)
    # T x B x k x d per-position outer products l_j r_j^T.
    outer = torch.einsum("btk,btd->tbkd", l, r)
    counts, scale = running_counts(keep, init_count)  # B x T each
    # T x T causal mixing (per sentence, since n_t depends on its padding): B x T x T.
    causal = torch.ones(seq_len, seq_len, dtype=acc, device=l.device).tril()
    mixing = causal.unsqueeze(0) * scale.unsqueeze(-1)
    # M_t = sum_j mixing[t, j] l_j r_j^T, materialised for every t: T x B x k x d.
    memories = torch.einsum("btj,jbx->tbx", mixing, outer.reshape(seq_len, bsz, slots * dim))
    memories = memories.view(seq_len, bsz, slots, dim)
    if init_sum is not None:
        memories = memories + init_sum.to(acc).unsqueeze(0) * scale.t().reshape(
            seq_len, bsz, 1, 1
        )
    y = torch.einsum("btk,tbkd->btd", a, memories)
    final_sum = with_initial_sum(outer.sum(dim=0), init_sum)
    return y.to(out_dtype), final_sum, counts[:, -1]
