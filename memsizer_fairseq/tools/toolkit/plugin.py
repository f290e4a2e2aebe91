"""What the tools use of the plugin, imported in this one place (the plugin never imports the
tools)."""
import os
from typing import Sequence, Tuple

from ...compat import ENVIRONMENT_VARIABLE, fix_table
from ...compat.checkpoint_safety import atomic_write
from ...config import MemsizerConfig
from ...models.attention import MemsizerAttention
from ...models.presets import uptrain_arch_map
from ...scoring.rouge import RougeF1


def add_memsizer_args(parser):
    """Memsizer's flags (:class:`~memsizer_fairseq.config.MemsizerConfig`) on ``parser``."""
    MemsizerConfig.add_args(parser)


def turn_on_fixes(names: Sequence[str]) -> Tuple[str, ...]:
    """The named fairseq fixes, on in this process and, through ``MEMSIZER_FAIRSEQ_FIXES``, in
    every fairseq command it starts from now on; returns the names."""
    table = fix_table()
    unknown = [name for name in names if name not in table]
    if unknown:
        raise ValueError(f"unknown fairseq fix {', '.join(unknown)}; known: {', '.join(table)}")
    for name in names:
        table[name].install()  # idempotent
    os.environ[ENVIRONMENT_VARIABLE] = ",".join(names) or "none"
    return tuple(names)


__all__ = ["MemsizerAttention", "MemsizerConfig", "RougeF1", "add_memsizer_args", "atomic_write",
           "turn_on_fixes", "uptrain_arch_map"]
