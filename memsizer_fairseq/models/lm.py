"""``--arch memsizer_lm``: fairseq's Transformer language model with Memsizer self-attention.

For ``--task language_modeling``. Every ``transformer_lm`` flag keeps working (adaptive input
and softmax, shared embeddings, layerdrop, character embeddings, fp16/bf16 ...) because the
model subclasses fairseq's :class:`TransformerLanguageModel` and only swaps the decoder for a
:class:`MemsizerTransformerDecoder` without cross-attention; the causal Memsizer attention is the
plugin's :class:`~memsizer_fairseq.models.attention.MemsizerAttention`.

fairseq registers ``transformer_lm`` with a dataclass config; this model is registered the
legacy way (``add_args`` + architecture functions), like ``memsizer_transformer``: the
``transformer_lm`` flags are generated from fairseq's dataclass *without defaults*, the Memsizer
flags default to ``None``, and the architecture functions fill only what is unset (so an omitted
flag never overrides a preset, and running a preset twice changes nothing).

Defaults are the paper's language-modelling setting (``LM_DEFAULTS``): Memsizer in every layer,
k = 32 slots, q_init_scale 32, kv_init_scale 1. Presets:

* ``memsizer_lm`` -- fairseq's ``transformer_lm`` base (6 x 512);
* ``memsizer_lm_big`` -- ``transformer_lm_big`` (12 x 1024);
* ``memsizer_lm_wiki103`` -- the Baevski-Auli adaptive-input Wikitext-103 setup as the authors
  ran it: 32 layers and layerdrop 0.2 (train with ``--tokens-per-sample 512``);
* ``memsizer_lm_gpt2_small`` / ``memsizer_lm_gpt2_medium`` -- fairseq's GPT-2 sizes.
"""
import argparse
from dataclasses import MISSING, fields
from typing import Optional

from fairseq import options as fairseq_options
from fairseq.dataclass.utils import gen_parser_from_dataclass
from fairseq.models import register_model
from fairseq.models.transformer import TransformerConfig
from fairseq.models.transformer_lm import (
    DEFAULT_MAX_TARGET_POSITIONS,
    TransformerLanguageModel,
    TransformerLanguageModelConfig,
)
from fairseq.modules import AdaptiveInput, CharacterTokenEmbedder
from fairseq.utils import safe_getattr
from torch import Tensor

from ..config import MemsizerConfig
from .checkpoint_mismatch import ExplainsCheckpointMismatch
from .layers import MemsizerTransformerDecoder
from .presets import register_presets


def _lm_fields():
    """(name, default) of the ``transformer_lm`` fields this model's flags come from."""
    for fld in fields(TransformerLanguageModelConfig):
        if fld.default is not MISSING:
            default = fld.default
        elif fld.default_factory is not MISSING:  # type: ignore[misc]
            default = fld.default_factory()  # type: ignore[misc]
        else:
            default = None
        if isinstance(default, str) and default.startswith("${"):
            continue  # interpolates the task / common config: left to fairseq
        yield fld.name, getattr(default, "value", default)


def _forget_unset_lm_fields(args):
    """Drop model fields that a plain (non-suppressing) parser left as ``None``.

    fairseq's presets use ``safe_getattr``, which on an ``argparse.Namespace`` returns a present
    ``None`` instead of the preset's value; removing it lets the preset fill it.
    """
    if isinstance(args, argparse.Namespace):
        for name, _ in _lm_fields():
            if name in vars(args) and getattr(args, name) is None:
                delattr(args, name)


def _fill_lm_dataclass_defaults(args):
    """Give every ``transformer_lm`` field that no preset set its dataclass default.

    The flags are generated without defaults (so that presets can fill them); fields that
    fairseq's ``base_lm_architecture`` leaves alone (``activation_dropout``, ``relu_dropout``,
    ``character_filters``, ``min_params_to_wrap`` ...) would otherwise stay ``None``. Fields that
    interpolate other parts of the config (``tokens_per_sample`` ...) are left to fairseq.
    """
    for name, default in _lm_fields():
        if default is not None and safe_getattr(args, name, None) is None:
            setattr(args, name, default)


@register_model("memsizer_lm")
class MemsizerLanguageModel(ExplainsCheckpointMismatch, TransformerLanguageModel):
    """Transformer language model with causal Memsizer self-attention (Zhang & Cai, 2022)."""

    # fairseq's property (a set) that TorchScript cannot compile
    __jit_unused_properties__ = ["supported_targets"]

    @classmethod
    def hub_models(cls):
        return {}

    @classmethod
    def add_args(cls, parser):
        # transformer_lm's flags, without defaults: the architecture functions fill them.
        gen_parser_from_dataclass(parser, TransformerLanguageModelConfig(), delete_default=True)
        MemsizerConfig.add_args(parser)

    @classmethod
    def build_model(cls, args, task):
        memsizer_lm_base_architecture(args)  # fill what older checkpoints / direct calls lack
        memsizer = MemsizerConfig.from_args(args)  # checked before anything is built
        memsizer.check_model(args, cross_attention=False)

        if args.decoder_layers_to_keep:
            args.decoder_layers = len(args.decoder_layers_to_keep.split(","))
        if safe_getattr(args, "max_target_positions", None) is None:
            args.max_target_positions = safe_getattr(
                args, "tokens_per_sample", DEFAULT_MAX_TARGET_POSITIONS
            )

        embed_tokens = cls.build_lm_input_embedding(args, task)
        if args.tie_adaptive_weights:
            if not args.adaptive_input:
                raise ValueError("--tie-adaptive-weights needs --adaptive-input")
            if args.adaptive_input_factor != args.adaptive_softmax_factor:
                raise ValueError(
                    "--tie-adaptive-weights needs --adaptive-input-factor == "
                    "--adaptive-softmax-factor"
                )
            if args.adaptive_softmax_cutoff != args.adaptive_input_cutoff:
                raise ValueError(
                    f"--tie-adaptive-weights needs --adaptive-softmax-cutoff "
                    f"({args.adaptive_softmax_cutoff}) == --adaptive-input-cutoff "
                    f"({args.adaptive_input_cutoff})"
                )
            if args.decoder_input_dim != args.decoder_output_dim:
                raise ValueError(
                    "--tie-adaptive-weights needs --decoder-input-dim == --decoder-output-dim"
                )

        decoder = MemsizerTransformerDecoder(
            TransformerConfig.from_namespace(args), memsizer, task.target_dictionary,
            embed_tokens, no_encoder_attn=True)
        return cls(decoder)

    def forward(self, src_tokens, src_lengths: Optional[Tensor] = None,
                features_only: bool = False, return_all_hiddens: bool = False):
        """The decoder's forward (fairseq's language models take ``**kwargs`` here, which
        TorchScript cannot compile)."""
        return self.decoder(src_tokens, features_only=features_only,
                            return_all_hiddens=return_all_hiddens)

    @classmethod
    def build_lm_input_embedding(cls, args, task):
        """The input embedding exactly as fairseq's ``TransformerLanguageModel.build_model``."""
        if args.character_embeddings:
            return CharacterTokenEmbedder(
                task.source_dictionary,
                eval(args.character_filters),
                args.character_embedding_dim,
                args.decoder_embed_dim,
                args.char_embedder_highway_layers,
            )
        if args.adaptive_input:
            return AdaptiveInput(
                len(task.source_dictionary),
                task.source_dictionary.pad(),
                args.decoder_input_dim,
                args.adaptive_input_factor,
                args.decoder_embed_dim,
                fairseq_options.eval_str_list(args.adaptive_input_cutoff, type=int),
                args.quant_noise_pq,
                args.quant_noise_pq_block_size,
            )
        return cls.build_embedding(args, task.source_dictionary, args.decoder_input_dim)


# memsizer_lm, memsizer_lm_big, ... (the "language_modeling" rows of PRESETS): the transformer_lm
# fields a plain parser left as None are forgotten first and given their dataclass defaults last.
ARCHITECTURES = register_presets(
    "language_modeling", before=_forget_unset_lm_fields, after=_fill_lm_dataclass_defaults
)
memsizer_lm_base_architecture = ARCHITECTURES["memsizer_lm"]
