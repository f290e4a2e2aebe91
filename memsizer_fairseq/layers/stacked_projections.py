"""``Phi``, ``W_l`` and ``W_r`` stacked into one weight, so that the three projections of
self-attention are one GEMM when no gradient is needed (decoding, validation)."""
from typing import Optional, Tuple

import torch
from torch import Tensor, nn


def parameters_of(module: nn.Module) -> Tuple[Tensor, Tensor]:
    """``(weight, bias)`` of a Linear or LayerNorm: from its parameter dictionary (a plain
    lookup: the decoding step reads them at every call), or as attributes where they are not
    plain parameters (parametrized modules)."""
    params = module._parameters
    weight, bias = params.get("weight"), params.get("bias")
    if weight is None or bias is None:
        return module.weight, module.bias
    return weight, bias


class StackedProjections:
    """A cache of the stacked ``(h k + k + d) x d_src`` weight and its bias.

    It is rebuilt when a parameter changes: in place (its version counter) or its memory (dtype,
    device, ``.data`` replaced: the cache keeps the tensors it was made from, so that new
    parameters cannot reuse their addresses), and cleared when the module is switched between
    train and eval (optimizers may write through ``.data``, which bumps no version). It is not a
    parameter or buffer: the state_dict keeps the three separate ``nn.Linear``.
    """

    def __init__(self):
        self.cached: Optional[tuple] = None

    def clear(self):
        self.cached = None

    def weights(self, params: Tuple[Tensor, ...]) -> Tuple[Tensor, Tensor]:
        """``params``: the three weights, then the three biases."""
        key = tuple(p._version for p in params) + tuple(p.data_ptr() for p in params)
        cached = self.cached
        if cached is None or cached[0] != key:
            with torch.no_grad():
                # stored transposed (d_src x (h k + k + d), contiguous): the layout in which the
                # GEMM reads the weight fastest when few rows are projected (decoding)
                weight = torch.cat(params[:3]).t().contiguous().t()
                cached = self.cached = (key, weight, torch.cat(params[3:]),
                                        tuple(p.detach() for p in params))
        return cached[1], cached[2]
