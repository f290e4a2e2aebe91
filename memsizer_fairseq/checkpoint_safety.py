"""Load fairseq checkpoints with torch's safe unpickler (``weights_only=True``); write them safely.

torch >= 2.6 loads with ``weights_only=True`` by default and stock fairseq then cannot read its
own checkpoints, which hold an ``argparse.Namespace`` and a few other plain types. Instead of
turning the unsafe loader back on (``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``, which runs any code a
checkpoint carries), we allowlist exactly those plain types. A checkpoint that names any other
global (``os.system``, ``builtins.eval``, ...) is refused by torch before anything runs. Every
fairseq path that reads a checkpoint (``fairseq-generate``, ``-interactive``, ``-validate``,
``-eval-lm``, ``--restore-file``, ``--finetune-from-model``, ``from_pretrained``) goes through
``checkpoint_utils.load_checkpoint_to_cpu`` and so through this loader.

Further guards, installed by :func:`protect_checkpoint_files` (called when the plugin is imported):

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
* **Same batches after a resume.** fairseq-fixed cuts the data into batches once, seeded with
  the epoch the process starts in; a run resumed in epoch k trained on other batches than the
  uninterrupted run (see :func:`_same_batches_in_every_epoch`). Frozen batches are now always
  those of epoch 1.
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


def atomic_copy(src_path: str, dst_path: str) -> bool:
    """Copy a local file so that ``dst_path`` is never seen half-written (temp file + rename).

    A process killed mid-copy leaves ``dst_path`` as it was (and a stray ``*.tmp`` file, which
    fairseq never loads). Like fairseq's local copy, it overwrites ``dst_path``; fairseq's
    checkpoint code always asks for that (``overwrite=True``).
    """
    tmp_path = f"{dst_path}.copy-{os.getpid()}.tmp"
    try:
        shutil.copyfile(src_path, tmp_path)
        os.replace(tmp_path, dst_path)
    finally:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
    return True


def _atomic(copy):
    from fairseq.file_io import PathManager

    def copy_atomically(src_path: str, dst_path: str, overwrite: bool = False) -> bool:
        remote = PathManager.path_requires_pathmanager(src_path) or (
            PathManager.path_requires_pathmanager(dst_path)
        )
        if remote:
            return copy(src_path, dst_path, overwrite=overwrite)
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


def _same_batches_in_every_epoch(get_batch_iterator):
    """Build the frozen batches of a resumed run as the uninterrupted run built them.

    fairseq-fixed (fairseq's main branch) orders the examples with ``numpy_seed(seed + epoch)``
    before cutting them into batches, and, unless ``--rebuild-batches``, freezes those batches
    and reuses the iterator for every later epoch (only their order is reshuffled). A run that
    starts at epoch 1 thus trains on the batches of epoch 1 throughout, but a run resumed in epoch
    k cuts the data into *other* batches (those of epoch k): the resumed run no longer matches the
    uninterrupted one, and a mid-epoch resume skips ``iterations_in_epoch`` batches of the new
    cut, so some examples are seen twice in that epoch and others not at all. (fairseq 0.12.2 used
    ``numpy_seed(seed)`` whatever the epoch.) When the batches are to be frozen, they are now
    always cut as in epoch 1.
    """
    import inspect

    from fairseq.data import data_utils

    signature = inspect.signature(get_batch_iterator)

    @functools.wraps(get_batch_iterator)
    def get_batch_iterator_with_epoch_1_batches(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        given = bound.arguments
        dataset, epoch, seed = given["dataset"], given["epoch"], given["seed"]
        frozen = (
            epoch != 1
            and not getattr(getattr(self, "cfg", None), "rebuild_batches", False)
            and not given.get("disable_iterator_cache", False)
            and not given.get("update_epoch_batch_itr", False)
            and self.can_reuse_epoch_itr(dataset)
            and dataset not in getattr(self, "dataset_to_epoch_iter", {})
        )
        if not frozen:
            return get_batch_iterator(*bound.args, **bound.kwargs)
        ordered_indices = dataset.ordered_indices
        own = vars(dataset).get("ordered_indices")

        def ordered_indices_of_epoch_1():
            with data_utils.numpy_seed(seed + 1):
                return ordered_indices()

        dataset.ordered_indices = ordered_indices_of_epoch_1
        try:
            return get_batch_iterator(*bound.args, **bound.kwargs)
        finally:
            if own is None:
                del dataset.ordered_indices
            else:
                dataset.ordered_indices = own

    get_batch_iterator_with_epoch_1_batches.memsizer_same_batches = True
    return get_batch_iterator_with_epoch_1_batches


def protect_checkpoint_files():
    """Install the plugin marker, the atomic copies, the distributed-resume allowlist and the
    epoch-independent batches of resumed runs.

    Idempotent. Patches fairseq's ``checkpoint_utils.torch_persistent_save``,
    ``file_io.PathManager.copy``, ``distributed.utils._broadcast_object_slow`` and
    ``FairseqTask.get_batch_iterator``.
    """
    from fairseq import checkpoint_utils
    from fairseq.distributed import utils as distributed_utils
    from fairseq.file_io import PathManager
    from fairseq.tasks import FairseqTask

    if not getattr(checkpoint_utils.torch_persistent_save, "memsizer_marks_checkpoints", False):
        checkpoint_utils.torch_persistent_save = _marking(checkpoint_utils.torch_persistent_save)
    if not getattr(PathManager.copy, "memsizer_atomic", False):
        PathManager.copy = staticmethod(_atomic(PathManager.copy))
    if not getattr(FairseqTask.get_batch_iterator, "memsizer_same_batches", False):
        FairseqTask.get_batch_iterator = _same_batches_in_every_epoch(
            FairseqTask.get_batch_iterator
        )
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
