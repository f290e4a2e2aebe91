"""What every form of the Memsizer read shares: the accumulation dtype, padding, the counts."""
from typing import Optional, Tuple

import torch
from torch import Tensor


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """Memories and running sums are kept in float32 for half types (an fp16 sum of 16k outer
    products overflows)."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def prepare(a: Tensor, l: Tensor, r: Tensor, keep: Optional[Tensor]
            ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """``a``, ``l``, ``r`` in the accumulation dtype, ``l`` zeroed at pads (a pad writes
    nothing), and ``keep`` (``B x T``, 1 at real positions) as numbers."""
    acc = accumulation_dtype(r.dtype)
    a, l, r = a.to(acc), l.to(acc), r.to(acc)
    if keep is None:
        return a, l, r, torch.ones(l.shape[:2], dtype=acc, device=l.device)
    weights = keep.to(acc)
    return a, l * weights.unsqueeze(-1), r, weights


def running_counts(keep: Tensor, init_count: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
    """The counts ``n_t`` of real positions up to each t (``B x T``, starting from ``n_0``) and
    the read's scale ``n_t^(-1/2)``. ``n_t = 0`` only where nothing but pads came so far: the read
    is an empty sum there (zero), the clamp only avoids ``0 * inf``."""
    counts = keep.cumsum(dim=1)
    if init_count is not None:
        counts = counts + init_count.to(counts.dtype).unsqueeze(1)
    return counts, counts.clamp(min=1).rsqrt()


def with_initial_sum(total: Tensor, init_sum: Optional[Tensor]) -> Tensor:
    """A running sum ``B x k x d`` written by this call, plus the initial one ``S_0`` if any."""
    return total if init_sum is None else total + init_sum.to(total.dtype)


def scaled_by_counts(read: Tensor, keep: Tensor, init_count: Optional[Tensor]
                     ) -> Tuple[Tensor, Tensor]:
    """The unnormalised causal read times ``n_t^(-1/2)``, and the final count ``n_T``."""
    counts, scale = running_counts(keep, init_count)
    return read * scale.unsqueeze(-1), counts[:, -1]


def check_positive(name: str, value, kind=int):
    """``value`` is a positive ``kind`` (int or float, finite), else ValueError naming ``name``:
    the one rule behind the layer's arguments and the flags of :mod:`memsizer_fairseq.config`."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < float(
        "inf")
    if ok and kind is int:
        ok = float(value).is_integer()
    if not ok:
        noun = "integer" if kind is int else "number"
        raise ValueError(f"{name} must be a positive {noun}, got {value!r}")
