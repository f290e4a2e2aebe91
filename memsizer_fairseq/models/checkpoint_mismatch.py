"""A clear error when a checkpoint does not fit the model it is loaded into.

* **Checkpoint / architecture mismatch.** Loading a checkpoint whose parameters do not fit the
  model (``--restore-file`` or ``--finetune-from-model`` of a plain ``transformer`` checkpoint
  into ``--arch memsizer_transformer``, a Memsizer checkpoint with other slot counts ...) raises
  :class:`CheckpointMismatchError` naming the layers that hold softmax attention in the
  checkpoint but Memsizer attention in the model (or the reverse), the missing and unexpected
  parameters, and the flag behind each shape difference (``--causal-proj-dim`` ...). fairseq's
  trainer re-raises it as "Cannot load model parameters from checkpoint ...; please ensure that
  the architectures match", with this message as the cause just above.

What fairseq already checks, and the tests pin down (``tests/compat/test_reliability.py``): invalid
Memsizer flags fail at parse time naming the flag (:mod:`memsizer_fairseq.config`); sources longer
than ``--max-source-positions`` are refused before training or decoding with fairseq's message
"Size of sample #N is invalid ... skip this example with --skip-invalid-size-inputs-valid-test",
skipped with that flag, or cut with ``--truncate-source``; empty lines become one-token (``</s>``)
sentences, for which the Memsizer scalings ``n^(-1/2)``, ``t^(-1/2)`` stay finite.
"""
from typing import Dict, List, Optional, Tuple

from .attention import MemsizerAttention

_SOFTMAX_ATTENTION = ("k_proj", "v_proj", "out_proj")
_MEMSIZER_ONLY = ("l_proj", "r_proj", "l_norm", "r_norm")
_SHOWN = 4


class CheckpointMismatchError(RuntimeError):
    """A checkpoint's parameters do not fit the model it is loaded into."""


def _slot_flag(module: MemsizerAttention) -> str:
    if module.causal:
        return "--causal-proj-dim"
    if module.encoder_decoder_attention:
        return "--cross-proj-dim"
    return "--encoder-proj-dim (default: --cross-proj-dim)"


def _owner(key: str, names: List[str]) -> Optional[str]:
    """The longest module name in ``names`` that ``key`` belongs to."""
    best = None
    for name in names:
        if key.startswith(name + ".") and (best is None or len(name) > len(best)):
            best = name
    return best


def _attention_names(model) -> Tuple[Dict[str, MemsizerAttention], List[str]]:
    memsizer, softmax = {}, []
    for name, module in model.named_modules():
        if isinstance(module, MemsizerAttention):
            memsizer[name] = module
        elif type(module).__name__ == "MultiheadAttention":
            softmax.append(name)
    return memsizer, softmax


def _module_of(key: str) -> str:
    """``k_proj`` for ``decoder.layers.0.self_attn.k_proj.weight``."""
    parts = key.split(".")
    return parts[-2] if len(parts) >= 2 else ""


def _layers_holding(keys, submodules, layers: List[str]) -> List[str]:
    """The names in ``layers`` that own a key in ``keys`` of one of ``submodules`` (sorted)."""
    owners = {_owner(key, layers) for key in keys if _module_of(key) in submodules}
    return sorted(owner for owner in owners if owner is not None)


def _sample(keys, count=_SHOWN) -> str:
    keys = list(keys)
    shown = ", ".join(keys[:count])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > count else "")


def _arch(model) -> str:
    for source in (getattr(model, "args", None), getattr(model, "cfg", None)):
        arch = getattr(source, "arch", None) or getattr(source, "_name", None)
        if isinstance(arch, str):
            return arch
    return type(model).__name__


def describe_mismatch(model, state_dict) -> Optional[str]:
    """A readable account of why ``state_dict`` does not fit ``model``; None if it does."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    resized = [
        k for k in own
        if k in state_dict and hasattr(state_dict[k], "shape")
        and tuple(state_dict[k].shape) != tuple(own[k].shape)
    ]
    if not (missing or unexpected or resized):
        return None
    memsizer, softmax = _attention_names(model)
    memsizer_names = list(memsizer)

    lines = [f"The checkpoint does not fit this model (--arch {_arch(model)})."]
    # Layers with softmax attention in the checkpoint where the model has Memsizer attention.
    softmax_in_checkpoint = _layers_holding(unexpected, _SOFTMAX_ATTENTION, memsizer_names)
    if softmax_in_checkpoint:
        lines.append(
            f"{len(softmax_in_checkpoint)} attention layer(s) hold softmax attention "
            f"(k_proj/v_proj/out_proj) in the checkpoint where this model has Memsizer "
            f"attention: {_sample(softmax_in_checkpoint)}. The checkpoint was trained without "
            "Memsizer in those layers (e.g. --arch transformer, --decoder-use-memsizer false, "
            "or without --encoder-use-memsizer): Memsizer layers cannot be loaded from it. Load "
            "it with the architecture and flags it was trained with."
        )
    # Layers with Memsizer attention in the checkpoint where the model has softmax attention.
    memsizer_in_checkpoint = _layers_holding(unexpected, _MEMSIZER_ONLY, softmax)
    if memsizer_in_checkpoint:
        lines.append(
            f"{len(memsizer_in_checkpoint)} attention layer(s) hold Memsizer attention in the "
            f"checkpoint where this model has softmax attention: {_sample(memsizer_in_checkpoint)}"
            ". Check --encoder-use-memsizer / --decoder-use-memsizer / --use-memsizer against "
            "the checkpoint's."
        )
    missing_memsizer = [k for k in missing if _owner(k, memsizer_names) is not None]
    if missing_memsizer:
        lines.append(
            f"Missing Memsizer parameters ({len(missing_memsizer)}): {_sample(missing_memsizer)}."
        )
    missing_other = [k for k in missing if k not in missing_memsizer]
    if missing_other:
        lines.append(f"Missing parameters ({len(missing_other)}): {_sample(missing_other)}.")
    if unexpected:
        lines.append(
            f"Unexpected parameters in the checkpoint ({len(unexpected)}): {_sample(unexpected)}."
        )
    # Shapes inside layers already reported as softmax-vs-Memsizer say nothing more.
    reported = softmax_in_checkpoint + memsizer_in_checkpoint
    resized = [k for k in resized if _owner(k, reported) is None]
    for key in resized[:_SHOWN]:
        owner = _owner(key, memsizer_names)
        theirs, ours = tuple(state_dict[key].shape), tuple(own[key].shape)
        hint = ""
        slot_rows = _module_of(key) in ("q_proj", "l_proj", "l_norm")  # first dim: (heads x) k
        if owner is not None and slot_rows and theirs[:1] != ours[:1]:
            module = memsizer[owner]
            hint = f" (Memsizer slots k = {module.proj_dim}: {_slot_flag(module)}"
            if key.endswith("q_proj.weight") or key.endswith("q_proj.bias"):
                hint += f"; heads x slots = {module.num_heads} x {module.proj_dim}"
            hint += ")"
        lines.append(f"Shape of {key}: checkpoint {theirs}, model {ours}{hint}.")
    if len(resized) > _SHOWN:
        lines.append(f"... {len(resized)} parameters differ in shape in all.")
    return "\n".join(lines)


class ExplainsCheckpointMismatch:
    """Mixed into the plugin's models, before fairseq's model class: ``load_state_dict`` turns
    PyTorch's list of missing and unexpected keys into :func:`describe_mismatch`'s message."""

    def load_state_dict(self, state_dict, strict=True, model_cfg=None, args=None):
        try:
            return super().load_state_dict(state_dict, strict=strict, model_cfg=model_cfg,
                                           args=args)
        except RuntimeError as error:
            if isinstance(error, CheckpointMismatchError):
                raise
            message = describe_mismatch(self, state_dict)
            if message is None:
                raise
            raise CheckpointMismatchError(message) from error
