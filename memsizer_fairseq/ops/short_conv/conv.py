"""The causal short convolution over the input of causal Memsizer self-attention (beyond the
paper): ``x'_t = sum_{i < K} w_i * x_{t-i}`` (depthwise: each ``w_i`` a vector of width d).

Linear-attention language models gain from mixing each position with its few predecessors before
the projections (RWKV's token shift, H3's and Mamba's short causal convolutions,
flash-linear-attention's ``ShortConvolution``): the memory then writes and reads n-gram-like
features that a single-token key cannot form. Decoding keeps the last ``K - 1`` inputs: a constant
state of ``(K - 1) x d`` per sentence and ``K d`` multiply-adds per token.
"""
from typing import Optional, Tuple

from torch import Tensor, cat


def short_conv(x: Tensor, weight: Tensor, history: Optional[Tensor] = None
               ) -> Tuple[Tensor, Tensor]:
    """x: ``B x T x d`` (pads already zero), weight ``d x K``, history: the ``K - 1`` inputs
    before ``x`` (``B x (K-1) x d``; zeros when None). Returns ``x'`` and the last ``K - 1``
    inputs (the next call's history)."""
    taps = weight.size(1)
    if history is None:
        history = x.new_zeros(x.size(0), taps - 1, x.size(2))
    padded = cat([history.to(x.dtype), x], dim=1)  # B x (T + K - 1) x d
    length = padded.size(1)
    out = padded[:, taps - 1:] * weight[:, 0]
    for i in range(1, taps):
        out = out + padded[:, taps - 1 - i:length - i] * weight[:, i]
    return out, padded[:, length - (taps - 1):]
