"""Load fairseq checkpoints with torch's safe unpickler (``weights_only=True``).

torch >= 2.6 loads with ``weights_only=True`` by default and stock fairseq then cannot read its
own checkpoints, which hold an ``argparse.Namespace`` and a few other plain types. Instead of
turning the unsafe loader back on (``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``, which runs any code a
checkpoint carries), we allowlist exactly those plain types. A checkpoint that names any other
global (``os.system``, ``builtins.eval``, ...) is refused by torch before anything runs.
"""
import argparse
import collections

import torch


def _safe_types():
    types = [argparse.Namespace, collections.OrderedDict, collections.defaultdict]
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
