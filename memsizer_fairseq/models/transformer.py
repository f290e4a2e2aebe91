"""``--arch memsizer_transformer``: fairseq's encoder-decoder Transformer with Memsizer attention.

Registered the legacy way (``add_args`` + architecture functions), like fairseq's own
``transformer``, so that every Transformer flag keeps working. By default (the paper's MT
setting) the decoder's self- and cross-attention use Memsizer and the encoder keeps softmax
attention. The translation and summarization presets are the "translation" and "summarization"
rows of :data:`~.presets.PRESETS`.
"""
from fairseq.models import register_model
from fairseq.models.transformer import TransformerConfig, TransformerModel

from ..config import MemsizerConfig
from .checkpoint_mismatch import ExplainsCheckpointMismatch
from .layers import MemsizerTransformerDecoder, MemsizerTransformerEncoder
from .presets import register_presets


@register_model("memsizer_transformer")
class MemsizerTransformerModel(ExplainsCheckpointMismatch, TransformerModel):
    """Transformer (Vaswani et al., 2017) with Memsizer attention (Zhang & Cai, 2022)."""

    @classmethod
    def hub_models(cls):
        return {}

    @classmethod
    def add_args(cls, parser):
        super().add_args(parser)
        MemsizerConfig.add_args(parser)

    @classmethod
    def build_model(cls, args, task):
        """fairseq's ``TransformerModelBase.build_model`` on the args' ``TransformerConfig``,
        which carries the Memsizer options (read and checked here, before anything is built) to
        the encoder and decoder hooks as ``cfg.memsizer``."""
        memsizer_base_architecture(args)  # fill what older checkpoints lack
        memsizer = MemsizerConfig.from_args(args)
        memsizer.check_model(args, cross_attention=True)
        cfg = TransformerConfig.from_namespace(args)
        cfg.memsizer = memsizer
        # TransformerModel.build_model (legacy) would make a new config without it
        return super(TransformerModel, cls).build_model(cfg, task)

    def set_beam_size(self, beam_size: int):
        """Called by fairseq's ``SequenceGenerator`` (through ``EnsembleModel``) for a beam
        search of ``beam_size`` beams: the encoder then keeps one output row per sentence for
        its beams, and each cross-attention one memory (or key and value cache) per sentence."""
        self.encoder.set_beam_size(beam_size)

    @classmethod
    def build_encoder(cls, cfg, src_dict, embed_tokens):
        return MemsizerTransformerEncoder(cfg, cfg.memsizer, src_dict, embed_tokens)

    @classmethod
    def build_decoder(cls, cfg, tgt_dict, embed_tokens):
        return MemsizerTransformerDecoder(cfg, cfg.memsizer, tgt_dict, embed_tokens,
                                          no_encoder_attn=cfg.no_cross_attention)


# memsizer_transformer, memsizer_transformer_tiny, ... and the summarization presets
ARCHITECTURES = {**register_presets("translation"), **register_presets("summarization")}
memsizer_base_architecture = ARCHITECTURES["memsizer_transformer"]
