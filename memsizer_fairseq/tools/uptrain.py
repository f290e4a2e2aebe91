"""Turn a trained fairseq Transformer checkpoint into a Memsizer checkpoint ("uptraining"):

    python -m memsizer_fairseq.tools.uptrain TRANSFORMER.pt MEMSIZER.pt [--data DATA-BIN] ...

then fine-tune it with the usual command and ``--finetune-from-model MEMSIZER.pt`` (same width and
depth flags as the Transformer, ``--arch`` the printed Memsizer architecture). With ``--data``
(the Transformer's data directory) the converted attention layers first learn to reproduce the
attention they replace (attention transfer, :mod:`.transfer`), everything else frozen.

``transformer*`` checkpoints become ``memsizer_transformer*`` and ``transformer_lm*`` become
``memsizer_lm*`` (``--arch``: another preset of the same model, e.g.
``memsizer_transformer_causal_slots_32``). Every tensor of the Transformer that the Memsizer model
also has is copied unchanged: embeddings, positional embeddings, feed-forward blocks, layer
norms, the output projection and every attention layer that stays softmax attention (by default
the whole encoder).
Each attention layer that becomes Memsizer attention gets:

* ``W_r`` (its values) = ``W_o W_v``, the Transformer's value and output projections composed,
  with bias ``W_o b_v + b_o``. Softmax attention outputs ``W_o sum_j p_j (W_v y_j + b_v) + b_o``;
  Memsizer outputs ``sum_j w_j LN(W_r y_j)`` with no output projection, so this is the one linear
  map that carries a source position's value to the output in both.
* ``Phi`` and ``W_l`` (its slot logits and keys): with ``--attention-init svd`` (the default),
  the best rank-k approximation of the attention's bilinear form
  ``W_q^T W_k / sqrt(d_head) = U S V^T``: ``W_l = S_k^(1/2) V_k^T`` and every head's block of
  ``Phi`` = ``S_k^(1/2) U_k^T`` plus the paper's random initialisation (without it all heads would
  stay identical: the mean of identical softmaxes gets identical gradients); the query and key
  biases have no counterpart and are dropped. With ``paper`` they keep the paper's
  initialisation.
* the two layer norms of Memsizer start at the identity (weight 1, bias 0).
"""
import argparse
import copy
import json
import os
import pickle
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from .toolkit.plugin import (PRESETS, MemsizerAttention, add_memsizer_args, atomic_write,
                             uptrain_arch_map)
from .transfer import (TransferError, TransferSettings, add_transfer_args, load_teacher,
                       transfer_attention, transfer_settings)

ARCH_MAP = uptrain_arch_map()  # fairseq's Transformer architectures -> the Memsizer presets
PRESET_OF_ARCH = {preset.arch: preset for preset in PRESETS}
ATTENTION_INITS = ("svd", "paper")


class ConversionError(ValueError):
    """The checkpoint cannot be converted; the message says why."""


def _as_dict(config) -> Dict:
    return vars(config) if isinstance(config, argparse.Namespace) else config


def _model_args(state, overrides: Dict, memsizer_arch: Optional[str] = None
                ) -> argparse.Namespace:
    """The Memsizer model's args: the Transformer's, the Memsizer arch (``memsizer_arch`` or the
    preset extending the Transformer's), the overrides, then the preset's Memsizer settings
    where the overrides leave them unset."""
    cfg = state.get("cfg")
    model_cfg = cfg.get("model") if isinstance(cfg, dict) else None
    if model_cfg is None:  # pre-hydra checkpoints
        model_cfg = state.get("args")
    if model_cfg is None:
        raise ConversionError("the checkpoint holds no model configuration (cfg.model / args)")
    values = dict(_as_dict(model_cfg))
    for key, value in list(values.items()):
        if isinstance(value, str) and value.startswith("${") and value.endswith("}"):
            group, _, name = value[2:-1].partition(".")  # e.g. ${task.tokens_per_sample}
            source = _as_dict((cfg or {}).get(group) or {})
            if name in source:
                values[key] = source[name]
            else:
                del values[key]
    arch = values.get("arch") or values.get("_name")
    if arch not in ARCH_MAP:
        raise ConversionError(
            f"the checkpoint's --arch is {arch!r}; uptraining converts fairseq's Transformer "
            f"architectures: {', '.join(sorted(ARCH_MAP))}")
    model = PRESET_OF_ARCH[ARCH_MAP[arch]].model
    choices = [name for name, preset in PRESET_OF_ARCH.items() if preset.model == model]
    memsizer_arch = memsizer_arch or ARCH_MAP[arch]
    if memsizer_arch not in choices:
        raise ConversionError(f"--arch {memsizer_arch}: a checkpoint of {arch} becomes one of "
                              f"{', '.join(choices)}")
    values.update(arch=memsizer_arch, _name=memsizer_arch)
    values.update({k: v for k, v in overrides.items() if v is not None})
    args = argparse.Namespace(**values)
    PRESET_OF_ARCH[memsizer_arch].fill(args)
    return args


def _dictionary(size: int, pad_index: int = 1):
    """A fairseq dictionary of ``size`` entries (only its length and pad index shape a model)."""
    from fairseq.data import Dictionary

    dictionary = Dictionary()
    if dictionary.pad() != pad_index:
        raise ConversionError(f"unexpected padding index {pad_index}")
    for i in range(size - len(dictionary)):
        dictionary.add_symbol(f"<uptrain-placeholder-{i}>")
    return dictionary


def build_memsizer_model(args: argparse.Namespace, src_size: int, tgt_size: int, seed: int):
    """The Memsizer model with the paper's initialisation (seeded) for ``args``."""
    import memsizer_fairseq  # noqa: F401  (registers the architectures)
    from fairseq.models import ARCH_MODEL_REGISTRY

    src_dict, tgt_dict = _dictionary(src_size), _dictionary(tgt_size)
    task = argparse.Namespace(source_dictionary=src_dict, target_dictionary=tgt_dict,
                              dictionary=tgt_dict)
    torch.manual_seed(seed)
    return ARCH_MODEL_REGISTRY[args.arch].build_model(args, task)


def converted_layer(key: str, converted) -> Optional[str]:
    """The converted attention layer (a module name in ``converted``) that holds the tensor
    ``key`` (``...self_attn.q_proj.weight``, ``...self_attn.short_conv``), or None."""
    return next((prefix for prefix in converted if key.startswith(prefix + ".")), None)


def _attention_inits(old: Dict[str, torch.Tensor], prefix: str, attention, mode: str
                     ) -> Dict[str, torch.Tensor]:
    """Memsizer parameters of one converted attention layer (see the module docstring)."""
    p = prefix + "."
    w_q, w_k = old[p + "q_proj.weight"].double(), old[p + "k_proj.weight"].double()
    w_v, b_v = old[p + "v_proj.weight"].double(), old[p + "v_proj.bias"].double()
    w_o, b_o = old[p + "out_proj.weight"].double(), old[p + "out_proj.bias"].double()
    new = {name: tensor.detach().clone() for name, tensor in attention.state_dict().items()}
    dtype = new["r_proj.weight"].dtype
    new["r_proj.weight"] = (w_o @ w_v).to(dtype)
    new["r_proj.bias"] = (w_o @ b_v + b_o).to(dtype)
    if mode == "svd":
        k, heads = attention.proj_dim, attention.num_heads
        head_dim = w_q.shape[0] // heads
        bilinear = w_q.t() @ w_k / head_dim ** 0.5  # d_query x d_key
        u, s, vh = torch.linalg.svd(bilinear, full_matrices=False)
        rank = min(k, s.numel())
        root = s[:rank].sqrt()
        phi = torch.zeros(k, w_q.shape[1], dtype=torch.float64)
        w_l = torch.zeros(k, w_k.shape[1], dtype=torch.float64)
        phi[:rank] = root[:, None] * u[:, :rank].t()
        w_l[:rank] = root[:, None] * vh[:rank]
        new["q_proj.weight"] = (new["q_proj.weight"].double() + phi.repeat(heads, 1)).to(dtype)
        new["l_proj.weight"] = w_l.to(dtype)
    return {p + name: tensor for name, tensor in new.items()}


def convert_state(state: Dict, overrides: Optional[Dict] = None, attention_init: str = "svd",
                  seed: int = 1, arch: Optional[str] = None
                  ) -> Tuple[Dict, Dict[str, List[str]]]:
    """The converted checkpoint and a report: ``copied``, ``initialised`` and ``dropped`` keys;
    ``arch``: the Memsizer preset to write (see :func:`_model_args`)."""
    if attention_init not in ATTENTION_INITS:
        raise ConversionError(f"--attention-init must be one of {ATTENTION_INITS}")
    args = _model_args(state, overrides or {}, arch)
    old = state["model"]
    is_lm = args.arch.startswith("memsizer_lm")
    if is_lm and "decoder.embed_tokens.weight" not in old:
        raise ConversionError(
            "only language models with a plain embedding table can be converted "
            "(adaptive input / character embeddings: not supported)")
    sizes = [old[f"{side}.embed_tokens.weight"].shape[0]
             for side in (("decoder", "decoder") if is_lm else ("encoder", "decoder"))]
    normalize_before = getattr(args, "decoder_normalize_before", None)
    model = build_memsizer_model(args, *sizes, seed=seed)
    if is_lm and normalize_before is False:
        # fairseq's base_lm_architecture (which every memsizer_lm preset runs) forces pre-norm
        raise ConversionError(
            "the checkpoint's language model is post-norm (decoder_normalize_before = False, "
            "fairseq's default for a bare --arch transformer_lm); memsizer_lm is pre-norm, like "
            "fairseq's LM presets: train the Transformer with --decoder-normalize-before")
    target = model.state_dict()
    modules = dict(model.named_modules())
    converted = {name for name, module in modules.items() if isinstance(module, MemsizerAttention)}
    new_model: Dict[str, torch.Tensor] = {}
    report: Dict[str, List[str]] = {"copied": [], "initialised": [], "dropped": []}
    for prefix in sorted(converted):
        if prefix + ".k_proj.weight" not in old:
            raise ConversionError(f"the checkpoint has no attention layer {prefix}")
        new_model.update(_attention_inits(old, prefix, modules[prefix], attention_init))
    for key, tensor in target.items():
        if converted_layer(key, converted) is not None:
            report["initialised"].append(key)
        elif key not in old and key.endswith("_float_tensor"):  # sinusoidal positions' buffer
            new_model[key] = tensor
        elif key not in old:
            raise ConversionError(f"the checkpoint lacks {key} (different architecture flags?)")
        elif old[key].shape != tensor.shape:
            raise ConversionError(
                f"{key}: checkpoint shape {tuple(old[key].shape)}, model {tuple(tensor.shape)}")
        else:
            new_model[key] = old[key]
            report["copied"].append(key)
    copied = set(report["copied"])
    report["dropped"] = sorted(k for k in old if k not in copied)
    unexpected = [k for k in report["dropped"] if converted_layer(k, converted) is None]
    if unexpected:
        raise ConversionError(f"checkpoint tensors with no place in the Memsizer model: "
                              f"{', '.join(unexpected[:5])}")

    new_state = {key: value for key, value in state.items()
                 if key not in ("model", "last_optimizer_state", "args")}
    new_state.update(model={k: new_model[k] for k in target}, last_optimizer_state=None,
                     args=None)
    new_state["cfg"] = cfg = copy.copy(state.get("cfg") or {})
    cfg["model"] = args
    new_state["extra_state"] = {key: value for key, value in
                                (new_state.get("extra_state") or {}).items() if key != "best"}
    # fairseq reads the criterion / optimizer names from the last entry; the count starts over
    history = state.get("optimizer_history") or [{}]
    new_state["optimizer_history"] = [dict(history[-1], num_updates=0, lr_scheduler_state={})]
    return new_state, report


def load_checkpoint(path: str) -> Dict:
    """A fairseq checkpoint (a dict with ``model`` and ``cfg`` or ``args``), loaded with torch's
    safe unpickler; anything else is refused with a ConversionError naming the file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no checkpoint at {path}")
    import memsizer_fairseq  # noqa: F401  (the safe loader's allowlist)

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ConversionError(
            f"{path} is not a fairseq checkpoint: torch's safe loader refused it (not a torch "
            "file, or it holds objects a fairseq checkpoint does not)") from None
    except Exception as error:  # a truncated file, ...
        reason = (str(error).strip() or type(error).__name__).splitlines()[0].split(". ")[0]
        raise ConversionError(f"{path} is not a readable checkpoint ({reason})") from None
    if not (isinstance(state, dict) and isinstance(state.get("model"), dict)
            and (state.get("cfg") is not None or state.get("args") is not None)):
        raise ConversionError(f"{path} is not a fairseq checkpoint (it has no model parameters "
                              "and configuration: 'model' and 'cfg' / 'args')")
    return state


def convert_checkpoint(source: str, target: str, overrides: Optional[Dict] = None,
                       attention_init: str = "svd", seed: int = 1, data: Optional[str] = None,
                       transfer: Optional[TransferSettings] = None, log=print,
                       arch: Optional[str] = None) -> Dict[str, List[str]]:
    """Convert ``source`` into ``target`` (with ``transfer`` settings: first attention transfer
    from the Transformer of ``source``, on ``data``); returns the report of
    :func:`convert_state`, with ``arch`` and, after a transfer, its
    :class:`~.transfer.TransferResult` under ``transfer``."""
    from fairseq import checkpoint_utils

    new_state, report = convert_state(load_checkpoint(source), overrides, attention_init, seed,
                                      arch)
    if transfer is not None:
        teacher, task = load_teacher(source, data)
        student = task.build_model(new_state["cfg"]["model"])
        student.load_state_dict(new_state["model"], strict=True)
        report["transfer"] = transfer_attention(teacher, student, task, transfer, log)
        new_state["model"] = {key: tensor.detach().clone()
                              for key, tensor in student.state_dict().items()}
    os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
    # a killed conversion leaves no truncated target
    atomic_write(target, lambda path: checkpoint_utils.torch_persistent_save(new_state, path))
    report["arch"] = [new_state["cfg"]["model"].arch]
    return report


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m memsizer_fairseq.tools.uptrain",
        description="Convert a fairseq transformer / transformer_lm checkpoint to Memsizer.")
    parser.add_argument("source", help="the trained Transformer checkpoint")
    parser.add_argument("target", help="where to write the Memsizer checkpoint")
    parser.add_argument("--attention-init", choices=ATTENTION_INITS, default="svd",
                        help="Phi and W_l from the attention's bilinear form (svd) or the "
                             "paper's random initialisation (paper)")
    parser.add_argument("--seed", type=int, default=1,
                        help="seed of the random initialisation and of the transfer's batches")
    parser.add_argument("--arch", metavar="ARCH",
                        help="the Memsizer preset to write (default: the one extending the "
                             "checkpoint's, e.g. memsizer_transformer for transformer); its "
                             "settings fill the Memsizer flags not given")
    parser.add_argument("--summary", metavar="JSON",
                        help="also write the conversion (and the transfer's errors) as JSON")
    add_transfer_args(parser)
    own = {action.dest for action in parser._actions}  # the rest: the model's overrides
    add_memsizer_args(parser)
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if k not in own}
    try:
        settings = transfer_settings(args, args.seed)  # checked before anything is read
        report = convert_checkpoint(args.source, args.target, overrides, args.attention_init,
                                    args.seed, args.data, settings, arch=args.arch)
    except (ConversionError, TransferError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    arch = report["arch"][0]
    print(f"wrote {args.target}: --arch {arch}; {len(report['copied'])} tensors "
          f"copied, {len(report['initialised'])} Memsizer tensors initialised "
          f"({args.attention_init}), {len(report['dropped'])} attention tensors dropped")
    summary = {"arch": arch, "transfer_updates": 0, "seconds": 0.0, "layers": {}}
    if "transfer" in report:
        result = report["transfer"]
        print(f"attention transfer: {result.updates} updates in {result.seconds:.0f} s; "
              "relative output error on the validation split, before -> after:")
        for name, before in result.before.items():
            print(f"  {name}: {before:.3f} -> {result.after[name]:.3f}")
        summary.update(result.summary())
    if args.summary:  # the transfer's updates, time and each layer's errors before and after
        with open(args.summary, "w") as f:
            json.dump(summary, f, indent=1)
    print(f"fine-tune with: fairseq-train ... --user-dir memsizer_fairseq "
          f"--arch {arch} --finetune-from-model {args.target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
