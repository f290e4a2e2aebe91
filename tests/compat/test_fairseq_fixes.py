"""The fixes of memsizer_fairseq.compat.fixes: batches keep their last, smaller batch;
--replace-unk reads the hard alignment fairseq-generate hands it; diverse beam search reads each
sentence's own row; fairseq's data buffer thread is stopped before Python exits. Each is tested
installed for the test only (compat.fixes_installed), beside fairseq's own behaviour."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from fairseq import search, utils
from fairseq.data import Dictionary, data_utils

from memsizer_fairseq import compat


def batches_of(sizes_of_100):
    indices = np.arange(100, dtype=np.int64)
    sizes = np.full(100, sizes_of_100, dtype=np.int64)
    return data_utils.batch_by_size(indices, num_tokens_fn=None, num_tokens_vec=sizes,
                                    max_sentences=64, required_batch_size_multiple=8)


def test_every_index_is_batched_exactly_once():
    with compat.fixes_installed("keep_last_batch"):
        batches = batches_of(7)
    assert sorted(np.concatenate(batches).tolist()) == list(range(100))
    assert [len(b) for b in batches] == [64, 32, 4]
    if "keep_last_batch" not in compat.installed_fixes():
        assert [len(b) for b in batches_of(7)] == [64, 32]  # fairseq-fixed's own


def test_replace_unk_reads_the_hard_alignment_pairs():
    """fairseq-generate passes (source word, target word) pairs; <unk> takes its aligned source
    word (or the dictionary's translation of it)."""
    pairs = [(0, 0), (2, 1), (1, 2)]
    with compat.fixes_installed("replace_unk_alignment"):
        assert utils.replace_unk("a <unk> c", "x y z", pairs, {}, "<unk>") == "a z c"
        assert utils.replace_unk("a <unk> c", "x y z", pairs, {"z": "zed"}, "<unk>") == "a zed c"
        assert utils.replace_unk("a b c", "x y z", [], {}, "<unk>") == "a b c"
        # without an <unk> the result is fairseq's own, spaces normalised as it does
        assert utils.replace_unk(" a  b ", "x y", [], {}, "<unk>") == "a b"
        with pytest.raises(ValueError, match="--print-alignment hard"):
            utils.replace_unk("a <unk>", "x y", [], {}, "<unk>")


def diverse_beam_steps(ids):
    """Three steps of diverse beam search (2 groups of 2) for 3 sentences with dataset ``ids``;
    each sentence's scores depend only on the sentence (its row), not on its id."""
    symbols = Dictionary()
    for i in range(6):
        symbols.add_symbol(f"w{i}")
    searcher = search.DiverseBeamSearch(symbols, num_groups=2, diversity_strength=2.0)
    generator = torch.Generator().manual_seed(0)
    steps, scores = [], torch.zeros(3, 4, 0)
    for step in range(3):
        lprobs = (2 * torch.randn(3, 1, len(symbols), generator=generator)
                  + 0.5 * torch.randn(3, 4, len(symbols), generator=generator)).log_softmax(-1)
        step_scores, indices, _ = searcher.step(step, lprobs, scores, None, ids)
        steps.append(indices)
        scores = torch.cat([scores, step_scores[:, :4].unsqueeze(-1)], -1)
    return steps


def test_diverse_beam_search_reads_each_sentence_by_its_row():
    """fairseq indexes its rows by the dataset ids: past the batch size it crashes, below it each
    sentence reads another's overlaps."""
    in_order = torch.tensor([0, 1, 2])
    with compat.fixes_installed("diverse_beam_groups"):
        fixed = {ids: diverse_beam_steps(torch.tensor(ids)) for ids in ((0, 1, 2), (2, 0, 1),
                                                                         (90, 7, 31))}
    assert all(torch.equal(a, b) for ids in fixed for a, b in zip(fixed[ids], fixed[(0, 1, 2)]))
    if "diverse_beam_groups" not in compat.installed_fixes():  # fairseq's own
        assert all(torch.equal(a, b) for a, b in zip(diverse_beam_steps(in_order),
                                                     fixed[(0, 1, 2)]))
        with pytest.raises(IndexError):
            diverse_beam_steps(torch.tensor([90, 7, 31]))


def _banned(tokens, step, n=2):
    """The tokens NGramRepeatBlock (its Python form) bans after ``step`` of a one-hypothesis beam
    whose buffer is ``tokens``, padded after ``step`` as SequenceGenerator hands it over."""
    from fairseq.ngram_repeat_block import NGramRepeatBlock

    blocker = NGramRepeatBlock(n, use_extension=False)
    lprobs = blocker(torch.tensor([tokens]), torch.zeros(1, 10), 1, 1, step)
    return (lprobs[0] == float("-inf")).nonzero().flatten().tolist()


def test_no_repeat_ngram_blocks_the_hypothesis_ngrams():
    """``eos 5 6 5`` then padding: after step 3, 6 would repeat the bigram (5, 6). fairseq's
    form compares the buffer's padding and bans nothing; fixed, it bans 6 (and 3-grams alike)."""
    buffer = [2, 5, 6, 5, 1, 1, 1, 1]
    with compat.fixes_installed("no_repeat_ngram"):
        assert _banned(buffer, step=3) == [6]
        assert _banned(buffer[:4], step=3) == [6]  # a buffer that ends at the step: the same
        assert _banned([2, 5, 6, 7, 5, 6, 1, 1], step=5, n=3) == [7]
        assert _banned(buffer, step=2) == []  # (6, 5) has not been seen before
    if "no_repeat_ngram" not in compat.installed_fixes():  # fairseq's own
        assert _banned(buffer, step=3) == []


# Imported through the plugin, fairseq leaves the terminal and the root logger alone; then a
# busy data buffer at exit (each batch costs torch work, as fairseq's collater does).
QUIET_IMPORT_AND_BUSY_EXIT = """
import logging, time, torch, memsizer_fairseq
root = logging.getLogger()
assert not root.handlers and root.level == logging.WARNING, root
from fairseq.data.iterators import BufferedIterator

class Collating:
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


@pytest.fixture(scope="module")
def plugin_process():
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("MEMSIZER_FAIRSEQ_FIXES", None)  # the default fixes
    return subprocess.run([sys.executable, "-c", QUIET_IMPORT_AND_BUSY_EXIT], capture_output=True,
                          text=True, env=env, timeout=120)


def test_importing_the_plugin_first_keeps_the_terminal_quiet(plugin_process):
    """fairseq's import logs a tensorboardX notice and configures the root logger at DEBUG;
    imported through the plugin it does neither."""
    assert "AssertionError" not in plugin_process.stderr, plugin_process.stderr
    assert plugin_process.stderr == "" and plugin_process.stdout == ""


def test_a_busy_data_buffer_does_not_abort_the_exit(plugin_process):
    """Without the fix Python finalises fairseq's prefetching thread inside torch's C++ code and
    the process aborts (``terminate called without an active exception``, exit 134)."""
    assert plugin_process.returncode == 0, plugin_process.stderr[-2000:]


def test_the_data_buffer_still_delivers_every_batch_in_order():
    from fairseq.data.iterators import BufferedIterator

    with compat.fixes_installed("data_buffer_exit"):
        assert list(BufferedIterator(3, list(range(50)))) == list(range(50))
