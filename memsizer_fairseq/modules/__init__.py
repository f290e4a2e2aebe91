"""Memsizer's math in plain PyTorch (no fairseq import)."""
from .causal_read import causal_read, causal_step, chunked_causal_read, quadratic_causal_read
from .memsizer_attention import MemsizerAttention

__all__ = [
    "MemsizerAttention",
    "causal_read",
    "causal_step",
    "chunked_causal_read",
    "quadratic_causal_read",
]
