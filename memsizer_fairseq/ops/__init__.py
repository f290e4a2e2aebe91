"""Memsizer's math by form, in plain batch-first PyTorch (no fairseq import), as
flash-linear-attention keeps its ops: each read has one signature, its naive reference beside its
fast forms (``causal/``, ``memory/``, ``short_conv/``). The layers in :mod:`..layers` compose
them; nothing here holds parameters or state."""
from .causal import CAUSAL_FORMS, causal_read, causal_step, fused_causal_step
from .common import accumulation_dtype
from .memory import memory_read, read_memory, read_weights, source_memory
from .short_conv import short_conv

__all__ = ["CAUSAL_FORMS", "accumulation_dtype", "causal_read", "causal_step",
           "fused_causal_step", "memory_read", "read_memory", "read_weights", "short_conv",
           "source_memory"]
