"""What the tools use of the plugin, imported in this one place (the plugin never imports the
tools)."""
from ...compat.checkpoint_safety import atomic_write
from ...config import MemsizerConfig
from ...models.attention import MemsizerAttention
from ...models.presets import uptrain_arch_map


def add_memsizer_args(parser):
    """Memsizer's flags (:class:`~memsizer_fairseq.config.MemsizerConfig`) on ``parser``."""
    MemsizerConfig.add_args(parser)


__all__ = ["MemsizerAttention", "MemsizerConfig", "add_memsizer_args", "atomic_write",
           "uptrain_arch_map"]
