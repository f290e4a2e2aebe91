"""How beam search lays out its rows, found from the tensors themselves.

fairseq's ``SequenceGenerator`` repeats each sentence's source for its beams (``beam`` equal
rows, one sentence after the other) and reorders the rows at every step, mostly within a
sentence's beams, sometimes dropping whole sentences. Caches of the source (Memsizer's memory,
softmax attention's keys and values, the encoder output) can then be held once per sentence and
left in place when only beams move.
"""
from typing import Optional, Tuple

import torch
from torch import Tensor


def equal_runs(labels: Tensor) -> int:
    """``g`` when ``labels`` (``B``) is U runs of g equal values (each run differing from the
    next), else 1."""
    size = labels.numel()
    runs = int((labels[1:] != labels[:-1]).sum()) + 1 if size else 1
    if size % runs or size == runs:
        return 1
    grid = labels.view(runs, size // runs)
    return size // runs if torch.equal(grid, grid[:, :1].expand_as(grid)) else 1


def regroup(new_order: Tensor, rows: int) -> Tuple[Tensor, int]:
    """Rows that are groups of ``rows`` copies of one sentence (row b of sentence ``b // rows``),
    reordered by ``new_order``: the sentence of each new group, and the new group size (1 when
    the new rows do not come in runs of one sentence)."""
    sentences = torch.div(new_order, rows, rounding_mode="floor")
    new_rows = equal_runs(sentences)
    return sentences[::new_rows], new_rows


def keeps_every_group(wanted: Tensor, groups: int) -> bool:
    """Whether the groups ``wanted`` are exactly the ``groups`` there are, in order (a reorder
    within the groups: nothing to copy)."""
    return wanted.numel() == groups and torch.equal(
        wanted, torch.arange(groups, device=wanted.device))


def repeated_sentences(source: Tensor, padding_mask: Optional[Tensor]) -> int:
    """``g`` when the batch of ``source`` (``S x B x d``) and ``padding_mask`` (``B x S``) is U
    runs of g bitwise-equal sentences (the beams of one sentence, as SequenceGenerator lays
    them out), else 1."""
    if source.size(1) < 2:
        return 1
    differs = (source[:, 1:] != source[:, :-1]).any(dim=2).any(dim=0)
    if padding_mask is not None:
        differs = differs | (padding_mask[1:] != padding_mask[:-1]).any(dim=1)
    labels = torch.cat([differs.new_zeros(1), differs]).long().cumsum(0)
    return equal_runs(labels)
