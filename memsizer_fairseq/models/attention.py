"""Memsizer attention as a drop-in for fairseq's ``MultiheadAttention``: the fairseq side of
:class:`~memsizer_fairseq.layers.MemsizerLayer`.

It speaks fairseq's interface: the ``forward(query, key, value, key_padding_mask,
incremental_state, ...)`` call with ``T x B x C`` tensors and padding masks (True at pads), the
incremental state (``Dict[str, Dict[str, Optional[Tensor]]]``, batch-first tensors) and its beam
reorders, the beam-sharing of the source memory, and attention weights for alignments. The math
is the layer's.

Incremental decoding keeps, per sentence and layer, the causal state (running sum and count,
and the short convolution's last inputs) or the source memory ``M`` (cross-attention): constant
in the decoded length. Beam reorders that only move rows within one sentence's beams leave the
source memory in place, and the beams of a sentence share one copy of it.
"""
import uuid
from typing import Dict, Optional, Tuple

import torch
from torch import Tensor

from ..layers import MemsizerLayer
from ..ops.memory import read_memory, read_weights
from .beam_rows import keeps_every_group, regroup, repeated_sentences

IncrementalState = Dict[str, Dict[str, Optional[Tensor]]]


def _keep(padding_mask: Optional[Tensor], length: Optional[int] = None) -> Optional[Tensor]:
    """fairseq's padding mask (``B x S``, True at pads) as ``keep`` (True at real positions),
    its last ``length`` positions: fairseq may pass the mask of the whole prefix."""
    if padding_mask is None:
        return None
    keep = ~padding_mask.bool()
    return keep if length is None or keep.size(1) == length else keep[:, -length:]


class MemsizerAttention(MemsizerLayer):
    """A :class:`MemsizerLayer` with fairseq's role flags: ``causal`` (decoder / LM
    self-attention), ``self_attention`` (encoder self-attention) or
    ``encoder_decoder_attention`` (cross-attention, which computes the source memory once per
    sentence during incremental decoding). The other arguments are the layer's."""

    def __init__(self, embed_dim: int, num_heads: int, proj_dim: int, kdim: Optional[int] = None,
                 causal: bool = False, self_attention: bool = True,
                 encoder_decoder_attention: bool = False, **layer_args):
        if causal and not self_attention:
            raise ValueError("causal Memsizer attention must be self-attention")
        if self_attention == encoder_decoder_attention:
            raise ValueError("exactly one of self_attention / encoder_decoder_attention is needed")
        role = "causal" if causal else ("self" if self_attention else "cross")
        super().__init__(embed_dim, num_heads, proj_dim, role=role, kdim=kdim, **layer_args)
        self.causal = causal
        self.self_attention = self_attention
        self.encoder_decoder_attention = encoder_decoder_attention
        self.head_dim = embed_dim // num_heads  # read by fairseq's layer (for --scale-heads)
        self._incremental_state_id = str(uuid.uuid4())

    def forward(
        self,
        query: Tensor,
        key: Optional[Tensor] = None,
        value: Optional[Tensor] = None,
        key_padding_mask: Optional[Tensor] = None,
        incremental_state: Optional[IncrementalState] = None,
        need_weights: bool = False,
        static_kv: bool = False,
        attn_mask: Optional[Tensor] = None,
        before_softmax: bool = False,
        need_head_weights: bool = False,
    ) -> Tuple[Tensor, Optional[Tensor]]:
        """Same call as fairseq's ``MultiheadAttention``; returns ``(T x B x d, weights)``.

        Non-causal Memsizer (cross- and encoder self-attention) returns, when ``need_weights``
        or ``need_head_weights`` asks, the implicit weights of its read ``y_t = sum_j w_tj r_j``,
        ``w_tj = n^(-1/2) a(z_t) . l_j`` (zero at pads; they need not be positive or sum to
        one): ``B x T x S``, or per head ``h x B x T x S``, as fairseq lays out attention
        weights. During incremental decoding they are computed from the source passed at each
        step, so the cached state stays the ``k x d`` memory. Causal Memsizer returns no weights.
        ``attn_mask`` (the decoder's future mask) is ignored: causality is part of the causal
        read.
        """
        if before_softmax:
            raise NotImplementedError("Memsizer attention has no attention logits to return")
        if attn_mask is not None and not self.causal:
            raise NotImplementedError(
                "non-causal Memsizer attention cannot apply an arbitrary attn_mask")
        x = query.transpose(0, 1)  # batch first
        if self.causal:
            keep = _keep(key_padding_mask, x.size(1))
            state = None if incremental_state is None else self._get_input_buffer(
                incremental_state)
            y, new_state = self.attend_causal(x, keep, state)
            if new_state is not None:
                self._set_input_buffer(incremental_state, new_state)
            return y.transpose(0, 1), None
        weights = "heads" if need_head_weights else ("mean" if need_weights else None)
        if self.self_attention:
            y, per_head = self.attend_self(x, _keep(key_padding_mask), weights is not None)
            return y.transpose(0, 1), self._chosen_weights(per_head, weights)
        return self._cross(x, key, key_padding_mask, incremental_state, weights)

    def _cross(self, x: Tensor, key: Optional[Tensor], key_padding_mask: Optional[Tensor],
               incremental_state: Optional[IncrementalState], weights: Optional[str]
               ) -> Tuple[Tensor, Optional[Tensor]]:
        if key is None and incremental_state is None:
            raise ValueError("cross-attention needs the source (key)")
        heads = self.head_probs(self.q_proj(x))
        a = heads.mean(dim=2).to(x.dtype)
        attn = None
        if weights is not None:
            if key is None:
                raise ValueError("cross-attention weights need the source (key) at every step")
            l = self.l_norm(self.l_proj(key.transpose(0, 1)))
            per_head = read_weights(heads, l, _keep(key_padding_mask)).to(x.dtype)
            attn = self._chosen_weights(per_head, weights)
        if incremental_state is None:
            memory = self.memory(key.transpose(0, 1), _keep(key_padding_mask))
            return read_memory(a, memory).transpose(0, 1), attn
        saved = self._get_input_buffer(incremental_state)
        memory = saved.get("memory")
        if memory is None:
            if key is None:
                raise ValueError("cross-attention state is empty and no source was given")
            # one memory per sentence, computed from one copy of its source, shared by its beams
            rows = repeated_sentences(key, key_padding_mask)
            if rows > 1:
                key = key[:, ::rows]
                key_padding_mask = None if key_padding_mask is None else key_padding_mask[::rows]
            memory = self.memory(key.transpose(0, 1), _keep(key_padding_mask))
            self._set_input_buffer(incremental_state, {
                "memory": memory, "rows_per_memory": torch.tensor(rows, dtype=torch.long)})
        return read_memory(a, memory).transpose(0, 1), attn

    @staticmethod
    def _chosen_weights(per_head: Optional[Tensor], weights: Optional[str]) -> Optional[Tensor]:
        if per_head is None or weights is None:
            return None
        return per_head if weights == "heads" else per_head.mean(dim=0)

    # -- incremental state, in fairseq's format ------------------------------------------------

    def _state_key(self) -> str:
        return f"{self._incremental_state_id}.memsizer_state"

    def _get_input_buffer(
        self, incremental_state: Optional[IncrementalState]
    ) -> Dict[str, Optional[Tensor]]:
        if incremental_state is None:
            return {}
        return incremental_state.get(self._state_key()) or {}

    def _set_input_buffer(self, incremental_state: IncrementalState,
                          buffer: Dict[str, Optional[Tensor]]) -> IncrementalState:
        incremental_state[self._state_key()] = buffer
        return incremental_state

    def reorder_incremental_state(self, incremental_state: IncrementalState,
                                  new_order: Tensor) -> IncrementalState:
        """Select / permute sentences (every state tensor is batch first); ``new_order`` may be
        shorter than the batch."""
        saved = self._get_input_buffer(incremental_state)
        if saved.get("rows_per_memory") is not None:
            return self._reorder_shared(incremental_state, saved, new_order)
        if saved:
            self._set_input_buffer(incremental_state, {
                name: (None if value is None else value.index_select(0, new_order))
                for name, value in saved.items()})
        return incremental_state

    def _reorder_shared(self, incremental_state: IncrementalState,
                        saved: Dict[str, Optional[Tensor]], new_order: Tensor) -> IncrementalState:
        """Cross-attention: row b reads memory ``b // g``. On the CPU, beam search only moves
        rows within a sentence's beams (nothing to copy) or drops whole sentences (copy the kept
        memories, one per sentence); any other order copies one memory per row. Finding which
        reads ``new_order`` on the host, so on an accelerator every row gets its memory gathered
        instead (``k x d`` per row and step, without a host synchronisation)."""
        memory = saved["memory"]
        rows = int(saved["rows_per_memory"])  # a CPU tensor: no synchronisation
        if not self.host_reads_orders(memory.device):
            memory = memory.index_select(0, torch.div(new_order, rows, rounding_mode="floor"))
            new_rows = 1
        else:
            wanted, new_rows = regroup(new_order, rows)
            if not keeps_every_group(wanted, memory.size(0)):
                memory = memory.index_select(0, wanted)
        self._set_input_buffer(incremental_state, {
            "memory": memory, "rows_per_memory": torch.tensor(new_rows, dtype=torch.long)})
        return incremental_state

    @staticmethod
    def host_reads_orders(device: torch.device) -> bool:
        """Whether beam reorders may read the order on the host to share memories (the CPU)."""
        return device.type == "cpu"

    def incremental_state_bytes(self, incremental_state: Optional[IncrementalState]) -> int:
        """Bytes this layer holds in ``incremental_state`` (for memory measurements)."""
        return self.state_bytes(self._get_input_buffer(incremental_state))
