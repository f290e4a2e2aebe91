"""The non-causal read and its weights from their definitions, position by position: the
references the memory form is tested against (tests only)."""
from typing import Optional

import torch
from torch import Tensor


def _real_positions(keep: Optional[Tensor], b: int, length: int):
    return [j for j in range(length) if keep is None or bool(keep[b, j])]


def naive_memory_read(a: Tensor, l: Tensor, r: Tensor, keep: Optional[Tensor] = None) -> Tensor:
    """``y_t = a_t M``, ``M = n^(-1/2) sum_{j real} l_j r_j^T``; shapes of
    :func:`~.memory.memory_read`."""
    bsz, length, _ = a.shape
    out = torch.zeros(bsz, length, r.size(-1), dtype=torch.float64, device=a.device)
    for b in range(bsz):
        positions = _real_positions(keep, b, l.size(1))
        memory = torch.zeros(l.size(-1), r.size(-1), dtype=torch.float64, device=a.device)
        for j in positions:
            memory = memory + torch.outer(l[b, j].double(), r[b, j].double())
        if positions:
            memory = memory / len(positions) ** 0.5
        for t in range(length):
            out[b, t] = a[b, t].double() @ memory
    return out.to(a.dtype)


def naive_read_weights(head_probs: Tensor, l: Tensor, keep: Optional[Tensor] = None) -> Tensor:
    """``w^h_tj = n^(-1/2) a^h_t . l_j`` (0 at pads); shapes of :func:`~.memory.read_weights`."""
    bsz, length, heads, _ = head_probs.shape
    weights = torch.zeros(heads, bsz, length, l.size(1), dtype=head_probs.dtype)
    for b in range(bsz):
        positions = _real_positions(keep, b, l.size(1))
        for t in range(length):
            for h in range(heads):
                for j in positions:
                    weights[h, b, t, j] = head_probs[b, t, h] @ l[b, j] / len(positions) ** 0.5
    return weights
