"""Causal Memsizer read: ``y_t = a_t M_t`` with ``M_t = n_t^(-1/2) sum_{j<=t} l_j r_j^T``.

Plain PyTorch, batch-first tensors. Three equivalent formulations:

* :func:`quadratic_causal_read` -- two GEMMs, ``((A L^T) o causal mask) R``: O(T^2 (k + d)).
* :func:`chunked_causal_read` -- fixed-size blocks; inside a block the same two GEMMs, across
  blocks an exclusive prefix sum of the per-block memories ``L_c^T R_c``: O(T C (k + d) + T k d)
  time and O(T k d / C) extra memory, i.e. linear in T.
* :func:`causal_read` picks one of the two by length.

Every form accepts an initial running sum ``S_0`` (``B x k x d``, unscaled) and count ``n_0``
(``B``) so that the same code serves training (``S_0 = 0``) and incremental decoding, and returns
the final running sum and count (the incremental state).
"""
from typing import Optional, Tuple

import torch
from torch import Tensor

DEFAULT_BLOCK_SIZE = 64
# Up to this length the quadratic form does less work in fewer kernels than the chunked one; the
# crossover depends on the device type (measurements: docs/design_notes.md).
QUADRATIC_MAX_LEN_BY_DEVICE = {"cpu": 256, "cuda": 1024}
DEFAULT_QUADRATIC_MAX_LEN = QUADRATIC_MAX_LEN_BY_DEVICE["cpu"]


def quadratic_max_len_for(device: torch.device) -> int:
    """The longest length at which the quadratic form is the faster one on ``device``."""
    return QUADRATIC_MAX_LEN_BY_DEVICE.get(device.type, DEFAULT_QUADRATIC_MAX_LEN)


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """Running sums are kept in float32 for half types (an fp16 sum of 16k outer products
    overflows)."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _running_counts(keep: Tensor, init_count: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
    """The counts ``n_t`` of non-pad positions up to each t (``B x T``, starting from ``n_0``)
    and the read's scale ``n_t^(-1/2)`` (``B x T``)."""
    counts = keep.cumsum(dim=1)  # B x T
    if init_count is not None:
        counts = counts + init_count.to(counts.dtype).unsqueeze(1)
    # n_t = 0 only at positions with no non-pad token so far: their read is an empty sum (zero).
    return counts, counts.clamp(min=1).rsqrt()


def _with_initial_sum(total: Tensor, init_sum: Optional[Tensor]) -> Tensor:
    """A running sum ``B x k x d`` written by this call, plus the initial one ``S_0`` if any."""
    return total if init_sum is None else total + init_sum.to(total.dtype)


def _finish(read: Tensor, keep: Tensor, init_count: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
    """Scale the unnormalised read by ``n_t^(-1/2)``; returns (scaled read, final count)."""
    counts, scale = _running_counts(keep, init_count)
    return read * scale.unsqueeze(-1), counts[:, -1]


def _prepare(a: Tensor, l: Tensor, r: Tensor, keep: Optional[Tensor]):
    acc = accumulation_dtype(r.dtype)
    a, l, r = a.to(acc), l.to(acc), r.to(acc)
    if keep is None:
        keep = torch.ones(l.shape[:2], dtype=acc, device=l.device)
    else:
        keep = keep.to(acc)
        l = l * keep.unsqueeze(-1)
    return a, l, r, keep


def _final_sum(l: Tensor, r: Tensor, init_sum: Optional[Tensor]) -> Tensor:
    return _with_initial_sum(torch.bmm(l.transpose(1, 2), r), init_sum)  # B x k x d


def quadratic_causal_read(a: Tensor, l: Tensor, r: Tensor, keep: Optional[Tensor] = None,
                          init_sum: Optional[Tensor] = None, init_count: Optional[Tensor] = None
                          ) -> Tuple[Tensor, Tensor, Tensor]:
    """Two-GEMM form. a, l: ``B x T x k``; r: ``B x T x d``; keep: ``B x T`` (1 = real token).

    Returns (y ``B x T x d`` in r's dtype, final unscaled sum ``B x k x d``, final count ``B``).
    """
    out_dtype = r.dtype
    a, l, r, keep = _prepare(a, l, r, keep)
    seq_len = a.size(1)
    scores = torch.bmm(a, l.transpose(1, 2))  # B x T x T, scores[t, j] = a_t . l_j
    causal = torch.ones(seq_len, seq_len, dtype=torch.bool, device=a.device).tril()
    read = torch.bmm(scores.masked_fill(~causal, 0.0), r)
    if init_sum is not None:
        read = read + torch.bmm(a, init_sum.to(a.dtype))
    y, count = _finish(read, keep, init_count)
    return y.to(out_dtype), _final_sum(l, r, init_sum), count


def chunked_causal_read(a: Tensor, l: Tensor, r: Tensor, keep: Optional[Tensor] = None,
                        init_sum: Optional[Tensor] = None, init_count: Optional[Tensor] = None,
                        block_size: int = DEFAULT_BLOCK_SIZE) -> Tuple[Tensor, Tensor, Tensor]:
    """Linear-time blocked form; same arguments and results as :func:`quadratic_causal_read`."""
    if block_size < 1:
        raise ValueError(f"block_size must be positive, got {block_size}")
    out_dtype = r.dtype
    a, l, r, keep = _prepare(a, l, r, keep)
    bsz, seq_len, slots = a.shape
    dim = r.size(-1)
    num_blocks = -(-seq_len // block_size)
    pad = num_blocks * block_size - seq_len
    if pad:
        # Zero rows write nothing to memory and read nothing back; they are cut off below.
        a, l, r = (torch.nn.functional.pad(x, (0, 0, 0, pad)) for x in (a, l, r))
    a_blk = a.reshape(bsz * num_blocks, block_size, slots)
    l_blk = l.reshape(bsz * num_blocks, block_size, slots)
    r_blk = r.reshape(bsz * num_blocks, block_size, dim)

    causal = torch.ones(block_size, block_size, dtype=torch.bool, device=a.device).tril()
    scores = torch.bmm(a_blk, l_blk.transpose(1, 2)).masked_fill_(~causal, 0.0)
    read = torch.bmm(scores, r_blk)  # in-block part

    block_sums = torch.bmm(l_blk.transpose(1, 2), r_blk).view(bsz, num_blocks, slots, dim)
    inclusive = block_sums.cumsum(dim=1)
    prefix = inclusive - block_sums  # memory written before each block (exclusive prefix sum)
    if init_sum is not None:
        prefix = prefix + init_sum.to(prefix.dtype).unsqueeze(1)
    read = read + torch.bmm(a_blk, prefix.view(bsz * num_blocks, slots, dim))
    read = read.view(bsz, num_blocks * block_size, dim)[:, :seq_len]

    # not a view: the state must not pin `inclusive`
    final_sum = _with_initial_sum(inclusive[:, -1].clone(), init_sum)
    y, count = _finish(read, keep, init_count)
    return y.to(out_dtype), final_sum, count


def causal_read(a: Tensor, l: Tensor, r: Tensor, keep: Optional[Tensor] = None,
                init_sum: Optional[Tensor] = None, init_count: Optional[Tensor] = None,
                block_size: int = DEFAULT_BLOCK_SIZE, quadratic_max_len: Optional[int] = None
                ) -> Tuple[Tensor, Tensor, Tensor]:
    """Causal read choosing the formulation by length (quadratic up to ``quadratic_max_len``;
    None: the crossover of ``a``'s device type)."""
    if quadratic_max_len is None:
        quadratic_max_len = quadratic_max_len_for(a.device)
    if a.size(1) <= quadratic_max_len:
        return quadratic_causal_read(a, l, r, keep, init_sum, init_count)
    return chunked_causal_read(a, l, r, keep, init_sum, init_count, block_size)


def causal_step(a: Tensor, l: Tensor, r: Tensor, keep: Optional[Tensor], state_sum: Tensor,
                state_count: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """One decoding step (T = 1): ``S_t = S_{t-1} + l_t r_t^T``, ``y_t = a_t S_t / sqrt(t)``.

    a, l: ``B x 1 x k``; r: ``B x 1 x d``; state_sum ``B x k x d``; state_count ``B``.
    Without autograd the state is updated in place (no per-step allocation of ``B x k x d``).
    """
    out_dtype = r.dtype
    acc = state_sum.dtype
    a, l, r = a.to(acc), l.to(acc), r.to(acc)
    in_place = not torch.is_grad_enabled() or not any(
        t.requires_grad for t in (a, l, r, state_sum, state_count)
    )
    if keep is not None:
        keep = keep.to(acc).view(-1)
        l = l * keep.view(-1, 1, 1)
        step = keep
    else:
        step = 1
    if in_place:
        new_sum = state_sum.baddbmm_(l.transpose(1, 2), r)
        new_count = state_count.add_(step)
    else:
        new_sum = torch.baddbmm(state_sum, l.transpose(1, 2), r)
        new_count = state_count + step
    # scale the k-vector a_t rather than the d-vector read: (a_t / sqrt(t)) S_t
    scaled_a = a * new_count.clamp(min=1).rsqrt().view(-1, 1, 1)
    return torch.bmm(scaled_a, new_sum).to(out_dtype), new_sum, new_count
