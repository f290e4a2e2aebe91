"""fairseq-fixed drops the last batch when it is not a multiple of 8; the plugin keeps it."""
import numpy as np
from fairseq.data import data_utils

import memsizer_fairseq  # noqa: F401  (applies the fix)


def test_every_index_is_batched_exactly_once():
    indices = np.arange(100, dtype=np.int64)
    sizes = np.full(100, 7, dtype=np.int64)
    batches = data_utils.batch_by_size(
        indices, num_tokens_fn=None, num_tokens_vec=sizes, max_sentences=64,
        required_batch_size_multiple=8,
    )
    assert sorted(np.concatenate(batches).tolist()) == list(range(100))
    assert [len(b) for b in batches] == [64, 32, 4]
