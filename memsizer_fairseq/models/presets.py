"""The plugin's architectures (``--arch``), in one table, and the only place where Memsizer's
options get their values.

Each :class:`Preset` names a Memsizer architecture, the values it fills when they are unset (in
order: the first mapping that sets a value wins) and the fairseq preset it runs afterwards, which
fills the Transformer sizes the same way. The paper's presets keep the authors' settings exactly;
the presets ending in ``_softmax_cross``, ``_short_conv`` and ``_causal_slots_32`` are the settings
the README recommends, beyond the paper. The model modules register the presets of their task
with :func:`register_presets`; uptraining (:mod:`memsizer_fairseq.tools.uptrain`) reads from
the same table which Memsizer architecture a fairseq Transformer checkpoint becomes
(:func:`uptrain_arch_map`).
"""
from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from fairseq.models import register_model_architecture
from fairseq.models import transformer_lm as fairseq_lm
from fairseq.models.transformer import transformer_legacy as fairseq_transformer

from ..config import fill_unset

# The paper's machine-translation setting: Memsizer in the decoder (causal self-attention k = 4,
# cross-attention k = 32), softmax self-attention in the encoder, init scales 8 and 8.
MT_DEFAULTS: Dict[str, Any] = dict(
    use_memsizer=False,
    encoder_use_memsizer=False,
    decoder_use_memsizer=True,
    causal_proj_dim=4,
    cross_proj_dim=32,
    encoder_proj_dim=None,  # = cross_proj_dim
    q_init_scale=8.0,
    kv_init_scale=8.0,
    cross_attention="memsizer",
    read_init_gain=1.0,
    causal_short_conv=0,
    causal_form="auto",
    causal_block_size=64,
)
# The paper's language-modelling setting: Memsizer in every layer, k = 32, scales 32 and 1.
LM_DEFAULTS: Dict[str, Any] = dict(MT_DEFAULTS, causal_proj_dim=32, q_init_scale=32.0,
                                   kv_init_scale=1.0)
# Recommended beyond the paper (README, docs/results.md): softmax cross-attention for
# translation and summarization, a 4-tap causal short convolution for language models.
SOFTMAX_CROSS = dict(cross_attention="softmax")
SHORT_CONV = dict(causal_short_conv=4)
# Recommended for a translation Transformer uptrained to a constant state: 32 causal
# self-attention slots (docs/results.md, uptraining at the small size).
CAUSAL_SLOTS_32 = dict(causal_proj_dim=32)

# The plugin model that the presets of each fairseq task belong to.
MODEL_OF_TASK = {
    "translation": "memsizer_transformer",
    "language_modeling": "memsizer_lm",
    "summarization": "memsizer_transformer",
}

# The authors' Wikitext-103 run: Baevski & Auli's adaptive-input model, 32 layers, layerdrop 0.2.
WIKI103 = dict(decoder_layers=32, decoder_layerdrop=0.2)

# Summarization (Transformer-base sizes over fairseq's base_architecture): one joined vocabulary
# with all embeddings shared, 1024 source positions (the task truncates longer documents).
SUMMARIZATION_MODEL = dict(
    share_all_embeddings=True,
    max_source_positions=1024,
    max_target_positions=1024,
    dropout=0.1,
)

# fairseq's tiny sizes, and a small cross-attention memory (k = 8) that learns more reliably at
# these sizes (docs/design_notes.md).
SUMMARIZATION_TINY = dict(
    cross_proj_dim=8,
    encoder_embed_dim=64,
    encoder_ffn_embed_dim=128,
    encoder_layers=2,
    encoder_attention_heads=2,
    decoder_embed_dim=64,
    decoder_ffn_embed_dim=128,
    decoder_layers=2,
    decoder_attention_heads=2,
)


@dataclass(frozen=True)
class Preset:
    """One ``--arch`` of the plugin."""

    arch: str  # the Memsizer architecture's name
    task: str  # the fairseq task it is for (a key of MODEL_OF_TASK)
    fills: Tuple[Mapping[str, Any], ...]  # values filled when unset, first mapping first
    fairseq_preset: Callable  # fairseq's architecture function, run after the fills
    uptrain_from: Tuple[str, ...] = ()  # fairseq architectures that uptraining turns into it

    @property
    def model(self) -> str:
        return MODEL_OF_TASK[self.task]

    def fill(self, args):
        """Set the preset's Memsizer values that ``args`` leaves unset."""
        for values in self.fills:
            fill_unset(args, values)


_MT, _LM = (MT_DEFAULTS,), (LM_DEFAULTS,)

PRESETS: Tuple[Preset, ...] = (
    Preset("memsizer_transformer", "translation", _MT, fairseq_transformer.base_architecture,
           ("transformer",)),
    Preset("memsizer_transformer_tiny", "translation", _MT, fairseq_transformer.tiny_architecture,
           ("transformer_tiny",)),
    Preset("memsizer_transformer_iwslt_de_en", "translation", _MT,
           fairseq_transformer.transformer_iwslt_de_en, ("transformer_iwslt_de_en",)),
    Preset("memsizer_transformer_wmt_en_de", "translation", _MT,
           fairseq_transformer.transformer_wmt_en_de, ("transformer_wmt_en_de",)),
    Preset("memsizer_transformer_wmt_en_de_big", "translation", _MT,
           fairseq_transformer.transformer_wmt_en_de_big, ("transformer_wmt_en_de_big",)),
    # The authors' name for their WMT16 En-De Transformer-big run.
    Preset("memsizer_vaswani_wmt_en_de_big", "translation", _MT,
           fairseq_transformer.transformer_vaswani_wmt_en_de_big,
           ("transformer_vaswani_wmt_en_de_big",)),
    Preset("memsizer_lm", "language_modeling", _LM, fairseq_lm.base_lm_architecture,
           ("transformer_lm",)),
    Preset("memsizer_lm_big", "language_modeling", _LM, fairseq_lm.transformer_lm_big,
           ("transformer_lm_big",)),
    Preset("memsizer_lm_wiki103", "language_modeling", (LM_DEFAULTS, WIKI103),
           fairseq_lm.transformer_lm_baevski_wiki103,
           ("transformer_lm_wiki103", "transformer_lm_baevski_wiki103")),
    Preset("memsizer_lm_gpt2_small", "language_modeling", _LM, fairseq_lm.transformer_lm_gpt2_small,
           ("transformer_lm_gpt2_small",)),
    Preset("memsizer_lm_gpt2_medium", "language_modeling", _LM,
           fairseq_lm.transformer_lm_gpt2_medium, ("transformer_lm_gpt2_medium",)),
    # Summarization keeps the paper's MT setting; not a target of uptraining.
    Preset("memsizer_transformer_summarization", "summarization",
           (MT_DEFAULTS, SUMMARIZATION_MODEL), fairseq_transformer.base_architecture),
    Preset("memsizer_transformer_summarization_tiny", "summarization",
           (SUMMARIZATION_TINY, MT_DEFAULTS, SUMMARIZATION_MODEL),
           fairseq_transformer.base_architecture),
    # The recommended settings, beyond the paper.
    Preset("memsizer_transformer_softmax_cross", "translation", (SOFTMAX_CROSS, MT_DEFAULTS),
           fairseq_transformer.base_architecture),
    Preset("memsizer_transformer_summarization_softmax_cross", "summarization",
           (SOFTMAX_CROSS, MT_DEFAULTS, SUMMARIZATION_MODEL),
           fairseq_transformer.base_architecture),
    Preset("memsizer_lm_short_conv", "language_modeling", (SHORT_CONV, LM_DEFAULTS),
           fairseq_lm.base_lm_architecture),
    Preset("memsizer_transformer_causal_slots_32", "translation", (CAUSAL_SLOTS_32, MT_DEFAULTS),
           fairseq_transformer.base_architecture),
)


def architecture_function(preset: Preset, before: Optional[Callable] = None,
                          after: Optional[Callable] = None) -> Callable:
    """The function fairseq runs on the args of ``--arch preset.arch``: ``before(args)``, the
    preset's fills, fairseq's preset, ``after(args)``. Running it twice changes nothing."""

    def architecture(args):
        if before is not None:
            before(args)
        preset.fill(args)
        preset.fairseq_preset(args)
        if after is not None:
            after(args)

    architecture.__name__ = preset.arch
    architecture.__doc__ = (
        f"The {preset.arch} preset: Memsizer settings over fairseq's "
        f"{preset.fairseq_preset.__name__}.")
    return architecture


def register_presets(task: str, before: Optional[Callable] = None,
                     after: Optional[Callable] = None) -> Dict[str, Callable]:
    """Register with fairseq every preset of ``task``, in the table's order (see
    :func:`architecture_function` for ``before`` and ``after``); returns arch -> function."""
    registered = {}
    for preset in PRESETS:
        if preset.task == task:
            function = architecture_function(preset, before, after)
            registered[preset.arch] = register_model_architecture(
                preset.model, preset.arch)(function)
    return registered


def uptrain_arch_map() -> Dict[str, str]:
    """fairseq Transformer architecture -> the Memsizer architecture that extends it."""
    return {name: preset.arch for preset in PRESETS for name in preset.uptrain_from}
