"""The fixes of memsizer_fairseq.compat.fixes: batches keep their last, smaller batch;
--replace-unk reads the hard alignment fairseq-generate hands it; fairseq's data buffer thread
is stopped before Python exits."""
import numpy as np
import pytest
from fairseq import utils
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


def test_replace_unk_reads_the_hard_alignment_pairs():
    """fairseq-generate passes (source word, target word) pairs; <unk> takes its aligned source
    word (or the dictionary's translation of it)."""
    pairs = [(0, 0), (2, 1), (1, 2)]
    assert utils.replace_unk("a <unk> c", "x y z", pairs, {}, "<unk>") == "a z c"
    assert utils.replace_unk("a <unk> c", "x y z", pairs, {"z": "zed"}, "<unk>") == "a zed c"
    assert utils.replace_unk("a b c", "x y z", [], {}, "<unk>") == "a b c"
    with pytest.raises(ValueError, match="--print-alignment hard"):
        utils.replace_unk("a <unk>", "x y", [], {}, "<unk>")


def test_importing_the_plugin_first_keeps_the_terminal_quiet():
    """fairseq's import logs a tensorboardX notice and configures the root logger at DEBUG;
    imported through the plugin it does neither."""
    import subprocess
    import sys

    code = ("import logging, memsizer_fairseq; root = logging.getLogger(); "
            "assert not root.handlers and root.level == logging.WARNING, root")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and done.stderr == "" and done.stdout == "", done.stderr


BUSY_DATA_BUFFER_AT_EXIT = """
import time, torch, memsizer_fairseq
from fairseq.data.iterators import BufferedIterator

class Collating:  # each batch costs torch work, as fairseq's collater does
    def __len__(self):
        return 1000

    def __iter__(self):
        a = torch.randn(600, 600)
        for _ in range(1000):
            yield (a @ a @ a @ a).sum()

batches = BufferedIterator(2, Collating())
next(batches)
time.sleep(0.01)
"""


def test_a_busy_data_buffer_does_not_abort_the_exit():
    """Without the fix Python finalises fairseq's prefetching thread inside torch's C++ code and
    the process aborts (``terminate called without an active exception``, exit 134)."""
    import os
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", BUSY_DATA_BUFFER_AT_EXIT], capture_output=True,
                          text=True, env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_data_buffer_still_delivers_every_batch_in_order():
    from fairseq.data.iterators import BufferedIterator

    assert list(BufferedIterator(3, list(range(50)))) == list(range(50))
