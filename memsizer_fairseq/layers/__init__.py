"""Memsizer as a plain PyTorch layer (no fairseq import): the parameters of one attention layer
and the reads of :mod:`..ops` composed with them. The fairseq adapter is
:class:`memsizer_fairseq.models.attention.MemsizerAttention`."""
from .memsizer import ROLES, MemsizerLayer

__all__ = ["ROLES", "MemsizerLayer"]
