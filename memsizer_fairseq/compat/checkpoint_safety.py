"""Load fairseq checkpoints with torch's safe unpickler (``weights_only=True``); write them safely.

torch >= 2.6 loads with ``weights_only=True`` by default and stock fairseq then cannot read its
own checkpoints, which hold an ``argparse.Namespace`` and a few other plain types. Instead of
turning the unsafe loader back on (``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``, which runs any code a
checkpoint carries), we allowlist exactly those plain types. A checkpoint that names any other
global (``os.system``, ``builtins.eval``, ...) is refused by torch before anything runs. Every
fairseq path that reads a checkpoint (``fairseq-generate``, ``-interactive``, ``-validate``,
``-eval-lm``, ``--restore-file``, ``--finetune-from-model``, ``from_pretrained``) goes through
``checkpoint_utils.load_checkpoint_to_cpu`` and so through this loader.

Further guards (:func:`install_safe_loading`, always installed with the plugin, and the fix
``atomic_checkpoint_copies``, see :mod:`memsizer_fairseq.compat`):

* **Plugin marker.** A checkpoint of one of this plugin's models starts with the entry
  ``{"memsizer_fairseq": <marker>}``, a global whose name tells what to do. fairseq run without
  ``--user-dir`` (so without this allowlist) then stops with torch's message
  ``Unsupported global: GLOBAL memsizer_fairseq.Memsizer_checkpoint:load_it_with_--user-dir_...``
  instead of a message about ``argparse.Namespace``; with the plugin, the marker is allowlisted
  and fairseq ignores the extra entry.
* **Atomic copies.** fairseq writes the first checkpoint file of a save atomically (to
  ``NAME.tmp``, then a rename) but *copies* it to the other names (``checkpoint_last.pt``,
  ``checkpoint_best.pt``) in place with ``shutil.copyfile``: a process killed during that copy
  leaves a truncated ``checkpoint_last.pt`` and the run can no longer resume. Local copies now go
  to a temporary file that is renamed over the target, so a name holds either the previous
  complete checkpoint or the new complete one.
* (The data-order fix that makes a resumed run see the same batches lives in
  :mod:`memsizer_fairseq.compat.fixes`.)
* **Distributed resume.** When a data-parallel run resumes, rank 0 loads the checkpoint and
  ``broadcast_object`` sends it to the other ranks, which ``torch.load`` it with the safe loader;
  what rank 0 sends holds fairseq's tensor placeholders and the OmegaConf config it built, so the
  receiving ranks accept those few types too, only within that broadcast.
"""
import argparse
import collections
import collections.abc
import functools
import os
import shutil
import sys
import typing
import warnings

import torch

PLUGIN = __name__.split(".")[0]  # "memsizer_fairseq", the name --user-dir imports us under
MARKER_KEY = PLUGIN
MARKER_NAME = f"Memsizer_checkpoint:load_it_with_--user-dir_{PLUGIN}"


def _make_marker():
    """A class reachable as ``memsizer_fairseq.<MARKER_NAME>``: pickled by reference (no code)."""
    package = sys.modules.get(PLUGIN)
    existing = getattr(package, MARKER_NAME, None) if package is not None else None
    if existing is not None:
        return existing
    marker = type(
        MARKER_NAME,
        (),
        {"__doc__": "Marks a checkpoint of a memsizer-fairseq model: load it with --user-dir."},
    )
    marker.__module__ = PLUGIN
    marker.__qualname__ = MARKER_NAME
    if package is not None:
        setattr(package, MARKER_NAME, marker)
    return marker


CHECKPOINT_MARKER = _make_marker()


def _safe_types():
    types = [argparse.Namespace, collections.OrderedDict, collections.defaultdict]
    types.append(CHECKPOINT_MARKER)  # a bare class: loading it runs nothing
    try:  # numpy scalars appear in fairseq's saved meters and best-metric values
        import numpy as np

        types += [np.dtype, np.ndarray, np.core.multiarray.scalar, np.core.multiarray._reconstruct]
        types += [type(np.dtype(name)) for name in ("float64", "float32", "int64", "int32", "bool")]
    except (ImportError, AttributeError):
        pass
    return types


def allow_fairseq_checkpoint_types():
    """Allowlist the plain types of fairseq checkpoints for ``torch.load(weights_only=True)``."""
    torch.serialization.add_safe_globals(_safe_types())


# -- checkpoint files -------------------------------------------------------------------------


def _field(obj, key):
    if obj is None:
        return None
    if isinstance(obj, collections.abc.Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


def is_plugin_checkpoint(state) -> bool:
    """Whether ``state`` (a checkpoint dict) holds a model registered by this plugin."""
    from fairseq.models import ARCH_MODEL_REGISTRY, MODEL_REGISTRY

    if not isinstance(state, collections.abc.Mapping):
        return False
    sources = [_field(_field(state, "cfg"), "model"), _field(state, "args")]
    for source in sources:
        for key in ("_name", "arch"):
            name = _field(source, key)
            if not isinstance(name, str):
                continue
            model_class = ARCH_MODEL_REGISTRY.get(name) or MODEL_REGISTRY.get(name)
            if model_class is not None and model_class.__module__.split(".")[0] == PLUGIN:
                return True
    return False


def with_plugin_marker(state):
    """``state`` with the plugin marker as its first entry (if it holds a plugin model)."""
    if isinstance(state, dict) and MARKER_KEY not in state and is_plugin_checkpoint(state):
        return {MARKER_KEY: CHECKPOINT_MARKER, **state}
    return state


def _marking(save):
    @functools.wraps(save)
    def torch_persistent_save(obj, filename, *args, **kwargs):
        return save(with_plugin_marker(obj), filename, *args, **kwargs)

    torch_persistent_save.memsizer_marks_checkpoints = True
    return torch_persistent_save


def atomic_write(dst_path: str, write: typing.Callable[[str], object]):
    """``write(path)`` to a temporary name beside ``dst_path``, then rename it over ``dst_path``:
    a process killed mid-write leaves ``dst_path`` as it was (and at most a stray ``*.tmp``
    file, which fairseq never loads)."""
    tmp_path = f"{dst_path}.copy-{os.getpid()}.tmp"
    try:
        write(tmp_path)
        os.replace(tmp_path, dst_path)
    finally:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)


def atomic_copy(src_path: str, dst_path: str) -> bool:
    """Copy a local file so that ``dst_path`` is never seen half-written (it overwrites
    ``dst_path``, as fairseq's checkpoint code asks: ``overwrite=True``)."""
    atomic_write(dst_path, lambda tmp_path: shutil.copyfile(src_path, tmp_path))
    return True


def _atomic(copy):
    from fairseq.file_io import PathManager

    def copy_atomically(src_path: str, dst_path: str, overwrite: bool = False) -> bool:
        remote = PathManager.path_requires_pathmanager(src_path) or (
            PathManager.path_requires_pathmanager(dst_path)
        )
        if remote or (not overwrite and os.path.exists(dst_path)):
            return copy(src_path, dst_path, overwrite=overwrite)  # fairseq's own answer
        return atomic_copy(src_path, dst_path)

    copy_atomically.memsizer_atomic = True
    return copy_atomically


# Types rank 0 re-serialises when it broadcasts a loaded checkpoint (its OmegaConf config and
# fairseq's tensor placeholders); accepted only inside that broadcast.
def _broadcast_types():
    from fairseq.distributed import utils as distributed_utils
    from omegaconf import DictConfig, ListConfig
    from omegaconf.base import ContainerMetadata, Metadata
    from omegaconf.nodes import AnyNode, BooleanNode, FloatNode, IntegerNode, StringNode

    return _safe_types() + [
        distributed_utils._TensorPlaceholder, DictConfig, ListConfig, ContainerMetadata, Metadata,
        AnyNode, BooleanNode, FloatNode, IntegerNode, StringNode, typing.Any,
        int, float, str, bool, dict, list, tuple, type(None),
    ]


def _accepting_config_types(broadcast_object_slow):
    @functools.wraps(broadcast_object_slow)
    def _broadcast_object_slow(*args, **kwargs):
        with torch.serialization.safe_globals(_broadcast_types()):
            return broadcast_object_slow(*args, **kwargs)

    _broadcast_object_slow.memsizer_accepts_config = True
    return _broadcast_object_slow


def install_safe_loading():
    """Safe checkpoint loading, always on (it changes nothing a checkpoint of fairseq's own
    needs): the allowlist of fairseq's plain checkpoint types, the plugin marker in this plugin's
    checkpoints, and the allowlist of a distributed resume's broadcast. Idempotent; patches
    fairseq's ``checkpoint_utils.torch_persistent_save`` and
    ``distributed.utils._broadcast_object_slow``."""
    from fairseq import checkpoint_utils
    from fairseq.distributed import utils as distributed_utils

    allow_fairseq_checkpoint_types()
    if not getattr(checkpoint_utils.torch_persistent_save, "memsizer_marks_checkpoints", False):
        checkpoint_utils.torch_persistent_save = _marking(checkpoint_utils.torch_persistent_save)
    slow = distributed_utils._broadcast_object_slow
    if not getattr(slow, "memsizer_accepts_config", False):
        distributed_utils._broadcast_object_slow = _accepting_config_types(slow)
    if os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "0").lower() in ("1", "true", "yes"):
        warnings.warn(
            "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD is set: torch loads checkpoints with the unsafe "
            "unpickler, which runs any code a checkpoint carries. memsizer-fairseq does not need "
            "it: unset it to load checkpoints with the safe loader and this plugin's allowlist.",
            stacklevel=2,
        )


def atomic_checkpoint_copies():
    """The fix ``atomic_checkpoint_copies``: patch ``file_io.PathManager.copy`` (idempotent)."""
    from fairseq.file_io import PathManager

    if not getattr(PathManager.copy, "memsizer_atomic", False):
        PathManager.copy = staticmethod(_atomic(PathManager.copy))
