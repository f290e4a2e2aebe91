"""The non-causal Memsizer read (encoder self-attention, cross-attention) through the source
memory: ``M = n^(-1/2) sum_{j real} l_j r_j^T`` (``k x d`` per sentence, ``n`` its true length),
written once, then ``y(z) = a(z) M`` for every reading position. O((S + T) k d)."""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..common import accumulation_dtype


def unpadded_slot_values(l: Tensor, keep: Optional[Tensor], dtype: torch.dtype
                         ) -> Tuple[Tensor, Tensor]:
    """``l`` (``B x S x k``) in ``dtype`` with pads zeroed, and each sentence's true length
    ``n`` (``B``); keep: ``B x S``, True / 1 at real positions, or None."""
    l = l.to(dtype)
    if keep is None:
        return l, torch.full((l.size(0),), l.size(1), dtype=dtype, device=l.device)
    keep = keep.to(dtype)
    return l * keep.unsqueeze(-1), keep.sum(dim=1)


def source_memory(l: Tensor, r: Tensor, keep: Optional[Tensor] = None) -> Tensor:
    """``M`` (``B x k x d``, accumulation dtype) of ``l`` (``B x S x k``), ``r`` (``B x S x
    d``). An empty source (n = 0) has an all-zero memory; the clamp only avoids ``0 * inf``."""
    acc = accumulation_dtype(r.dtype)
    l, lengths = unpadded_slot_values(l, keep, acc)
    return torch.bmm(l.transpose(1, 2), r.to(acc)) * lengths.clamp(min=1).rsqrt().view(-1, 1, 1)


def read_memory(a: Tensor, memory: Tensor) -> Tensor:
    """``y = a M``: ``a`` (``B x T x k``) by ``memory`` (``U x k x d``), each memory serving
    ``g = B / U`` consecutive rows (U = B: one memory per row; U < B: the beams of a sentence
    sharing its source's memory during decoding). Returns ``B x T x d`` in a's dtype."""
    bsz, length, slots = a.shape
    shared = memory.size(0)
    if bsz % shared:
        raise ValueError(f"cross-attention state holds {shared} memories for {bsz} rows; "
                         "reorder_incremental_state must see every change of the batch")
    grouped = a.reshape(shared, (bsz // shared) * length, slots)
    return torch.bmm(grouped.to(memory.dtype), memory).view(bsz, length, -1).to(a.dtype)


def fused_memory_read(x: Tensor, weight: Tensor, bias: Optional[Tensor], heads: int,
                      memory: Tensor) -> Tensor:
    """The read of ``memory`` (``U x k x d``, as in :func:`read_memory`) by the slot distribution
    of ``x`` (``B x T x d_in``), ``a = mean_h softmax_h(Phi x)`` (``Phi``: ``weight``, ``bias``),
    without autograd or dropout, in four kernels: the GEMM, the per-head softmax, the head mean
    and the read. Returns ``B x T x d`` in x's dtype."""
    bsz, length, _ = x.shape
    slots = memory.size(1)
    logits = F.linear(x, weight, bias)
    if logits.dtype != memory.dtype:
        logits = logits.to(memory.dtype)
    a = torch.softmax(logits.view(bsz * length, heads, slots), dim=2).mean(dim=1)
    y = read_memory(a.view(bsz, length, slots), memory)
    return y if y.dtype == x.dtype else y.to(x.dtype)


def memory_read(a: Tensor, l: Tensor, r: Tensor, keep: Optional[Tensor] = None) -> Tensor:
    """The non-causal read ``y = a M`` of a source's ``l``, ``r`` (``B x S x ...``) by ``a``
    (``B x T x k``): ``B x T x d``."""
    return read_memory(a, source_memory(l, r, keep))


def read_weights(head_probs: Tensor, l: Tensor, keep: Optional[Tensor] = None) -> Tensor:
    """The implicit weights of the read per head, ``w^h_tj = n^(-1/2) a^h_t . l_j`` (zero at
    pads; signed, not normalised): ``y_t = sum_j mean_h(w^h_tj) r_j``. head_probs: each head's
    slot distribution ``B x T x h x k``; l: ``U x S x k`` (keep ``U x S``), each source read by
    ``B / U`` consecutive rows as in :func:`read_memory`. Returns ``h x B x T x S`` (fairseq's
    layout of per-head attention weights). O(T S) per head: only on request."""
    l, lengths = unpadded_slot_values(l, keep, head_probs.dtype)
    bsz, length, heads, slots = head_probs.shape
    shared = l.size(0)
    grouped = head_probs.reshape(shared, bsz // shared, length, heads, slots)
    weights = torch.einsum("ugthk,usk->hugts", grouped, l)
    weights = weights * lengths.clamp(min=1).rsqrt().view(1, -1, 1, 1, 1)
    return weights.reshape(heads, bsz, length, l.size(1))
