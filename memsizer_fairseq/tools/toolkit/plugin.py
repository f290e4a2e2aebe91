"""What the tools use of the plugin, imported in this one place (the plugin never imports the
tools)."""
import contextlib
import os
from typing import Iterator, Sequence, Tuple

from ...compat import ENVIRONMENT_VARIABLE, fixes_installed
from ...compat.checkpoint_safety import atomic_write
from ...config import MemsizerConfig
from ...models.attention import MemsizerAttention
from ...models.presets import PRESETS, uptrain_arch_map
from ...scoring.rouge import RougeF1


def add_memsizer_args(parser):
    """Memsizer's flags (:class:`~memsizer_fairseq.config.MemsizerConfig`) on ``parser``."""
    MemsizerConfig.add_args(parser)


@contextlib.contextmanager
def fixes_on(names: Sequence[str]) -> Iterator[Tuple[str, ...]]:
    """The named fairseq fixes on for the ``with`` block: in this process (fairseq in-process)
    and, through ``MEMSIZER_FAIRSEQ_FIXES``, in every fairseq command started meanwhile; what
    was there before is put back after. Yields the names."""
    value = ",".join(names) or "none"
    saved = os.environ.get(ENVIRONMENT_VARIABLE)
    os.environ[ENVIRONMENT_VARIABLE] = value
    try:
        with fixes_installed(value):
            yield tuple(names)
    finally:
        if saved is None:
            os.environ.pop(ENVIRONMENT_VARIABLE, None)
        else:
            os.environ[ENVIRONMENT_VARIABLE] = saved


__all__ = ["ENVIRONMENT_VARIABLE", "PRESETS", "MemsizerAttention", "MemsizerConfig", "RougeF1",
           "add_memsizer_args", "atomic_write", "fixes_on", "uptrain_arch_map"]
