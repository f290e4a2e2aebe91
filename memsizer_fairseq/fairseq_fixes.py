"""Fixes for fairseq-fixed 0.12.3.1 behaviour that silently loses data.

fairseq's main branch (which fairseq-fixed packages) added to ``data_utils.batch_by_size``::

    if bsz_mult > 1 and len(b[-1]) % bsz_mult != 0:
        b = b[:-1]

so whenever the number of examples is not a multiple of ``--required-batch-size-multiple``
(default 8), the last batch is dropped: ``fairseq-generate`` on a 100-sentence test set with
``--batch-size 64`` translates and scores 96 sentences, and validation skips examples. fairseq
0.12.2 kept that batch. We restore 0.12.2's behaviour: the remainder becomes a last, smaller batch.
"""
import numpy as np
from fairseq.data import data_utils


def _keeping_remainder(batch_by_size):
    def batch_by_size_keeping_remainder(indices, *args, **kwargs):
        batches = batch_by_size(indices, *args, **kwargs)
        indices = np.asarray(indices if isinstance(indices, np.ndarray) else list(indices))
        covered = sum(len(b) for b in batches)
        if covered < len(indices):
            # batch_by_size walks the indices in order, so the dropped ones are the tail.
            batches = list(batches) + [np.asarray(indices[covered:], dtype=np.int64)]
        return batches

    batch_by_size_keeping_remainder.keeps_remainder = True
    return batch_by_size_keeping_remainder


def keep_remainder_batches():
    """Patch ``fairseq.data.data_utils.batch_by_size`` (idempotent)."""
    if not getattr(data_utils.batch_by_size, "keeps_remainder", False):
        data_utils.batch_by_size = _keeping_remainder(data_utils.batch_by_size)
