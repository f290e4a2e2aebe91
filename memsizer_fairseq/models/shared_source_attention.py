"""fairseq's softmax encoder-decoder attention, with one key/value cache per source sentence.

Beam search hands the decoder each sentence's encoder output once per beam. fairseq's
``MultiheadAttention`` then projects and caches the source keys and values once per beam
(``beam x H x S x d_head`` per sentence and layer) unless the model calls ``set_beam_size``,
which the stock Transformer does not, and which then assumes beam-grouped rows in every later
call. This subclass finds the groups itself: at the first decoding step the rows that hold
bitwise-equal sources (and padding) are cached once, and fairseq's own grouped read (its
``kv_bsz`` path) serves every row of a group. The group size travels in the incremental state,
so reorders within a sentence's beams copy nothing, dropping sentences copies one cache per kept
sentence, and any other order falls back to one cache per row. Training and scoring (no
incremental state) are fairseq's code unchanged.
"""
from typing import Dict, Optional

import torch
from fairseq.modules import MultiheadAttention
from torch import Tensor

from .beam_rows import keeps_every_group, regroup, repeated_sentences

_CACHED = ("prev_key", "prev_value", "prev_key_padding_mask")


class SharedSourceAttention(MultiheadAttention):
    def forward(self, query, key, value, key_padding_mask=None, incremental_state=None,
                need_weights=True, static_kv=False, attn_mask=None, before_softmax=False,
                need_head_weights=False):
        rows = None
        if (incremental_state is not None and key is not None and static_kv
                and "prev_key" not in self._get_input_buffer(incremental_state)):
            rows = repeated_sentences(key, key_padding_mask)
            if rows > 1:
                key = value = key[:, ::rows]
                key_padding_mask = None if key_padding_mask is None else key_padding_mask[::rows]
        out = super().forward(query, key, value, key_padding_mask, incremental_state,
                              need_weights, static_kv, attn_mask, before_softmax,
                              need_head_weights)
        if rows is not None:
            saved = self._get_input_buffer(incremental_state)
            saved["rows_per_key"] = torch.tensor(rows, dtype=torch.long)
            self._set_input_buffer(incremental_state, saved)
        return out

    def reorder_incremental_state(
        self, incremental_state: Dict[str, Dict[str, Optional[Tensor]]], new_order: Tensor
    ):
        """Row b reads the cache of group ``b // g``: keep, select per sentence or per row."""
        saved = self._get_input_buffer(incremental_state)
        if saved.get("rows_per_key") is None:
            return super().reorder_incremental_state(incremental_state, new_order)
        wanted, new_rows = regroup(new_order, int(saved["rows_per_key"]))
        if not keeps_every_group(wanted, saved["prev_key"].size(0)):
            for name in _CACHED:
                if saved.get(name) is not None:
                    saved[name] = saved[name].index_select(0, wanted)
        saved["rows_per_key"] = torch.tensor(new_rows, dtype=torch.long)
        return self._set_input_buffer(incremental_state, saved)
