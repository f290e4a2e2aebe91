"""``--arch memsizer_transformer``: fairseq's encoder-decoder Transformer with Memsizer attention.

Registered the legacy way (``add_args`` + architecture functions), like fairseq's own
``transformer``, so that every Transformer flag keeps working. By default (the paper's MT
setting) the decoder's self- and cross-attention use Memsizer and the encoder keeps softmax
attention.
"""
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Optional

from fairseq.models import register_model
from fairseq.models.transformer import TransformerConfig, TransformerModel

from .checkpoint_mismatch import ExplainsCheckpointMismatch
from .memsizer_layers import MemsizerTransformerDecoder, MemsizerTransformerEncoder
from .memsizer_options import (
    MemsizerOptions,
    add_memsizer_args,
    check_heads_divide_width,
    reject_unsupported,
)
from .presets import register_presets

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


# memsizer_transformer, memsizer_transformer_tiny, ... (the "translation" rows of PRESETS).
ARCHITECTURES = register_presets("translation")
memsizer_base_architecture = ARCHITECTURES["memsizer_transformer"]
