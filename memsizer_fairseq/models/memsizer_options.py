"""Memsizer's own hyper-parameters: command-line flags, defaults and validation.

The flags keep the names of the authors' plugin and are declared once, as the fields of
:class:`MemsizerConfig`; :func:`add_memsizer_args` adds them to a parser. Every flag defaults to
``None`` on the command line, so that an omitted flag never overrides what an architecture preset
sets (the authors' plugin had argparse defaults of 128 / 256 slots that silently replaced the
presets' 4 / 32). Architecture functions fill the unset values with :func:`fill_unset`.
"""
import argparse
from dataclasses import asdict, dataclass, field, fields
from typing import Optional, Tuple, Union


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


CROSS_ATTENTION_KINDS = ("memsizer", "softmax")


def cross_attention_mode(value) -> str:
    """``memsizer``, ``softmax``, or one of them per decoder layer, comma-separated."""
    kinds = [kind.strip() for kind in str(value).split(",")]
    if not kinds or any(kind not in CROSS_ATTENTION_KINDS for kind in kinds):
        raise argparse.ArgumentTypeError(
            f"expected {' or '.join(CROSS_ATTENTION_KINDS)}, or one of them per decoder layer "
            f"separated by commas, got {value!r}")
    return ",".join(kinds)


def read_init_gain(value):
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


def flag_of(name: str) -> str:
    """The command-line flag of the attribute ``name``: ``--causal-proj-dim`` for
    ``causal_proj_dim``."""
    return "--" + name.replace("_", "-")


def _switch(help: str):
    """A boolean flag: ``--flag`` alone means true, ``--flag false`` false."""
    return field(default=None, metadata={
        "help": help, "type": str2bool, "nargs": "?", "const": True, "metavar": "BOOL"})


def _flag(parse, metavar: str, help: str):
    """A flag whose value ``parse`` reads (it raises ``argparse.ArgumentTypeError``)."""
    return field(default=None, metadata={"help": help, "type": parse, "metavar": metavar})


@dataclass
class MemsizerConfig:
    """Memsizer's command-line flags, one field a flag (named like the flag's attribute).

    A field's ``metadata`` holds the flag's argparse settings (``help``, the parser ``type``,
    ``metavar`` ...). Every field defaults to ``None``: the architecture presets fill what the
    command line leaves unset.
    """

    use_memsizer: Optional[bool] = _switch(
        "use Memsizer for every attention layer (encoder and decoder)")
    encoder_use_memsizer: Optional[bool] = _switch("use Memsizer for encoder self-attention")
    decoder_use_memsizer: Optional[bool] = _switch(
        "use Memsizer for decoder self-attention and cross-attention")
    causal_proj_dim: Optional[int] = _flag(
        positive_int, "K", "memory slots k of causal (decoder/LM) self-attention")
    cross_proj_dim: Optional[int] = _flag(positive_int, "K", "memory slots k of cross-attention")
    cross_attention: Optional[str] = _flag(
        cross_attention_mode, "MODE",
        "cross-attention of Memsizer decoder layers: memsizer (the paper's), softmax (fairseq's "
        "encoder-decoder attention; the decoder self-attention stays Memsizer), or one per "
        "decoder layer, e.g. memsizer,memsizer,softmax")
    encoder_proj_dim: Optional[int] = _flag(
        positive_int, "K", "memory slots k of encoder self-attention (default: --cross-proj-dim)")
    q_init_scale: Optional[float] = _flag(
        positive_float, "S", "Xavier gain S^(-1/2) for the slot-logit projection Phi")
    kv_init_scale: Optional[float] = _flag(
        positive_float, "S", "Xavier gain S^(-1/2) for the value projections W_l and W_r")
    read_init_gain: Optional[Union[float, str]] = _flag(
        read_init_gain, "G",
        "beyond the paper: initial weight of the LayerNorm of the values r (the paper's: 1); "
        "sqrt-k gives each layer sqrt(its slots), so the read's initial output scale no longer "
        "shrinks with k")
    memsizer_block_size: Optional[int] = _flag(
        positive_int, "C", "block length of the linear-time causal training path")
    causal_short_conv: Optional[int] = _flag(
        short_conv_taps, "K",
        "beyond the paper: a causal depthwise convolution of K taps over the input of causal "
        "Memsizer self-attention, starting as the identity (0, the default: none); its "
        "decoding state is the last K-1 inputs")


def add_memsizer_args(parser):
    """Add Memsizer's flags, the fields of :class:`MemsizerConfig` (no defaults: presets fill
    them)."""
    group = parser.add_argument_group("Memsizer")
    for fld in fields(MemsizerConfig):
        group.add_argument(flag_of(fld.name), default=None, **fld.metadata)


# The paper's machine-translation setting (decoder self k=4, cross k=32, scales 8 and 8).
MT_DEFAULTS = asdict(MemsizerConfig(
    use_memsizer=False,
    encoder_use_memsizer=False,
    decoder_use_memsizer=True,
    causal_proj_dim=4,
    cross_proj_dim=32,
    cross_attention="memsizer",
    encoder_proj_dim=None,  # falls back to cross_proj_dim
    q_init_scale=8.0,
    kv_init_scale=8.0,
    read_init_gain=1.0,
    memsizer_block_size=64,
    causal_short_conv=0,
))

# The paper's language-modelling setting (Memsizer in every layer, k = 32, scales 32 and 1).
LM_DEFAULTS = dict(MT_DEFAULTS, causal_proj_dim=32, q_init_scale=32.0, kv_init_scale=1.0)


def fill_unset(args, values):
    """Set each attribute of ``values`` that ``args`` leaves unset (missing or None); idempotent.

    The one rule of every architecture preset: a value given on the command line (or stored in
    a checkpoint) always wins over the preset's.
    """
    for name, value in values.items():
        if getattr(args, name, None) is None:
            setattr(args, name, value)


def _parsed(flag: str, parse, value):
    """``parse(value)`` for a value that did not come through argparse (a config, a
    checkpoint); its error names the flag."""
    try:
        return parse(value)
    except argparse.ArgumentTypeError as error:
        raise ValueError(f"{flag}: {error}") from None


@dataclass(frozen=True)
class MemsizerOptions:
    """The resolved Memsizer settings a model is built with."""

    encoder_use_memsizer: bool
    decoder_use_memsizer: bool
    causal_proj_dim: int
    cross_proj_dim: int
    encoder_proj_dim: int
    q_init_scale: float
    kv_init_scale: float
    block_size: int
    cross_attention: Tuple[str, ...] = ("memsizer",)
    read_init_gain: Union[float, str] = 1.0
    short_conv: int = 0  # taps of the causal short convolution (0: none)

    @classmethod
    def from_namespace(cls, args) -> "MemsizerOptions":
        """Read (and validate) the options from fairseq's args; errors name the flag at fault."""
        everywhere = bool(getattr(args, "use_memsizer", False))
        options = cls(
            encoder_use_memsizer=everywhere or bool(getattr(args, "encoder_use_memsizer", False)),
            decoder_use_memsizer=everywhere or bool(getattr(args, "decoder_use_memsizer", True)),
            causal_proj_dim=getattr(args, "causal_proj_dim", None),
            cross_proj_dim=getattr(args, "cross_proj_dim", None),
            encoder_proj_dim=(
                getattr(args, "encoder_proj_dim", None) or getattr(args, "cross_proj_dim", None)
            ),
            q_init_scale=getattr(args, "q_init_scale", None),
            kv_init_scale=getattr(args, "kv_init_scale", None),
            block_size=getattr(args, "memsizer_block_size", None) or 64,
            cross_attention=tuple(_parsed(
                "--cross-attention", cross_attention_mode,
                getattr(args, "cross_attention", None) or "memsizer").split(",")),
            read_init_gain=_parsed(
                "--read-init-gain", read_init_gain, getattr(args, "read_init_gain", None) or 1.0),
            short_conv=_parsed("--causal-short-conv", short_conv_taps,
                               getattr(args, "causal_short_conv", None) or 0),
        )
        options.validate()
        return options

    def validate(self):
        checks = {
            "causal_proj_dim": int,
            "cross_proj_dim": int,
            "encoder_proj_dim": int,
            "q_init_scale": float,
            "kv_init_scale": float,
            "block_size": int,
        }
        flag_names = {"block_size": "memsizer_block_size"}
        for name, kind in checks.items():
            value = getattr(self, name)
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
            if ok and kind is int:
                ok = float(value).is_integer()
            if ok and kind is float:
                ok = value != float("inf")
            if not ok:
                flag = flag_of(flag_names.get(name, name))
                noun = "integer" if kind is int else "number"
                raise ValueError(f"{flag} must be a positive {noun}, got {value!r}")

    def cross_attention_of(self, layer: int, layers: int) -> str:
        """The cross-attention kind of decoder layer ``layer`` (0-based) of ``layers``."""
        if len(self.cross_attention) == 1:
            return self.cross_attention[0]
        if len(self.cross_attention) != layers:
            raise ValueError(
                f"--cross-attention names {len(self.cross_attention)} layers "
                f"({','.join(self.cross_attention)}) but the decoder has {layers} "
                f"(--decoder-layers): give one kind, or one per layer")
        return self.cross_attention[layer]

    def attention_kwargs(self, slots: int) -> dict:
        """The initialisation arguments of a :class:`MemsizerAttention` with ``slots`` slots."""
        gain = slots ** 0.5 if self.read_init_gain == "sqrt-k" else self.read_init_gain
        return dict(q_init_scale=self.q_init_scale, kv_init_scale=self.kv_init_scale,
                    read_init_gain=gain)

    def as_dict(self):
        return {f.name: getattr(self, f.name) for f in fields(self)}


def check_heads_divide_width(args, prefix: str):
    """Memsizer reads ``num_heads`` and ``head_dim`` like fairseq's attention: heads must
    divide d."""
    heads = getattr(args, f"{prefix}_attention_heads", None)
    width = getattr(args, f"{prefix}_embed_dim", None)
    if heads is None or width is None:
        return
    if not isinstance(heads, int) or heads <= 0:
        raise ValueError(f"--{prefix}-attention-heads must be a positive integer, got {heads!r}")
    if width % heads != 0:
        raise ValueError(
            f"--{prefix}-attention-heads ({heads}) must divide --{prefix}-embed-dim ({width})"
        )


def reject_unsupported(args, where: str):
    """Transformer options that have no meaning for a Memsizer layer fail loudly."""
    for name in ("cross_self_attention", "scale_heads"):
        if getattr(args, name, False):
            raise ValueError(
                f"{flag_of(name)} is not supported with Memsizer attention in the {where}")


