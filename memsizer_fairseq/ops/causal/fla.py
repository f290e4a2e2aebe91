"""The causal read on flash-linear-attention's Triton kernels (``fla-core``, an optional
dependency): the GPU backend.

The causal read ``y_t = n_t^(-1/2) sum_{j<=t} (a_t . l_j) r_j`` is fla's linear attention with one
head, queries ``a`` (``K = k`` slots), keys ``l`` (zero at pads), values ``r`` (``V = d``),
``scale = 1`` and ``normalize = False``, followed by the ``n_t^(-1/2)`` scale; its state
``[B, 1, K, V]`` in float32 is Memsizer's running sum ``S_t``. Half-precision inputs stay half
in the kernels, the state float32.

* :func:`fla_chunk_causal_read` -- ``chunk_linear_attn``: training and prefill. Its GEMMs
  (``tl.dot``) need 16 or more rows on a GPU, so the slots are zero-padded to a multiple of 16
  (zero slots read and write nothing);
* :func:`fla_recurrent_causal_read` -- ``fused_recurrent_linear_attn``: any length, one kernel;
* :func:`fla_causal_step` -- the same kernel for one decoding position, with the signature of
  :func:`~.recurrent.causal_step`.

On a CPU the kernels run only under Triton's interpreter (``TRITON_INTERPRET=1`` set before
triton is imported): the tests check them there.
"""
import functools
import importlib
import os
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..common import accumulation_dtype, running_counts

# the pinned version (requirements/cuda.txt): fla-core 0.6.0's chunked kernels index their loops
# with `i_t.to(tl.int64)`, which fails under Triton's interpreter (its loop indices are Python
# ints), so the CPU tests could not check them
FLA_PACKAGE = "fla-core==0.5.2"
_SLOT_MULTIPLE = 16  # tl.dot's smallest tile on a GPU


@functools.lru_cache(maxsize=None)
def _linear_attn():
    """fla-core's linear-attention ops, or the ImportError that stopped them (looked up once:
    ``auto`` asks at every read)."""
    try:
        return importlib.import_module("fla.ops.linear_attn")
    except ImportError as error:
        return error


def fla_available(device: Optional[torch.device] = None) -> bool:
    """Whether fla-core's kernels can run on ``device`` (a CUDA device, or the CPU under
    Triton's interpreter)."""
    if device is not None and device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        return False
    return not isinstance(_linear_attn(), ImportError)


def _ops():
    ops = _linear_attn()
    if isinstance(ops, ImportError):
        raise ImportError(
            f"the causal forms fla_chunk / fla_recurrent need flash-linear-attention's kernels: "
            f"pip install {FLA_PACKAGE} (with triton; on a CPU they run only under "
            f"TRITON_INTERPRET=1)") from ops
    return ops


def _inputs(a: Tensor, l: Tensor, r: Tensor, keep: Optional[Tensor], slots_to: int = 0):
    """q, k, v as ``[B, T, 1, K]`` / ``[B, T, 1, V]`` in r's kernel dtype (float32 for float64
    inputs, which the kernels do not take), pads zeroed in k, slots padded to ``slots_to``."""
    dtype = torch.float32 if r.dtype == torch.float64 else r.dtype
    if keep is not None:
        l = l * keep.to(l.dtype).unsqueeze(-1)
    pad = max(slots_to - a.size(-1), 0)
    if pad:
        a, l = F.pad(a, (0, pad)), F.pad(l, (0, pad))
    return (a.to(dtype).unsqueeze(2).contiguous(), l.to(dtype).unsqueeze(2).contiguous(),
            r.to(dtype).unsqueeze(2).contiguous())


def _state(init_sum: Optional[Tensor], slots_to: int) -> Optional[Tensor]:
    if init_sum is None:
        return None
    state = init_sum.float()
    pad = slots_to - state.size(1)
    if pad > 0:
        state = F.pad(state, (0, 0, 0, pad))
    return state.unsqueeze(1).contiguous()


def _finish(out: Tensor, final: Tensor, a: Tensor, r: Tensor, keep: Optional[Tensor],
            init_count: Optional[Tensor]) -> Tuple[Tensor, Tensor, Tensor]:
    acc = accumulation_dtype(r.dtype)
    if keep is None:
        keep = torch.ones(a.shape[:2], dtype=acc, device=a.device)
    counts, scale = running_counts(keep.to(acc), init_count)
    y = out.squeeze(2).to(acc) * scale.unsqueeze(-1)
    final_sum = final.squeeze(1)[:, : a.size(-1)].to(acc)
    return y.to(r.dtype), final_sum, counts[:, -1]


def fla_chunk_causal_read(a: Tensor, l: Tensor, r: Tensor, keep: Optional[Tensor] = None,
                          init_sum: Optional[Tensor] = None, init_count: Optional[Tensor] = None
                          ) -> Tuple[Tensor, Tensor, Tensor]:
    """Arguments and results of :func:`~.naive.naive_causal_read`, by ``chunk_linear_attn``."""
    slots = -(-a.size(-1) // _SLOT_MULTIPLE) * _SLOT_MULTIPLE
    q, k, v = _inputs(a, l, r, keep, slots)
    out, final = _ops().chunk_linear_attn(q, k, v, scale=1.0, initial_state=_state(init_sum, slots),
                                          output_final_state=True, normalize=False)
    return _finish(out, final, a, r, keep, init_count)


def fla_recurrent_causal_read(a: Tensor, l: Tensor, r: Tensor, keep: Optional[Tensor] = None,
                              init_sum: Optional[Tensor] = None,
                              init_count: Optional[Tensor] = None
                              ) -> Tuple[Tensor, Tensor, Tensor]:
    """Arguments and results of :func:`~.naive.naive_causal_read`, by
    ``fused_recurrent_linear_attn`` (no slot padding: it has no GEMM)."""
    q, k, v = _inputs(a, l, r, keep)
    out, final = _ops().fused_recurrent_linear_attn(
        q, k, v, scale=1.0, initial_state=_state(init_sum, a.size(-1)), output_final_state=True,
        normalize=False)
    return _finish(out, final, a, r, keep, init_count)


def fla_causal_step(a: Tensor, l: Tensor, r: Tensor, keep: Optional[Tensor], state_sum: Tensor,
                    state_count: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """One decoding position, with the arguments and results of
    :func:`~.recurrent.causal_step` (the state is returned anew, not updated in place)."""
    return fla_recurrent_causal_read(a, l, r, keep, state_sum, state_count)
