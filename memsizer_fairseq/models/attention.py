"""Memsizer attention as a drop-in for fairseq's ``MultiheadAttention``: a
:class:`~memsizer_fairseq.layers.MemsizerLayer` behind fairseq's interface.

It speaks fairseq's interface: the ``forward(query, key, value, key_padding_mask,
incremental_state, ...)`` call with ``T x B x C`` tensors and padding masks (True at pads), the
incremental state (``Dict[str, Dict[str, Optional[Tensor]]]``, batch-first tensors) and its beam
reorders, the beam-sharing of the source memory, and attention weights for alignments. The math
is the layer's (``self.memsizer``); checkpoints name its parameters as before, without the
``memsizer.`` prefix (``self_attn.q_proj.weight``).

Incremental decoding keeps, per sentence and layer, the causal state (running sum and count,
and the short convolution's last inputs) or the source memory ``M`` (cross-attention): constant
in the decoded length. In beam search the encoder output holds one row per sentence (see
:class:`~memsizer_fairseq.models.layers.MemsizerTransformerEncoder`): the cross-attention then
writes one memory per sentence, read by its ``beam_size`` consecutive rows, and its reorders
decide from shapes alone what to keep, so that decoding never reads the device.
"""
import uuid
from typing import Dict, Optional, Tuple

import torch
from torch import Tensor, nn

from ..layers import MemsizerLayer
from ..layers.memsizer import CausalState

IncrementalState = Dict[str, Dict[str, Optional[Tensor]]]
# the layer's submodules and parameters, which checkpoints name without the "memsizer." prefix
_LAYER = "memsizer."


def _keep(padding_mask: Optional[Tensor], length: int = -1) -> Optional[Tensor]:
    """fairseq's padding mask (``B x S``, True at pads) as ``keep`` (True at real positions),
    its last ``length`` positions (all with -1): fairseq may pass the mask of the whole
    prefix."""
    if padding_mask is None:
        return None
    keep = ~padding_mask.to(torch.bool)
    if length < 0 or keep.size(1) == length:
        return keep
    return keep[:, keep.size(1) - length:]


def _without_layer_prefix(module, state_dict, prefix, local_metadata):
    """state_dict hook: ``<prefix>memsizer.q_proj.weight`` saved as ``<prefix>q_proj.weight``."""
    for key in [k for k in state_dict if k.startswith(prefix + _LAYER)]:
        state_dict[prefix + key[len(prefix + _LAYER):]] = state_dict.pop(key)


def _with_layer_prefix(module, state_dict, prefix, local_metadata, strict, missing_keys,
                       unexpected_keys, error_msgs):
    """load_state_dict pre-hook: the reverse of :func:`_without_layer_prefix`."""
    for name in module.memsizer.state_dict(keep_vars=True):
        if prefix + name in state_dict:
            state_dict[prefix + _LAYER + name] = state_dict.pop(prefix + name)


def _missing_without_layer_prefix(module, incompatible_keys):
    """load_state_dict post-hook: missing keys named as checkpoints name them."""
    missing = incompatible_keys.missing_keys
    for index, key in enumerate(missing):
        if key.startswith(_LAYER):
            missing[index] = key[len(_LAYER):]
        elif "." + _LAYER in key:
            missing[index] = key.replace("." + _LAYER, ".", 1)


class MemsizerAttention(nn.Module):
    """A :class:`MemsizerLayer` with fairseq's role flags: ``causal`` (decoder / LM
    self-attention), ``self_attention`` (encoder self-attention) or
    ``encoder_decoder_attention`` (cross-attention, which computes the source memory once per
    sentence during incremental decoding). The other arguments are the layer's.

    ``q_proj``, ``l_proj``, ``r_proj``, ``l_norm``, ``r_norm``, ``short_conv`` and
    ``causal_form`` are the layer's, also as attributes of this module.
    """

    __jit_unused_properties__ = ["q_proj", "l_proj", "r_proj", "l_norm", "r_norm", "short_conv",
                                 "causal_form"]

    def __init__(self, embed_dim: int, num_heads: int, proj_dim: int, kdim: Optional[int] = None,
                 causal: bool = False, self_attention: bool = True,
                 encoder_decoder_attention: bool = False, **layer_args):
        super().__init__()
        if causal and not self_attention:
            raise ValueError("causal Memsizer attention must be self-attention")
        if self_attention == encoder_decoder_attention:
            raise ValueError("exactly one of self_attention / encoder_decoder_attention is needed")
        role = "causal" if causal else ("self" if self_attention else "cross")
        self.memsizer = MemsizerLayer(embed_dim, num_heads, proj_dim, role=role, kdim=kdim,
                                      **layer_args)
        self.embed_dim = embed_dim
        self.kdim = self.memsizer.kdim
        self.num_heads = num_heads
        self.proj_dim = proj_dim
        self.head_dim = embed_dim // num_heads  # read by fairseq's layer (for --scale-heads)
        self.causal = causal
        self.self_attention = self_attention
        self.encoder_decoder_attention = encoder_decoder_attention
        # cross-attention: consecutive rows that share one source (the beams of a sentence)
        self.beam_size = 1
        # whether weights are computed when asked for (the decoder layer's need_attn)
        self.weights_on_request = True
        self._incremental_state_id = str(uuid.uuid4())
        self.register_state_dict_post_hook(_without_layer_prefix)
        self.register_load_state_dict_pre_hook(_with_layer_prefix)
        self.register_load_state_dict_post_hook(_missing_without_layer_prefix)

    # the layer's parts, under the names checkpoints give them
    q_proj = property(lambda self: self.memsizer.q_proj)
    l_proj = property(lambda self: self.memsizer.l_proj)
    r_proj = property(lambda self: self.memsizer.r_proj)
    l_norm = property(lambda self: self.memsizer.l_norm)
    r_norm = property(lambda self: self.memsizer.r_norm)
    short_conv = property(lambda self: self.memsizer.short_conv)

    @property
    def causal_form(self) -> str:
        """The layer's form of the causal read in training and prefill (settable)."""
        return self.memsizer.causal_form

    @causal_form.setter
    def causal_form(self, name: str):
        self.memsizer.causal_form = name

    def set_beam_size(self, beam_size: int):
        """Cross-attention: ``beam_size`` consecutive query rows read one source row (fairseq's
        name; the decoder sets it at each call from the encoder output's layout)."""
        self.beam_size = beam_size

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
        or ``need_head_weights`` asks (and :attr:`weights_on_request` allows), the implicit
        weights of its read ``y_t = sum_j w_tj r_j``, ``w_tj = n^(-1/2) a(z_t) . l_j`` (zero at
        pads; they need not be positive or sum to one): ``B x T x S``, or per head
        ``h x B x T x S``, as fairseq lays out attention weights. During incremental decoding
        they are computed from the source passed at each step, so the cached state stays the
        ``k x d`` memory. Causal Memsizer returns no weights. ``attn_mask`` (the decoder's future
        mask) is ignored: causality is part of the causal read.
        """
        if before_softmax:
            raise NotImplementedError("Memsizer attention has no attention logits to return")
        if attn_mask is not None and not self.causal:
            raise NotImplementedError(
                "non-causal Memsizer attention cannot apply an arbitrary attn_mask")
        x = query.transpose(0, 1)  # batch first
        if self.causal:
            return self._causal(x, key_padding_mask, incremental_state), None
        weights = (need_weights or need_head_weights) and self.weights_on_request
        if self.self_attention:
            y, per_head = self.memsizer.attend_self(x, _keep(key_padding_mask), weights)
            return y.transpose(0, 1), self._chosen_weights(per_head, need_head_weights)
        return self._cross(x, key, key_padding_mask, incremental_state, weights,
                           need_head_weights)

    def _causal(self, x: Tensor, key_padding_mask: Optional[Tensor],
                incremental_state: Optional[IncrementalState]) -> Tensor:
        keep = _keep(key_padding_mask, x.size(1))
        if incremental_state is None:
            return self.memsizer.attend_causal(x, keep)[0].transpose(0, 1)
        y, state = self.memsizer.attend_causal(x, keep, self._get_input_buffer(incremental_state))
        if state is not None:
            self._set_input_buffer(incremental_state, state)
        return y.transpose(0, 1)

    def _cross(self, x: Tensor, key: Optional[Tensor], key_padding_mask: Optional[Tensor],
               incremental_state: Optional[IncrementalState], weights: bool, per_head: bool
               ) -> Tuple[Tensor, Optional[Tensor]]:
        source: Optional[Tensor] = None
        if key is not None:
            source = key.transpose(0, 1)
        attn: Optional[Tensor] = None
        if weights:
            if source is None:
                raise ValueError("cross-attention weights need the source (key) at every step")
            attn = self._chosen_weights(
                self.memsizer.read_weights(x, source, _keep(key_padding_mask)), per_head)
        memory: Optional[Tensor] = None
        if incremental_state is not None:
            memory = self._get_input_buffer(incremental_state).get("memory")
        if memory is None:
            if source is None:
                raise ValueError("cross-attention needs the source (key) at its first call")
            if incremental_state is not None and x.size(0) != source.size(0) * self.beam_size:
                raise ValueError(
                    f"cross-attention: {source.size(0)} sources for {x.size(0)} rows; each "
                    f"source is read by beam_size = {self.beam_size} consecutive rows "
                    f"(set_beam_size)")
            memory = self.memsizer.memory(source, _keep(key_padding_mask))
            if incremental_state is not None:
                # one memory per source row, shared by the beam_size rows that read it
                self._set_memory(incremental_state, memory)
        return self.memsizer.read(x, memory).transpose(0, 1), attn

    @staticmethod
    def _chosen_weights(per_head: Optional[Tensor], per_head_asked: bool) -> Optional[Tensor]:
        if per_head is None or per_head_asked:
            return per_head
        return per_head.mean(dim=0)

    # -- incremental state, in fairseq's format ------------------------------------------------

    def _state_key(self) -> str:
        return self._incremental_state_id + ".memsizer_state"

    def _get_input_buffer(
        self, incremental_state: Optional[IncrementalState]
    ) -> Dict[str, Optional[Tensor]]:
        if incremental_state is not None:
            saved = incremental_state.get(self._state_key())
            if saved is not None:
                return saved
        empty: Dict[str, Optional[Tensor]] = {}
        return empty

    def _set_input_buffer(self, incremental_state: IncrementalState,
                          buffer: Dict[str, Optional[Tensor]]) -> IncrementalState:
        incremental_state[self._state_key()] = buffer
        return incremental_state

    def _set_memory(self, incremental_state: IncrementalState, memory: Tensor):
        buffer: Dict[str, Optional[Tensor]] = {"memory": memory}
        self._set_input_buffer(incremental_state, buffer)

    def reorder_incremental_state(self, incremental_state: IncrementalState,
                                  new_order: Tensor) -> IncrementalState:
        """Follow beam search's reorder ``new_order`` (the row each new row continues; it may
        be shorter than the batch once sentences finish), from shapes alone.

        The causal state is selected row by row. The cross-attention's memories, one per
        ``beam_size`` rows, stay as they are when the number of rows does not change: beam
        search then only moves rows among the beams of a sentence, which read the same memory.
        Fewer rows mean finished sentences: the memories of those kept are selected.
        """
        saved = self._get_input_buffer(incremental_state)
        if self.encoder_decoder_attention:
            memory = saved.get("memory")
            if memory is not None and memory.size(0) * self.beam_size != new_order.size(0):
                beams = self.beam_size
                kept = new_order if beams == 1 else torch.div(
                    new_order.view(-1, beams)[:, 0], beams, rounding_mode="floor")
                self._set_memory(incremental_state, memory.index_select(0, kept))
            return incremental_state
        if len(saved) > 0:
            reordered: CausalState = {}
            for name, value in saved.items():
                if value is not None:
                    value = value.index_select(0, new_order)
                reordered[name] = value
            self._set_input_buffer(incremental_state, reordered)
        return incremental_state

    @torch.jit.unused
    def incremental_state_bytes(self, incremental_state: Optional[IncrementalState]) -> int:
        """Bytes this layer holds in ``incremental_state`` (for memory measurements)."""
        return self.memsizer.state_bytes(self._get_input_buffer(incremental_state))
