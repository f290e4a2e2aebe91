"""The causal read in blocks of C positions: inside a block the quadratic form's two GEMMs,
across blocks an exclusive prefix sum of the per-block memories ``L_c^T R_c``.
O(T C (k + d) + T k d) time and O(T k d / C) extra memory: linear in T."""
from typing import Optional, Tuple

import torch
from torch import Tensor

from ..common import prepare, scaled_by_counts, with_initial_sum

DEFAULT_BLOCK_SIZE = 64


def chunk_causal_read(a: Tensor, l: Tensor, r: Tensor, keep: Optional[Tensor] = None,
                      init_sum: Optional[Tensor] = None, init_count: Optional[Tensor] = None,
                      block_size: int = DEFAULT_BLOCK_SIZE) -> Tuple[Tensor, Tensor, Tensor]:
    """Arguments and results of :func:`~.naive.naive_causal_read`, and the block length C."""
    if block_size < 1:
        raise ValueError(f"block_size must be positive, got {block_size}")
    out_dtype = r.dtype
    a, l, r, keep = prepare(a, l, r, keep)
    bsz, length, slots = a.shape
    dim = r.size(-1)
    blocks = -(-length // block_size)
    pad = blocks * block_size - length
    if pad:
        # zero rows write nothing to memory and read nothing back; they are cut off below
        a = torch.nn.functional.pad(a, (0, 0, 0, pad))
        l = torch.nn.functional.pad(l, (0, 0, 0, pad))
        r = torch.nn.functional.pad(r, (0, 0, 0, pad))
    a_blk = a.reshape(bsz * blocks, block_size, slots)
    l_blk = l.reshape(bsz * blocks, block_size, slots)
    r_blk = r.reshape(bsz * blocks, block_size, dim)

    causal = torch.ones(block_size, block_size, dtype=torch.bool, device=a.device).tril()
    scores = torch.bmm(a_blk, l_blk.transpose(1, 2)).masked_fill_(~causal, 0.0)
    read = torch.bmm(scores, r_blk)  # in-block part

    block_sums = torch.bmm(l_blk.transpose(1, 2), r_blk).view(bsz, blocks, slots, dim)
    inclusive = block_sums.cumsum(dim=1)
    prefix = inclusive - block_sums  # memory written before each block
    if init_sum is not None:
        prefix = prefix + init_sum.to(prefix.dtype).unsqueeze(1)
    read = read + torch.bmm(a_blk, prefix.view(bsz * blocks, slots, dim))
    read = read.view(bsz, blocks * block_size, dim)[:, :length]

    # not a view: the state must not pin `inclusive`
    final_sum = with_initial_sum(inclusive[:, -1].clone(), init_sum)
    y, count = scaled_by_counts(read, keep, init_count)
    return y.to(out_dtype), final_sum, count
