"""The causal short convolution from its definition, one position at a time (the reference)."""
from typing import Optional

import torch
from torch import Tensor


def naive_short_conv(x: Tensor, weight: Tensor, keep: Optional[Tensor] = None) -> Tensor:
    """``x'_t = sum_{i < K} w_i * x_{t-i}``, with ``x_{t-i} = 0`` before the start and at pads.
    x: ``B x T x d``; weight: ``d x K`` (tap i multiplies ``x_{t-i}``); keep: ``B x T``."""
    if keep is not None:
        x = x * keep.to(x.dtype).unsqueeze(-1)
    out = torch.zeros_like(x)
    for t in range(x.size(1)):
        for i in range(weight.size(1)):
            if t - i >= 0:
                out[:, t] += weight[:, i] * x[:, t - i]
    return out
