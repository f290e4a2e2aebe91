"""``--arch memsizer_transformer``: fairseq's encoder-decoder Transformer with Memsizer attention.

Registered the legacy way (``add_args`` + architecture functions), like fairseq's own
``transformer``, so that every Transformer flag keeps working. By default (the paper's MT
setting) the decoder's self- and cross-attention use Memsizer and the encoder keeps softmax
attention.
"""
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Optional

from fairseq.models import register_model, register_model_architecture
from fairseq.models.transformer import TransformerConfig, TransformerModel
from fairseq.models.transformer import transformer_legacy as fairseq_transformer

from .checkpoint_mismatch import ExplainsCheckpointMismatch
from .memsizer_layers import MemsizerTransformerDecoder, MemsizerTransformerEncoder
from .memsizer_options import (
    MemsizerOptions,
    add_memsizer_args,
    check_heads_divide_width,
    fill_memsizer_defaults,
    reject_unsupported,
)

_OPTIONS_BEING_BUILT: ContextVar[Optional[MemsizerOptions]] = ContextVar(
    "memsizer_options_being_built", default=None
)


@contextmanager
def building_with(options: MemsizerOptions):
    """Make ``options`` visible to the classmethod ``build_*`` hooks of one ``build_model``."""
    token = _OPTIONS_BEING_BUILT.set(options)
    try:
        yield
    finally:
        _OPTIONS_BEING_BUILT.reset(token)


def validate_memsizer_transformer_args(args) -> MemsizerOptions:
    """All checks that must fail before training starts; each error names its flag."""
    options = MemsizerOptions.from_namespace(args)
    if options.encoder_use_memsizer:
        check_heads_divide_width(args, "encoder")
    if options.decoder_use_memsizer:
        check_heads_divide_width(args, "decoder")
        reject_unsupported(args, "decoder")
        options.cross_attention_of(0, getattr(args, "decoder_layers", None) or 1)
    return options


def _config_with_options(cfg_or_args) -> TransformerConfig:
    options = _OPTIONS_BEING_BUILT.get()
    if options is None:
        options = MemsizerOptions.from_namespace(cfg_or_args)
    cfg = TransformerConfig.from_namespace(cfg_or_args)
    cfg.memsizer = options
    return cfg


@register_model("memsizer_transformer")
class MemsizerTransformerModel(ExplainsCheckpointMismatch, TransformerModel):
    """Transformer (Vaswani et al., 2017) with Memsizer attention (Zhang & Cai, 2022)."""

    @classmethod
    def hub_models(cls):
        return {}

    @classmethod
    def add_args(cls, parser):
        super().add_args(parser)
        add_memsizer_args(parser)

    @classmethod
    def build_model(cls, args, task):
        memsizer_base_architecture(args)  # fill what older checkpoints lack
        options = validate_memsizer_transformer_args(args)
        with building_with(options):
            return super().build_model(args, task)

    @classmethod
    def build_encoder(cls, cfg, src_dict, embed_tokens):
        return MemsizerTransformerEncoder(_config_with_options(cfg), src_dict, embed_tokens)

    @classmethod
    def build_decoder(cls, cfg, tgt_dict, embed_tokens):
        cfg = _config_with_options(cfg)
        return MemsizerTransformerDecoder(
            cfg, tgt_dict, embed_tokens, no_encoder_attn=cfg.no_cross_attention
        )


def _memsizer_architecture(name: str, transformer_preset):
    """Register ``name`` = the Memsizer defaults on top of fairseq's ``transformer_preset``."""

    def architecture(args):
        fill_memsizer_defaults(args)
        transformer_preset(args)

    architecture.__name__ = name
    architecture.__doc__ = f"Memsizer defaults over fairseq's {transformer_preset.__name__}."
    return register_model_architecture("memsizer_transformer", name)(architecture)


memsizer_base_architecture = _memsizer_architecture(
    "memsizer_transformer", fairseq_transformer.base_architecture
)
memsizer_transformer_tiny = _memsizer_architecture(
    "memsizer_transformer_tiny", fairseq_transformer.tiny_architecture
)
memsizer_transformer_iwslt_de_en = _memsizer_architecture(
    "memsizer_transformer_iwslt_de_en", fairseq_transformer.transformer_iwslt_de_en
)
memsizer_transformer_wmt_en_de = _memsizer_architecture(
    "memsizer_transformer_wmt_en_de", fairseq_transformer.transformer_wmt_en_de
)
memsizer_transformer_wmt_en_de_big = _memsizer_architecture(
    "memsizer_transformer_wmt_en_de_big", fairseq_transformer.transformer_wmt_en_de_big
)
# The authors' name for their WMT16 En-De Transformer-big run.
memsizer_vaswani_wmt_en_de_big = _memsizer_architecture(
    "memsizer_vaswani_wmt_en_de_big", fairseq_transformer.transformer_vaswani_wmt_en_de_big
)
