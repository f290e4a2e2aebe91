"""fairseq Transformer layers, encoder and decoder whose attention is Memsizer.

Thin subclasses: fairseq's ``build_*`` hooks, and what beam search without device reads needs
(the encoder's ``reorder_encoder_out``, the decoder's ``extract_features`` telling the
cross-attentions the rows per source row). Each takes the model's
:class:`~memsizer_fairseq.config.MemsizerConfig` as an argument; fairseq's ``build_model`` hands it
to the encoder and decoder hooks as ``cfg.memsizer``. Everything compiles with TorchScript.
"""
from typing import Dict, List, Optional

import torch
from fairseq.distributed import fsdp_wrap
from fairseq.models.transformer import TransformerDecoderBase, TransformerEncoderBase
from fairseq.modules import MultiheadAttention
from fairseq.modules.checkpoint_activations import checkpoint_wrapper
from fairseq.modules.transformer_layer import (
    TransformerDecoderLayerBase,
    TransformerEncoderLayerBase,
)
from torch import Tensor

from ..config import MemsizerConfig
from .attention import MemsizerAttention


def _wrap_layer(layer, cfg):
    """Activation checkpointing and FSDP wrapping, as fairseq's ``build_*_layer`` do."""
    checkpoint = cfg.checkpoint_activations
    if checkpoint:
        layer = checkpoint_wrapper(layer, offload_to_cpu=cfg.offload_activations)
    return fsdp_wrap(layer, min_num_params=cfg.min_params_to_wrap if not checkpoint else 0)


def select_rows(encoder_out: Dict[str, List[Tensor]], order: Tensor) -> Dict[str, List[Tensor]]:
    """fairseq's ``reorder_encoder_out``: the rows ``order`` of every entry (of the time-major
    ones, ``T x B x C``, along their second dimension)."""
    selected: Dict[str, List[Tensor]] = {}
    for name, values in encoder_out.items():
        dim = 1 if name in ["encoder_out", "encoder_states", "fc_results"] else 0
        selected[name] = [value.index_select(dim, order) for value in values]
    return selected


class MemsizerEncoderLayer(TransformerEncoderLayerBase):
    """Encoder layer with non-causal Memsizer self-attention."""

    def __init__(self, cfg, memsizer: MemsizerConfig, return_fc=False):
        self.memsizer = memsizer  # read by build_self_attention, which fairseq's __init__ calls
        super().__init__(cfg, return_fc=return_fc)

    def build_self_attention(self, embed_dim, cfg):
        return MemsizerAttention(embed_dim, cfg.encoder.attention_heads, self_attention=True,
                                 dropout=cfg.attention_dropout, **self.memsizer.layer_args("self"))


class MemsizerDecoderLayer(TransformerDecoderLayerBase):
    """Decoder layer with causal Memsizer self-attention, and Memsizer cross-attention or
    (``cross_attention="softmax"``) fairseq's softmax encoder-decoder attention."""

    def __init__(self, cfg, memsizer: MemsizerConfig, cross_attention: str = "memsizer",
                 no_encoder_attn=False, add_bias_kv=False, add_zero_attn=False):
        self.memsizer = memsizer
        self.cross_attention = cross_attention
        super().__init__(cfg, no_encoder_attn, add_bias_kv, add_zero_attn)
        if cross_attention == "memsizer":
            self.need_attn = False  # its weights cost a T x S product: only on request (below)

    @property
    def need_attn(self) -> bool:
        """fairseq's flag for attention weights in generation. fairseq's decoder asks its
        alignment layer for them at every call; a Memsizer cross-attention computes them only
        while this flag is set, as ``make_generation_fast_(need_attn=True)`` does for
        ``--print-alignment`` (or set it by hand). Softmax cross-attention is fairseq's."""
        return self._need_attn

    @need_attn.setter
    def need_attn(self, value: bool):
        self._need_attn = value
        if self.encoder_attn is not None:
            if hasattr(self.encoder_attn, "weights_on_request"):
                self.encoder_attn.weights_on_request = value

    def build_self_attention(self, embed_dim, cfg, add_bias_kv=False, add_zero_attn=False):
        if add_bias_kv or add_zero_attn:
            raise ValueError("add_bias_kv / add_zero_attn have no meaning for Memsizer attention")
        return MemsizerAttention(embed_dim, cfg.decoder.attention_heads, causal=True,
                                 self_attention=True, dropout=cfg.attention_dropout,
                                 **self.memsizer.layer_args("causal"))

    def build_encoder_attention(self, embed_dim, cfg):
        if self.cross_attention == "softmax":
            return super().build_encoder_attention(embed_dim, cfg)
        return MemsizerAttention(embed_dim, cfg.decoder.attention_heads,
                                 kdim=cfg.encoder.embed_dim, self_attention=False,
                                 encoder_decoder_attention=True, dropout=cfg.attention_dropout,
                                 **self.memsizer.layer_args("cross"))


class MemsizerTransformerEncoder(TransformerEncoderBase):
    """fairseq's Transformer encoder; Memsizer self-attention if ``--encoder-use-memsizer``.

    In beam search its output holds one row per sentence: told the beam size
    (:meth:`set_beam_size`, which ``SequenceGenerator`` calls through the model), the first
    reorder of an output into ``beam_size`` rows per sentence leaves it as it is, marked, and the
    decoder's cross-attentions read each row for that sentence's beams.
    """

    def __init__(self, cfg, memsizer: MemsizerConfig, dictionary, embed_tokens, return_fc=False):
        self.memsizer = memsizer  # read by build_encoder_layer, which fairseq's __init__ calls
        super().__init__(cfg, dictionary, embed_tokens, return_fc=return_fc)
        self.beam_size = 1

    def build_encoder_layer(self, cfg):
        if not self.memsizer.encoder_use_memsizer:
            return super().build_encoder_layer(cfg)
        return _wrap_layer(MemsizerEncoderLayer(cfg, self.memsizer, return_fc=self.return_fc),
                           cfg)

    def set_beam_size(self, beam_size: int):
        self.beam_size = beam_size

    @torch.jit.export
    def reorder_encoder_out(self, encoder_out: Dict[str, List[Tensor]], new_order: Tensor):
        """fairseq's reorder, decided from shapes where beam search allows.

        ``beam_size`` rows per sentence asked of an output with one row per sentence (beam
        search's first reorder) keep that output as it is, marked as shared by the beams. A
        shared output stays as it is while the number of rows does not change (beams move
        within their sentences, whose rows are one), and keeps the rows of the sentences left
        when it shrinks (finished sentences). Any other reorder selects rows as fairseq does.
        """
        shared_by_beams = "shared_by_beams"  # the mark of an output with one row per sentence
        outputs = encoder_out["encoder_out"]
        beams = self.beam_size
        if len(outputs) > 0 and beams > 1:
            sources = outputs[0].size(1)
            if new_order.size(0) == sources * beams:
                if shared_by_beams in encoder_out:
                    return encoder_out
                shared = encoder_out.copy()
                shared[shared_by_beams] = torch.jit.annotate(List[Tensor], [])
                return shared
            if shared_by_beams in encoder_out:
                kept = torch.div(new_order.view(-1, beams)[:, 0], beams, rounding_mode="floor")
                return select_rows(encoder_out, kept)
        return select_rows(encoder_out, new_order)


class MemsizerTransformerDecoder(TransformerDecoderBase):
    """fairseq's incremental Transformer decoder; Memsizer attention if
    ``--decoder-use-memsizer``."""

    def __init__(self, cfg, memsizer: MemsizerConfig, dictionary, embed_tokens,
                 no_encoder_attn=False, output_projection=None):
        self.memsizer = memsizer
        # fairseq builds the layers in order without passing their index: each takes the next
        # cross-attention kind of this plan
        self._cross_plan = list(memsizer.cross_attention_kinds(cfg.decoder.layers))
        super().__init__(cfg, dictionary, embed_tokens, no_encoder_attn, output_projection)
        self.decoder_use_memsizer = memsizer.decoder_use_memsizer
        if self.decoder_use_memsizer:
            # fairseq's decoder gives self-attention a padding mask only when
            # `cross_self_attention or prev_output_tokens.eq(pad).any()`: that test reads the
            # device at every decoding step. This attribute of the decoder (not of its layers,
            # where --cross-self-attention is refused for Memsizer) only makes it pass the mask
            # always; a mask without pads changes no number of the Memsizer read.
            self.cross_self_attention = True

    def build_decoder_layer(self, cfg, no_encoder_attn=False):
        if not self.memsizer.decoder_use_memsizer:
            return super().build_decoder_layer(cfg, no_encoder_attn)
        cross = self._cross_plan.pop(0)
        return _wrap_layer(MemsizerDecoderLayer(cfg, self.memsizer, cross, no_encoder_attn), cfg)

    def extract_features(
        self,
        prev_output_tokens,
        encoder_out: Optional[Dict[str, List[Tensor]]],
        incremental_state: Optional[Dict[str, Dict[str, Optional[Tensor]]]] = None,
        full_context_alignment: bool = False,
        alignment_layer: Optional[int] = None,
        alignment_heads: Optional[int] = None,
    ):
        """fairseq's, after telling the cross-attentions how many rows share each source row
        (:meth:`share_sources`). Memsizer layers read causally without the decoder's ``T x T``
        future mask, so none is built (as for ``full_context_alignment``): fairseq builds and
        caches a float one in every training forward, quadratic in the length (1 GiB at 16k
        tokens in float32)."""
        self.share_sources(prev_output_tokens.size(0), encoder_out, incremental_state is not None)
        return self.extract_features_scriptable(
            prev_output_tokens, encoder_out, incremental_state,
            full_context_alignment or self.decoder_use_memsizer, alignment_layer,
            alignment_heads)

    def share_sources(self, rows: int, encoder_out: Optional[Dict[str, List[Tensor]]],
                      incremental: bool):
        """Set each cross-attention's ``beam_size``: the decoder rows per encoder output row (one
        outside incremental decoding; in beam search the beam, when the encoder output holds one
        row per sentence). From shapes: nothing is read from the device."""
        beams = 1
        if incremental and encoder_out is not None and len(encoder_out["encoder_out"]) > 0:
            sources = encoder_out["encoder_out"][0].size(1)
            if rows % sources != 0:
                raise ValueError(f"the decoder has {rows} rows for {sources} encoder output rows")
            beams = rows // sources
        for layer in self.layers:
            if layer.encoder_attn is not None:
                layer.encoder_attn.beam_size = beams

    @torch.jit.export
    def reorder_incremental_state_scripting(
        self, incremental_state: Dict[str, Dict[str, Optional[Tensor]]], new_order: Tensor):
        """Every layer's attention states follow ``new_order``. (fairseq's walks every
        submodule, asking each whether it has a state, at every step; the states of this
        decoder are its layers' attentions'.) Compiled with the decoder alone too: a TorchScript
        model can then run beam search without fairseq's generator, which does not compile for
        a language model."""
        for layer in self.layers:
            layer.self_attn.reorder_incremental_state(incremental_state, new_order)
            if layer.encoder_attn is not None:
                layer.encoder_attn.reorder_incremental_state(incremental_state, new_order)

    @torch.jit.unused
    def incremental_state_bytes(self, incremental_state) -> int:
        """Bytes of attention state (Memsizer, softmax) this decoder holds in
        ``incremental_state``."""
        return sum(
            value.numel() * value.element_size()
            for module in self.modules()
            if isinstance(module, (MemsizerAttention, MultiheadAttention))
            for value in module._get_input_buffer(incremental_state).values()
            if value is not None)
