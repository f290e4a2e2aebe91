"""The forms of the causal Memsizer read, one signature for all.

Every form takes batch-first ``a``, ``l`` (``B x T x k``), ``r`` (``B x T x d``), ``keep``
(``B x T``, 1 at real positions, or None) and an initial state (unscaled sum ``S_0``, ``B x k x
d``, and count ``n_0``, ``B``, or None) and returns ``(y, S_T, n_T)``, with

    y_t = a_t M_t,    M_t = n_t^(-1/2) sum_{j <= t, j real} l_j r_j^T.

=================  =====================================================================
``naive``          the definition, position by position: the reference (tests only)
``quadratic``      two GEMMs with a ``T x T`` causal mask: short sequences
``chunk``          blocks of ``block_size``: linear in T, long sequences
``recurrent``      :func:`causal_step` over the positions: the decoding form
``authors``        the authors' O(T^2 k d) formulation: the benchmark's baseline
``fla_chunk``      flash-linear-attention's chunked Triton kernel (GPU; fla-core)
``fla_recurrent``  flash-linear-attention's fused recurrent Triton kernel (GPU; fla-core)
=================  =====================================================================

``auto`` chooses by device and length (:func:`choose_causal_form`). Beside them,
:func:`fused_causal_step` is the decoding step with the projections fused in (no autograd). A
new backend is one more entry of :data:`CAUSAL_FORMS`: the layer names its form by this key.
Compiled by TorchScript, :func:`causal_read` is :func:`torch_causal_read`, which runs the PyTorch
forms only (TorchScript cannot compile fla's kernels; they compute the same numbers).
"""
import functools
from typing import Callable, Dict, Optional, Tuple

import torch
from torch import Tensor

from .authors import authors_causal_read
from .chunk import DEFAULT_BLOCK_SIZE, chunk_causal_read
from .fla import fla_available, fla_causal_step, fla_chunk_causal_read, fla_recurrent_causal_read
from .fused_step import fused_causal_step, projected_causal_step
from .naive import naive_causal_read
from .quadratic import quadratic_causal_read
from .recurrent import causal_step, empty_state, recurrent_causal_read

CausalRead = Callable[..., Tuple[Tensor, Tensor, Tensor]]

CAUSAL_FORMS: Dict[str, CausalRead] = {
    "naive": naive_causal_read,
    "quadratic": quadratic_causal_read,
    "chunk": chunk_causal_read,
    "recurrent": recurrent_causal_read,
    "authors": authors_causal_read,
    "fla_chunk": fla_chunk_causal_read,
    "fla_recurrent": fla_recurrent_causal_read,
}
FLA_FORMS = ("fla_chunk", "fla_recurrent")
# the forms that take the block length
BLOCKED_FORMS = ("chunk",)
FORM_CHOICES = ("auto",) + tuple(CAUSAL_FORMS)


def quadratic_max_len_for(device: torch.device) -> int:
    """The longest length at which the quadratic form is the faster one on ``device``: it does
    less work in fewer kernels than the chunked one up to a crossover that depends on the device
    type (measurements: docs/design_notes.md; the numbers are written here, where TorchScript can
    read them)."""
    if device.type == "cuda":
        return 1024
    return 256


QUADRATIC_MAX_LEN_BY_DEVICE = {kind: quadratic_max_len_for(torch.device(kind))
                               for kind in ("cpu", "cuda")}
DEFAULT_QUADRATIC_MAX_LEN = QUADRATIC_MAX_LEN_BY_DEVICE["cpu"]
# On CUDA with fla-core installed, the chunked form beyond the quadratic one's crossover is fla's
# kernel (scripts/gpu_check.sh measures the forms side by side to revise these lengths).


def choose_causal_form(device: torch.device, length: int) -> str:
    """``auto``'s choice: quadratic up to the device's crossover length, chunked beyond (on
    CUDA fla-core's chunked kernel when it is installed)."""
    if length <= quadratic_max_len_for(device):
        return "quadratic"
    return "fla_chunk" if device.type == "cuda" and fla_available(device) else "chunk"


def causal_form(name: str, block_size: int = DEFAULT_BLOCK_SIZE) -> CausalRead:
    """The form called ``name`` (a key of :data:`CAUSAL_FORMS`) with its block length bound."""
    if name not in CAUSAL_FORMS:
        raise ValueError(f"unknown causal form {name!r}; one of {', '.join(FORM_CHOICES)}")
    form = CAUSAL_FORMS[name]
    return functools.partial(form, block_size=block_size) if name in BLOCKED_FORMS else form


def causal_read(a: Tensor, l: Tensor, r: Tensor, keep: Optional[Tensor] = None,
                init_sum: Optional[Tensor] = None, init_count: Optional[Tensor] = None,
                form: str = "auto", block_size: int = DEFAULT_BLOCK_SIZE
                ) -> Tuple[Tensor, Tensor, Tensor]:
    """The causal read by the form ``form`` (``auto``: :func:`choose_causal_form`). Compiled by
    TorchScript, it is :func:`torch_causal_read`."""
    if torch.jit.is_scripting():
        return torch_causal_read(a, l, r, keep, init_sum, init_count, form, block_size)
    else:
        if form == "auto":
            form = choose_causal_form(a.device, a.size(1))
        return causal_form(form, block_size)(a, l, r, keep, init_sum, init_count)


def torch_causal_read(a: Tensor, l: Tensor, r: Tensor, keep: Optional[Tensor] = None,
                      init_sum: Optional[Tensor] = None, init_count: Optional[Tensor] = None,
                      form: str = "auto", block_size: int = DEFAULT_BLOCK_SIZE
                      ) -> Tuple[Tensor, Tensor, Tensor]:
    """The causal read by a PyTorch form, what a model compiled by TorchScript runs:
    flash-linear-attention's kernels (which TorchScript cannot compile) by the PyTorch forms that
    compute the same numbers (``fla_chunk`` by ``chunk``, ``fla_recurrent`` by ``recurrent``),
    ``auto`` by length without them, and the per-position reference ``naive`` by ``quadratic``."""
    if form == "auto":
        form = "quadratic" if a.size(1) <= quadratic_max_len_for(a.device) else "chunk"
    if form == "chunk" or form == "fla_chunk":
        return chunk_causal_read(a, l, r, keep, init_sum, init_count, block_size)
    if form == "recurrent" or form == "fla_recurrent":
        return recurrent_causal_read(a, l, r, keep, init_sum, init_count)
    if form == "authors":
        return authors_causal_read(a, l, r, keep, init_sum, init_count)
    return quadratic_causal_read(a, l, r, keep, init_sum, init_count)


__all__ = [
    "CAUSAL_FORMS", "DEFAULT_BLOCK_SIZE", "DEFAULT_QUADRATIC_MAX_LEN", "FLA_FORMS", "FORM_CHOICES",
    "authors_causal_read", "causal_form", "causal_read", "causal_step", "choose_causal_form",
    "chunk_causal_read", "empty_state", "fla_available", "fla_causal_step",
    "fla_chunk_causal_read", "fla_recurrent_causal_read", "fused_causal_step",
    "naive_causal_read", "projected_causal_step", "quadratic_causal_read", "quadratic_max_len_for",
    "recurrent_causal_read", "torch_causal_read",
]
