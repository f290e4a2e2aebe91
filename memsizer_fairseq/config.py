"""Memsizer's options: one dataclass, one name per option for the flag, the field and the layer.

Each field of :class:`MemsizerConfig` is a command-line flag of the same name (``causal_proj_dim``
is ``--causal-proj-dim``; the authors' flag names keep their meaning) and an argument of
:class:`~memsizer_fairseq.layers.MemsizerLayer` of the same name, except the slot counts: a layer
has one, ``proj_dim``, which is ``--causal-proj-dim``, ``--cross-proj-dim`` or
``--encoder-proj-dim`` by its role. Every flag defaults to ``None`` on the command line, so that
an omitted flag never overrides an architecture preset (the authors' plugin had argparse defaults
of 128 / 256 slots that silently replaced the presets' 4 / 32); the values live only in the
presets table (:mod:`memsizer_fairseq.models.presets`). :meth:`MemsizerConfig.from_args` reads
and validates a model's options in one place (each error names its flag) and the result travels
to the layers explicitly, as ``cfg.memsizer`` beside fairseq's ``TransformerConfig``.

No fairseq import: the layers and the tools use it too.
"""
import argparse
from dataclasses import dataclass, field, fields, replace
from typing import Dict, Optional, Tuple, Union

from .ops.causal import FORM_CHOICES
from .ops.common import check_positive

CROSS_ATTENTION_KINDS = ("memsizer", "softmax")
# fields a checkpoint saved by an earlier version may hold under another name
RENAMED = {"memsizer_block_size": "causal_block_size"}


def str2bool(value) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def positive_int(value) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    if number <= 0 or str(number) != str(value).strip().lstrip("+"):
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return number


def positive_float(value) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value!r}")
    if not number > 0 or number == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {value!r}")
    return number


def cross_attention_mode(value) -> str:
    """``memsizer``, ``softmax``, or one of them per decoder layer, comma-separated."""
    kinds = [kind.strip() for kind in str(value).split(",")]
    if any(kind not in CROSS_ATTENTION_KINDS for kind in kinds):
        raise argparse.ArgumentTypeError(
            f"expected {' or '.join(CROSS_ATTENTION_KINDS)}, or one of them per decoder layer "
            f"separated by commas, got {value!r}")
    return ",".join(kinds)


def read_init_gain(value) -> Union[float, str]:
    """A positive number, or ``sqrt-k`` (the square root of each layer's slot count)."""
    if str(value).strip().lower() == "sqrt-k":
        return "sqrt-k"
    try:
        return positive_float(value)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a positive number or sqrt-k, got {value!r}")


def short_conv_taps(value) -> int:
    """0 (off), or the number of taps of the causal short convolution (at least 2)."""
    if str(value).strip() == "0":
        return 0
    message = f"expected 0 (off) or at least 2 taps, got {value!r}"
    try:
        taps = positive_int(value)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(message) from None
    if taps < 2:
        raise argparse.ArgumentTypeError(message)
    return taps


def causal_form_name(value) -> str:
    if value not in FORM_CHOICES:
        raise argparse.ArgumentTypeError(
            f"expected one of {', '.join(FORM_CHOICES)}, got {value!r}")
    return value


def flag_of(name: str) -> str:
    """``--causal-proj-dim`` for ``causal_proj_dim``."""
    return "--" + name.replace("_", "-")


def _switch(help: str):
    """A boolean flag: ``--flag`` alone means true, ``--flag false`` false."""
    return field(default=None, metadata={
        "help": help, "type": str2bool, "nargs": "?", "const": True, "metavar": "BOOL"})


def _flag(parse, metavar: str, help: str, **more):
    """A flag whose value ``parse`` reads (it raises ``argparse.ArgumentTypeError``)."""
    return field(default=None, metadata={"help": help, "type": parse, "metavar": metavar, **more})


@dataclass(frozen=True)
class MemsizerConfig:
    """Memsizer's flags, one field a flag. As parsed every field may be ``None`` (unset: a
    preset fills it); :meth:`from_args` returns the resolved, validated options of a model."""

    use_memsizer: Optional[bool] = _switch(
        "use Memsizer for every attention layer (encoder and decoder)")
    encoder_use_memsizer: Optional[bool] = _switch("use Memsizer for encoder self-attention")
    decoder_use_memsizer: Optional[bool] = _switch(
        "use Memsizer for decoder self-attention and cross-attention")
    causal_proj_dim: Optional[int] = _flag(
        positive_int, "K", "memory slots k of causal (decoder/LM) self-attention")
    cross_proj_dim: Optional[int] = _flag(positive_int, "K", "memory slots k of cross-attention")
    encoder_proj_dim: Optional[int] = _flag(
        positive_int, "K", "memory slots k of encoder self-attention (default: --cross-proj-dim)")
    q_init_scale: Optional[float] = _flag(
        positive_float, "S", "Xavier gain S^(-1/2) for the slot-logit projection Phi")
    kv_init_scale: Optional[float] = _flag(
        positive_float, "S", "Xavier gain S^(-1/2) for the value projections W_l and W_r")
    cross_attention: Optional[str] = _flag(
        cross_attention_mode, "MODE",
        "beyond the paper: cross-attention of Memsizer decoder layers: memsizer (the paper's), "
        "softmax (fairseq's encoder-decoder attention; the decoder self-attention stays "
        "Memsizer), or one per decoder layer, e.g. memsizer,memsizer,softmax")
    read_init_gain: Optional[Union[float, str]] = _flag(
        read_init_gain, "G",
        "beyond the paper: initial weight of the LayerNorm of the values r (the paper's: 1); "
        "sqrt-k gives each layer sqrt(its slots), so the read's initial output scale no longer "
        "shrinks with k")
    causal_short_conv: Optional[int] = _flag(
        short_conv_taps, "K",
        "beyond the paper: a causal depthwise convolution of K taps over the input of causal "
        "Memsizer self-attention, starting as the identity (0: none); its decoding state is the "
        "last K-1 inputs")
    causal_form: Optional[str] = _flag(
        causal_form_name, "FORM",
        f"how causal self-attention computes its read in training and prefill: "
        f"{', '.join(FORM_CHOICES)} (auto: by device and length; the same numbers either way)")
    causal_block_size: Optional[int] = _flag(
        positive_int, "C", "block length of the chunked (linear-time) causal form",
        aliases=("--memsizer-block-size",))

    # -- reading and checking -------------------------------------------------------------------

    @classmethod
    def add_args(cls, parser):
        """Add the flags to an argparse parser (no defaults: presets fill them)."""
        group = parser.add_argument_group("Memsizer")
        for fld in fields(cls):
            metadata = dict(fld.metadata)
            aliases = metadata.pop("aliases", ())
            group.add_argument(flag_of(fld.name), *aliases, dest=fld.name, default=None,
                               **metadata)

    @classmethod
    def from_args(cls, args) -> "MemsizerConfig":
        """The resolved options of a model from fairseq's args (after its architecture
        function filled the preset's values), validated: each error names its flag. A value
        that did not come through argparse (a config file, a checkpoint) is parsed as the flag
        would parse it."""
        values = {}
        for fld in fields(cls):
            value = getattr(args, fld.name, None)
            old = next((o for o, n in RENAMED.items() if n == fld.name), None)
            if value is None and old is not None:
                value = getattr(args, old, None)
            if value is not None and not isinstance(value, bool):
                try:
                    value = fld.metadata["type"](value)
                except argparse.ArgumentTypeError as error:
                    raise ValueError(f"{flag_of(fld.name)}: {error}") from None
            values[fld.name] = value
        everywhere = bool(values["use_memsizer"])
        values["use_memsizer"] = everywhere
        values["encoder_use_memsizer"] = everywhere or bool(values["encoder_use_memsizer"])
        values["decoder_use_memsizer"] = everywhere or values["decoder_use_memsizer"] is not False
        if values["encoder_proj_dim"] is None:
            values["encoder_proj_dim"] = values["cross_proj_dim"]
        config = cls(**values)
        config.check_resolved()
        return config

    def check_resolved(self):
        """Every option a model needs is set (a preset's architecture function ran)."""
        needed = {"causal_proj_dim": int, "cross_proj_dim": int, "encoder_proj_dim": int,
                  "q_init_scale": float, "kv_init_scale": float, "causal_block_size": int}
        for name, kind in needed.items():
            try:
                check_positive(flag_of(name), getattr(self, name), kind)
            except ValueError as error:
                raise ValueError(f"{error} (no --arch preset set it)") from None
        for name in ("cross_attention", "read_init_gain", "causal_short_conv", "causal_form"):
            if getattr(self, name) is None:
                raise ValueError(f"{flag_of(name)} is unset (no --arch preset set it)")

    def check_model(self, args, cross_attention: bool):
        """Model-level checks: heads divide each Memsizer width, options without meaning for
        Memsizer are refused, and ``--cross-attention`` fits the decoder (or there is none)."""
        parts = []
        if self.encoder_use_memsizer:
            parts.append("encoder")
        if self.decoder_use_memsizer:
            parts.append("decoder")
        for prefix in parts:
            _check_heads_divide_width(args, prefix)
        if self.decoder_use_memsizer:
            for name in ("cross_self_attention", "scale_heads"):
                if getattr(args, name, False):
                    raise ValueError(f"{flag_of(name)} is not supported with Memsizer attention "
                                     "in the decoder")
        if not cross_attention and self.cross_attention != "memsizer":
            raise ValueError("--cross-attention has no meaning for a language model (it has no "
                             "cross-attention)")
        if cross_attention and self.decoder_use_memsizer:
            self.cross_attention_kinds(getattr(args, "decoder_layers", None) or 1)

    def cross_attention_kinds(self, layers: int) -> Tuple[str, ...]:
        """The cross-attention kind of each of ``layers`` decoder layers."""
        kinds = tuple(self.cross_attention.split(","))
        if len(kinds) == 1:
            return kinds * layers
        if len(kinds) != layers:
            raise ValueError(
                f"--cross-attention names {len(kinds)} layers ({','.join(kinds)}) but the "
                f"decoder has {layers} (--decoder-layers): give one kind, or one per layer")
        return kinds

    # -- what the layers get -------------------------------------------------------------------

    def layer_args(self, role: str) -> Dict:
        """The :class:`~memsizer_fairseq.layers.MemsizerLayer` arguments of a layer of ``role``
        (``causal``, ``self``: encoder self-attention, ``cross``)."""
        proj_dim = {"causal": self.causal_proj_dim, "self": self.encoder_proj_dim,
                    "cross": self.cross_proj_dim}[role]
        gain = proj_dim ** 0.5 if self.read_init_gain == "sqrt-k" else self.read_init_gain
        args = dict(proj_dim=proj_dim, q_init_scale=self.q_init_scale,
                    kv_init_scale=self.kv_init_scale, read_init_gain=gain)
        if role == "causal":
            args.update(causal_short_conv=self.causal_short_conv, causal_form=self.causal_form,
                        causal_block_size=self.causal_block_size)
        return args

    def with_values(self, **values) -> "MemsizerConfig":
        return replace(self, **values)


def _check_heads_divide_width(args, prefix: str):
    """Memsizer reads ``num_heads`` and ``head_dim`` like fairseq's attention: heads divide d."""
    heads = getattr(args, f"{prefix}_attention_heads", None)
    width = getattr(args, f"{prefix}_embed_dim", None)
    if heads is None or width is None:
        return
    if not isinstance(heads, int) or heads <= 0:
        raise ValueError(f"--{prefix}-attention-heads must be a positive integer, got {heads!r}")
    if width % heads != 0:
        raise ValueError(
            f"--{prefix}-attention-heads ({heads}) must divide --{prefix}-embed-dim ({width})")


def fill_unset(args, values: Dict):
    """Set each attribute of ``values`` that ``args`` leaves unset (missing or None); idempotent.

    The one rule of every architecture preset: a value given on the command line (or stored in a
    checkpoint, under its current or earlier name) always wins over the preset's.
    """
    for name, value in values.items():
        old = next((o for o, n in RENAMED.items() if n == name), None)
        if getattr(args, name, None) is None and (old is None or getattr(args, old, None) is None):
            setattr(args, name, value)
