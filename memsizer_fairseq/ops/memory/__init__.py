"""The non-causal Memsizer read: the memory form beside its naive reference."""
from .memory import (
    fused_memory_read,
    memory_read,
    read_memory,
    read_weights,
    source_memory,
    unpadded_slot_values,
)
from .naive import naive_memory_read, naive_read_weights

__all__ = ["fused_memory_read", "memory_read", "naive_memory_read", "naive_read_weights",
           "read_memory", "read_weights", "source_memory", "unpadded_slot_values"]
