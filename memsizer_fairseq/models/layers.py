"""fairseq Transformer layers, encoder and decoder whose attention is Memsizer.

Thin subclasses: only fairseq's ``build_*`` hooks (and two overridable methods) are overridden.
Each takes the model's :class:`~memsizer_fairseq.config.MemsizerConfig` as an argument; fairseq's
``build_model`` hands it to the encoder and decoder hooks as ``cfg.memsizer``.
"""
from typing import Dict, List

import torch
from fairseq.distributed import fsdp_wrap
from fairseq.models.transformer import TransformerDecoderBase, TransformerEncoderBase
from fairseq.modules import MultiheadAttention
from fairseq.modules.checkpoint_activations import checkpoint_wrapper
from fairseq.modules.transformer_layer import (
    TransformerDecoderLayerBase,
    TransformerEncoderLayerBase,
)

from ..config import MemsizerConfig
from .attention import MemsizerAttention
from .beam_rows import keeps_every_group, regroup
from .shared_source_attention import SharedSourceAttention


def _wrap_layer(layer, cfg):
    """Activation checkpointing and FSDP wrapping, as fairseq's ``build_*_layer`` do."""
    checkpoint = cfg.checkpoint_activations
    if checkpoint:
        layer = checkpoint_wrapper(layer, offload_to_cpu=cfg.offload_activations)
    return fsdp_wrap(layer, min_num_params=cfg.min_params_to_wrap if not checkpoint else 0)


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

    def forward(self, x, *args, need_attn: bool = False, need_head_weights: bool = False,
                **kwargs):
        """fairseq's layer. fairseq's decoder asks its alignment layer for attention weights at
        every call; a Memsizer cross-attention computes them only when the layer's
        ``need_attn`` is set, as ``make_generation_fast_(need_attn=True)`` does for
        ``--print-alignment`` (or set it by hand). Softmax cross-attention is fairseq's."""
        if self.cross_attention == "memsizer" and not self.need_attn:
            need_attn = need_head_weights = False
        return super().forward(x, *args, need_attn=need_attn,
                               need_head_weights=need_head_weights, **kwargs)

    def build_self_attention(self, embed_dim, cfg, add_bias_kv=False, add_zero_attn=False):
        if add_bias_kv or add_zero_attn:
            raise ValueError("add_bias_kv / add_zero_attn have no meaning for Memsizer attention")
        return MemsizerAttention(embed_dim, cfg.decoder.attention_heads, causal=True,
                                 self_attention=True, dropout=cfg.attention_dropout,
                                 **self.memsizer.layer_args("causal"))

    def build_encoder_attention(self, embed_dim, cfg):
        if self.cross_attention == "softmax":
            # fairseq's TransformerDecoderLayerBase.build_encoder_attention, one cache per source
            return SharedSourceAttention(
                embed_dim, cfg.decoder.attention_heads, kdim=cfg.encoder.embed_dim,
                vdim=cfg.encoder.embed_dim, dropout=cfg.attention_dropout,
                encoder_decoder_attention=True, q_noise=self.quant_noise,
                qn_block_size=self.quant_noise_block_size,
                xformers_att_config=cfg.encoder.xformers_att_config)
        return MemsizerAttention(embed_dim, cfg.decoder.attention_heads,
                                 kdim=cfg.encoder.embed_dim, self_attention=False,
                                 encoder_decoder_attention=True, dropout=cfg.attention_dropout,
                                 **self.memsizer.layer_args("cross"))


class MemsizerTransformerEncoder(TransformerEncoderBase):
    """fairseq's Transformer encoder; Memsizer self-attention if ``--encoder-use-memsizer``."""

    def __init__(self, cfg, memsizer: MemsizerConfig, dictionary, embed_tokens, return_fc=False):
        self.memsizer = memsizer  # read by build_encoder_layer, which fairseq's __init__ calls
        super().__init__(cfg, dictionary, embed_tokens, return_fc=return_fc)

    def build_encoder_layer(self, cfg):
        if not self.memsizer.encoder_use_memsizer:
            return super().build_encoder_layer(cfg)
        return _wrap_layer(MemsizerEncoderLayer(cfg, self.memsizer, return_fc=self.return_fc),
                           cfg)

    def reorder_encoder_out(self, encoder_out: Dict[str, List[torch.Tensor]], new_order):
        """fairseq's reorder, skipped when it would change nothing.

        Beam search gathers the encoder output at every step, although its rows are g copies of
        each sentence (``rows_per_source``, recorded here when the batch is expanded to beams)
        and most steps only move rows among the beams of a sentence. Such a reorder returns
        ``encoder_out`` itself; any other order is gathered as in fairseq.
        """
        found = encoder_out.get("rows_per_source", [])
        rows = int(found[0]) if found else 1
        sentences, new_rows = regroup(new_order, rows)
        outputs = encoder_out["encoder_out"]
        if rows > 1 and new_rows == rows and outputs and keeps_every_group(
                sentences, outputs[0].size(1) // rows):
            return encoder_out
        reordered = super().reorder_encoder_out(encoder_out, new_order)
        reordered["rows_per_source"] = [torch.tensor(new_rows)]
        return reordered


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

    def build_decoder_layer(self, cfg, no_encoder_attn=False):
        if not self.memsizer.decoder_use_memsizer:
            return super().build_decoder_layer(cfg, no_encoder_attn)
        cross = self._cross_plan.pop(0)
        return _wrap_layer(MemsizerDecoderLayer(cfg, self.memsizer, cross, no_encoder_attn), cfg)

    def buffered_future_mask(self, tensor):
        """No ``T x T`` future mask for Memsizer layers: causality is part of the causal read.

        fairseq builds (and caches) a float ``T x T`` mask in every training forward; Memsizer
        ignores it, and building it would make memory quadratic in the length (1 GiB at 16k
        tokens in float32).
        """
        if self.memsizer.decoder_use_memsizer:
            return None
        return super().buffered_future_mask(tensor)

    def incremental_state_bytes(self, incremental_state) -> int:
        """Bytes of attention state (Memsizer, softmax) this decoder holds in
        ``incremental_state``."""
        return sum(
            value.numel() * value.element_size()
            for module in self.modules()
            if isinstance(module, (MemsizerAttention, MultiheadAttention))
            for value in module._get_input_buffer(incremental_state).values()
            if value is not None)
