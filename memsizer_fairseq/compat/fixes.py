"""Fixes for fairseq-fixed 0.12.3.1 behaviour that silently loses or reorders data, or crashes.
Each is installed by name from :mod:`memsizer_fairseq.compat` (``MEMSIZER_FAIRSEQ_FIXES``), which
says which are installed by default (those that only turn a crash into a result).

1. The last batch is dropped (:func:`keep_remainder_batches`).
2. A resumed run is cut into other batches than the uninterrupted run
   (:func:`same_batches_after_resume`).
3. ``fairseq-generate --replace-unk`` crashes for every model (:func:`replace_unk_from_pairs`).
4. ``--diverse-beam-groups`` crashes for every model once sentence ids exceed the batch size,
   and reads another sentence's overlaps before that (:func:`diverse_beam_search_by_position`).
5. A finished ``fairseq-train`` aborts at exit (``terminate called without an active
   exception``, exit 134) while its data buffer thread is collating batches
   (:func:`stop_data_buffers_at_exit`).
6. A resumed run forgets ``--patience``'s count and best score, so it stops later than the
   uninterrupted run, or never (:func:`patience_survives_resume`).
7. ``--no-repeat-ngram-size`` blocks nothing without fairseq's CUDA extension, CPU included
   (:func:`no_repeat_ngram_up_to_step`).

Batch dropping:

fairseq's main branch (which fairseq-fixed packages) added to ``data_utils.batch_by_size``::

    if bsz_mult > 1 and len(b[-1]) % bsz_mult != 0:
        b = b[:-1]

so whenever the number of examples is not a multiple of ``--required-batch-size-multiple``
(default 8), the last batch is dropped: ``fairseq-generate`` on a 100-sentence test set with
``--batch-size 64`` translates and scores 96 sentences, and validation skips examples. fairseq
0.12.2 kept that batch. We restore 0.12.2's behaviour: the remainder becomes a last, smaller batch.
"""
import atexit
import functools
import inspect
import math
import queue
import sys
import threading
import weakref
from typing import List, Optional

import numpy as np
import torch
from fairseq import search, trainer, utils
from fairseq.data import data_utils, iterators
from fairseq.tasks import FairseqTask
from torch import Tensor


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


def same_batches_after_resume():
    """Patch ``FairseqTask.get_batch_iterator`` (idempotent)."""
    if not getattr(FairseqTask.get_batch_iterator, "memsizer_same_batches", False):
        FairseqTask.get_batch_iterator = _same_batches_in_every_epoch(
            FairseqTask.get_batch_iterator
        )


def _replacing_from_pairs(replace_unk):
    def replace_unk_with_word_pairs(hypo_str, src_str, alignment, align_dict, unk):
        if unk not in hypo_str.split():  # nothing to replace: fairseq's own result
            return replace_unk(hypo_str, src_str, alignment, align_dict, unk)
        if alignment is None or len(alignment) == 0:
            raise ValueError("--replace-unk takes each <unk>'s source word from the hard "
                             "alignment: add --print-alignment hard")
        if isinstance(alignment[0], (tuple, list)):
            source_of = {int(target): int(source) for source, target in alignment}
            eos = len(src_str.split())  # replace_unk's own index of <eos>
            alignment = [source_of.get(i, eos) for i in range(len(hypo_str.split()))]
        return replace_unk(hypo_str, src_str, alignment, align_dict, unk)

    replace_unk_with_word_pairs.takes_word_pairs = True
    return replace_unk_with_word_pairs


def replace_unk_from_pairs():
    """Patch ``fairseq.utils.replace_unk`` (idempotent).

    ``fairseq-generate --print-alignment hard`` hands it ``(source word, target word)`` pairs
    (``utils.extract_hard_alignment``) while it indexes the alignment by target position, so
    the first ``<unk>`` ends in ``TypeError: list indices must be integers or slices, not
    tuple``; without ``--print-alignment`` the alignment is empty (``IndexError``). The pairs
    are now read as such, and a missing alignment is refused naming the flag to add.
    """
    if not getattr(utils.replace_unk, "takes_word_pairs", False):
        utils.replace_unk = _replacing_from_pairs(utils.replace_unk)


def _init_with_first_step_ids(init):
    @functools.wraps(init)
    def init_with_first_step_ids(self, *args, **kwargs):
        init(self, *args, **kwargs)
        # the sentence id of each row of group_overlap (the first step's batch), set at step 0
        self.first_step_ids = torch.empty(0, dtype=torch.long)

    init_with_first_step_ids.by_position = True
    return init_with_first_step_ids


@torch.jit.export
def _step_by_batch_position(
    self,
    step: int,
    lprobs: Tensor,
    scores: Tensor,
    prev_output_tokens: Optional[Tensor] = None,
    original_batch_idxs: Optional[Tensor] = None,
):
    """fairseq's ``DiverseBeamSearch.step`` with ``original_batch_idxs`` (the sentence ids)
    mapped to the rows of ``group_overlap`` (the order of the first step's batch). Written out
    here rather than wrapped, so that TorchScript compiles it as fairseq's method."""
    if original_batch_idxs is not None:
        if step == 0:
            self.first_step_ids = original_batch_idxs.clone()
        # the row of each sentence in the first step's batch
        original_batch_idxs = (original_batch_idxs.unsqueeze(1)
                               == self.first_step_ids.unsqueeze(0)).int().argmax(dim=1)
    bsz, beam_size, vocab_size = lprobs.size()
    if beam_size % self.num_groups != 0:
        raise ValueError(
            "DiverseBeamSearch requires --beam to be divisible by the number of groups"
        )

    # initialize diversity penalty
    diversity_buf = torch.zeros(lprobs[:, 0, :].size()).to(lprobs)

    scores_G, beams_G = [], []

    # pre-allocating tensor for indices for all groups
    indices_G_stacked = torch.empty(
        bsz,
        int(beam_size / self.num_groups) * self.candidate_multiple,
        self.num_groups,
        dtype=torch.long,
        device=lprobs.device,
    )

    for g in range(self.num_groups):
        lprobs_g = lprobs[:, g :: self.num_groups, :]
        scores_g = scores[:, g :: self.num_groups, :] if step > 0 else None

        diversity_buf.zero_()
        # apply diversity penalty
        if g > 0:
            indices_ = indices_G_stacked[:, :, :g]
            if step > 0:
                penalty_val = 1 + self.group_overlap[original_batch_idxs, g, :g]
                penalty_val = penalty_val.unsqueeze(1)
            else:
                penalty_val = torch.ones(bsz, 1, 1)
            diversity_buf.scatter_add_(
                1,
                indices_.reshape(bsz, -1),
                penalty_val.expand(indices_.size()).reshape(bsz, -1).to(diversity_buf),
            )

            lprobs_g = torch.add(
                lprobs_g,
                other=diversity_buf.unsqueeze(1),
                alpha=self.diversity_strength,
            )
        else:
            lprobs_g = lprobs_g.contiguous()

        scores_buf, indices_buf, beams_buf = self.beam.step(
            step, lprobs_g, scores_g, candidate_multiple=self.candidate_multiple
        )
        beams_buf.mul_(self.num_groups).add_(g)

        scores_G.append(scores_buf.clone())
        beams_G.append(beams_buf.clone())

        indices_G_stacked[:, :, g] = indices_buf

    # interleave results from different groups
    scores_buf = torch.stack(scores_G, dim=2).view(bsz, -1)
    indices_buf = indices_G_stacked.view(bsz, -1)
    beams_buf = torch.stack(beams_G, dim=2).view(bsz, -1)
    # find num of overlapped tokens for each group pair
    # then discount it for next timestamp
    overlap = self.diversity_discount * torch.sum(
        indices_G_stacked.unsqueeze(2).eq(indices_G_stacked.unsqueeze(3)), dim=1
    )
    if step == 0:
        self.group_overlap = overlap
    else:
        self.group_overlap[original_batch_idxs] = (
            self.group_overlap[original_batch_idxs] * self.diversity_discount + overlap
        )

    return scores_buf, indices_buf, beams_buf


_step_by_batch_position.by_position = True


def diverse_beam_search_by_position():
    """Patch ``fairseq.search.DiverseBeamSearch`` (idempotent).

    Its ``step`` keeps one row of group overlaps per sentence of the batch (rows in the order of
    the first step) but reads and writes them at ``original_batch_idxs``, which
    ``SequenceGenerator`` fills with the dataset's sentence ids: ``IndexError: index 90 is out of
    bounds for dimension 0 with size 32`` from the second batch on. The ids are now mapped to
    their rows: ``step`` is replaced by :func:`_step_by_batch_position` (fairseq's method with
    the mapping, which TorchScript compiles as it compiles fairseq's), and ``__init__`` also
    creates the attribute that holds the first step's ids.
    """
    beam_search = search.DiverseBeamSearch
    if not getattr(beam_search.__init__, "by_position", False):
        beam_search.__init__ = _init_with_first_step_ids(beam_search.__init__)
    beam_search.step = _step_by_batch_position


_live_buffers = weakref.WeakSet()
_stopping_at_exit = False  # _stop_live_buffers registered with atexit


def _until_stopped(source, stop):
    for item in source:
        yield item
        if stop.is_set():
            return


def _stoppable(init):
    @functools.wraps(init)
    def init_stoppable(self, queue_, source, *args, **kwargs):
        global _stopping_at_exit
        self.memsizer_stop = threading.Event()
        init(self, queue_, _until_stopped(source, self.memsizer_stop), *args, **kwargs)
        _live_buffers.add(self)
        if not _stopping_at_exit:
            _stopping_at_exit = True
            atexit.register(_stop_live_buffers)

    init_stoppable.stoppable = True
    return init_stoppable


def _stop_live_buffers(timeout=30.0):
    for consumer in list(_live_buffers):
        consumer.memsizer_stop.set()
        while consumer.is_alive() and timeout > 0:
            try:  # a consumer blocked on a full queue must be able to put its item
                while True:
                    consumer._queue.get_nowait()
            except queue.Empty:
                pass
            consumer.join(0.05)
            timeout -= 0.05


def stop_data_buffers_at_exit():
    """Patch ``fairseq.data.iterators.BackgroundConsumer.__init__`` (idempotent).

    ``--data-buffer-size`` (default 10) prefetches batches in a daemon thread, which is usually
    collating the next batches when training ends. Python finalises a daemon thread by
    ``pthread_exit`` when it next takes the GIL; inside torch's C++ code that unwinding calls
    ``std::terminate``, so a run that saved its last checkpoint and printed ``done training``
    still exits with 134 and scripts see a failure. Each consumer now reads its source through
    a generator that stops on request, and at exit (``atexit`` runs before daemon threads are
    finalised) the live consumers are stopped and joined.
    """
    consumer = iterators.BackgroundConsumer
    if not getattr(consumer.__init__, "stoppable", False):
        consumer.__init__ = _stoppable(consumer.__init__)


PATIENCE_STATE = "memsizer_patience"


def _early_stop_checks():
    """fairseq-train's ``should_stop_early`` in the module it runs from: ``fairseq_cli.train``,
    or ``__main__`` under ``python -m fairseq_cli.train``."""
    checks = []
    for name in ("fairseq_cli.train", "__main__"):
        check = getattr(sys.modules.get(name), "should_stop_early", None)
        if getattr(check, "__name__", None) == "should_stop_early" and check not in checks:
            checks.append(check)
    return checks


def _saving_patience(save_checkpoint):
    @functools.wraps(save_checkpoint)
    def save_checkpoint_with_patience(self, filename, extra_state):
        for check in _early_stop_checks():
            if hasattr(check, "best"):
                extra_state = dict(extra_state, **{PATIENCE_STATE: {
                    "best": float(check.best), "num_runs": int(check.num_runs)}})
                break
        return save_checkpoint(self, filename, extra_state)

    save_checkpoint_with_patience.saves_patience = True
    return save_checkpoint_with_patience


def _restoring_patience(load_checkpoint):
    signature = inspect.signature(load_checkpoint)

    @functools.wraps(load_checkpoint)
    def load_checkpoint_with_patience(self, *args, **kwargs):
        extra_state = load_checkpoint(self, *args, **kwargs)
        given = signature.bind(self, *args, **kwargs)
        given.apply_defaults()
        state = extra_state or {}
        saved = state.get(PATIENCE_STATE)
        if saved is None and "best" in state:
            # a checkpoint saved without this fix: fairseq's own best score, the count unknown
            saved = {"best": state["best"], "num_runs": 0}
        # fairseq restores its best score under the same condition (checkpoint_utils)
        if saved and not given.arguments["reset_optimizer"] and not given.arguments["reset_meters"]:
            for check in _early_stop_checks():
                check.best, check.num_runs = saved["best"], saved["num_runs"]
        return extra_state

    return load_checkpoint_with_patience


def patience_survives_resume():
    """Patch ``fairseq.trainer.Trainer.save_checkpoint`` / ``load_checkpoint`` (idempotent).

    ``--patience N`` stops training after N validations without a better score, counting in
    attributes of ``fairseq_cli.train.should_stop_early`` that live only in the process: a
    resumed run takes its first validation as the best so far and counts from zero, so it
    stops later than the uninterrupted run would have (and, resumed often enough, never). Each
    checkpoint now also holds that best score and count, and loading it to resume (not to fine-
    tune: ``--reset-optimizer`` or ``--reset-meters``) restores them; from a checkpoint saved
    without them, the best score fairseq keeps is restored and the count starts at zero.
    """
    trainer_class = trainer.Trainer
    if not getattr(trainer_class.save_checkpoint, "saves_patience", False):
        trainer_class.save_checkpoint = _saving_patience(trainer_class.save_checkpoint)
        trainer_class.load_checkpoint = _restoring_patience(trainer_class.load_checkpoint)


def _no_repeat_ngram(self, tokens, lprobs, bsz: int, beam_size: int, step: int):
    """fairseq's ``NGramRepeatBlock._no_repeat_ngram`` on each hypothesis's tokens up to
    ``step``: a token that would repeat an n-gram of the hypothesis gets log-probability -inf."""
    n = self.no_repeat_ngram_size
    banned = [torch.jit.annotate(List[int], []) for _ in range(bsz * beam_size)]
    if step + 2 - n >= 0:
        generated: List[List[int]] = tokens[:, : step + 1].cpu().tolist()
        for row in range(bsz * beam_size):
            last = generated[row][step + 2 - n:]  # the n - 1 tokens that end the hypothesis
            for i in range(step + 2 - n):
                if generated[row][i : i + n - 1] == last:
                    banned[row].append(generated[row][i + n - 1])
    for row in range(bsz * beam_size):
        lprobs[row][torch.tensor(banned[row], dtype=torch.int64)] = \
            torch.tensor(-math.inf).to(lprobs)
    return lprobs


def no_repeat_ngram_up_to_step():
    """Patch ``fairseq.ngram_repeat_block.NGramRepeatBlock`` (idempotent).

    ``SequenceGenerator`` hands the blocker its whole token buffer (``max_len + 2`` columns, pad
    after ``step``), and the Python form (every device without the compiled CUDA extension)
    compares the buffer's last ``n - 1`` entries, always padding, with the hypothesis's n-grams:
    nothing is ever blocked. ``_no_repeat_ngram`` is replaced by this module's
    :func:`_no_repeat_ngram`, which reads each hypothesis up to ``step`` (under the same name,
    so that TorchScript compiles it as it compiles fairseq's).
    """
    from fairseq.ngram_repeat_block import NGramRepeatBlock

    NGramRepeatBlock._no_repeat_ngram = _no_repeat_ngram
