"""A causal short convolution in front of causal Memsizer self-attention (beyond the paper).

Linear-attention language models gain from mixing each position with its few predecessors
before the projections (RWKV's token shift, H3's and Mamba's short causal convolutions,
flash-linear-attention's ``ShortConvolution``): the memory then writes and reads n-gram-like
features that a single-token key cannot form. Here the input ``x_t`` of the attention becomes

    x'_t = sum_{i=0}^{K-1} w_i * x_{t-i}        (depthwise: w_i is a vector of width d)

with ``x_{t-i} = 0`` before the first real token and at padded positions. It starts as the
identity (``w_0 = 1``, the other taps 0), so a model with it begins as the paper's model. During
incremental decoding it keeps the last ``K - 1`` inputs: a constant state of ``(K - 1) x d`` per
sentence and ``K d`` extra multiply-adds per token, so the per-token cost stays flat.

:class:`ShortConvMemsizerAttention` is causal Memsizer attention whose query, key and value pass
through it; :func:`reference_short_conv` is the obviously-correct loop it is tested against.
"""
from typing import Dict, Optional, Tuple

import torch
from torch import Tensor, nn

from .memsizer_attention import IncrementalState, MemsizerAttention


def reference_short_conv(x: Tensor, weight: Tensor,
                         padding_mask: Optional[Tensor] = None) -> Tensor:
    """The definition, one position at a time. x: ``T x B x d``; weight: ``d x K`` (tap i
    multiplies ``x_{t-i}``); padding_mask: ``B x T`` (True at pads)."""
    if padding_mask is not None:
        x = x.masked_fill(padding_mask.transpose(0, 1).unsqueeze(-1), 0.0)
    out = torch.zeros_like(x)
    for t in range(x.size(0)):
        for i in range(weight.size(1)):
            if t - i >= 0:
                out[t] += weight[:, i] * x[t - i]
    return out


def short_conv(x: Tensor, weight: Tensor,
               history: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """``x'_t = sum_i w_i x_{t-i}`` for ``x``: ``T x B x d``, given the ``K - 1`` inputs before it
    (``history``: ``(K-1) x B x d``, zeros when None). Returns ``x'`` and the last ``K - 1``
    inputs (the history of the next call)."""
    taps = weight.size(1)
    if history is None:
        history = x.new_zeros(taps - 1, *x.shape[1:])
    padded = torch.cat([history.to(x.dtype), x], dim=0)  # (T + K - 1) x B x d
    out = padded[taps - 1:] * weight[:, 0]
    for i in range(1, taps):
        out = out + padded[taps - 1 - i:padded.size(0) - i] * weight[:, i]
    return out, padded[padded.size(0) - (taps - 1):]


class ShortConvMemsizerAttention(MemsizerAttention):
    """Causal Memsizer self-attention behind a causal depthwise convolution of ``taps`` taps
    (``--causal-short-conv``). The parameters are those of :class:`MemsizerAttention` plus
    ``short_conv`` (``d x taps``)."""

    def __init__(self, embed_dim: int, num_heads: int, proj_dim: int, taps: int, **kwargs):
        if not kwargs.get("causal", False):
            raise ValueError("the short convolution is for causal self-attention only")
        if int(taps) < 2:
            raise ValueError(f"--causal-short-conv must be at least 2 taps, got {taps!r}")
        super().__init__(embed_dim, num_heads, proj_dim, **kwargs)
        self.taps = int(taps)
        self.short_conv = nn.Parameter(torch.zeros(embed_dim, self.taps))
        with torch.no_grad():
            self.short_conv[:, 0] = 1.0  # the identity: the paper's attention at the start

    def extra_repr(self) -> str:
        return super().extra_repr() + f", short_conv_taps={self.taps}"

    def forward(self, query: Tensor, key: Optional[Tensor] = None,
                value: Optional[Tensor] = None, key_padding_mask: Optional[Tensor] = None,
                incremental_state: Optional[IncrementalState] = None,
                **kwargs) -> Tuple[Tensor, Optional[Tensor]]:
        x = query
        if key_padding_mask is not None:
            x = x.masked_fill(key_padding_mask.transpose(0, 1).unsqueeze(-1), 0.0)
        history = None if incremental_state is None else self.short_conv_state(incremental_state)
        mixed, recent = short_conv(x, self.short_conv.to(x.dtype), history)
        if incremental_state is not None:
            incremental_state[self._conv_key()] = {"inputs": recent}
        return super().forward(mixed, mixed, mixed, key_padding_mask=key_padding_mask,
                               incremental_state=incremental_state, **kwargs)

    def reorder_incremental_state(self, incremental_state: IncrementalState,
                                  new_order: Tensor) -> IncrementalState:
        super().reorder_incremental_state(incremental_state, new_order)
        saved: Dict[str, Tensor] = incremental_state.get(self._conv_key(), {})
        if saved.get("inputs") is not None:
            incremental_state[self._conv_key()] = {
                "inputs": saved["inputs"].index_select(1, new_order)}
        return incremental_state

    def short_conv_state(self, incremental_state: IncrementalState) -> Optional[Tensor]:
        """The last ``K - 1`` inputs kept for decoding (``(K-1) x B x d``), or None."""
        return incremental_state.get(self._conv_key(), {}).get("inputs")

    def _conv_key(self) -> str:
        return f"{self._incremental_state_id}.short_conv"
