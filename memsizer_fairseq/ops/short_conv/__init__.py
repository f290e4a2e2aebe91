"""The causal short convolution: the fast form beside its naive reference."""
from .conv import short_conv
from .naive import naive_short_conv

__all__ = ["naive_short_conv", "short_conv"]
