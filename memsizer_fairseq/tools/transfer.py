"""Attention transfer: train each converted Memsizer attention layer to reproduce the softmax
attention it replaces, on the trained Transformer's own hidden states (as LoLCATs, Zhang et al.
2024, and Hedgehog, Zhang et al. 2024, linearize trained Transformers).

The Transformer (the teacher) runs frozen, in evaluation mode, over batches of a data
directory's training split; forward hooks record what each of its attention layers reads
(query, key, padding mask) and writes (its output, after the output projection). Each Memsizer
layer of the converted model reads the same inputs, and only the Memsizer layers' own parameters
(``Phi``, ``W_l``, ``W_r`` and their biases, the two LayerNorms, a short convolution if any)
learn, by Adam, to minimise the mean over layers of

    || y_memsizer - y_softmax ||^2 / || y_softmax ||^2     (over the real query positions)

Every other tensor of the converted model stays bit-identical. The layers learn independently
(each on the teacher's hidden states, not on the outputs of the Memsizer layers below it), so all
of them learn at once from one teacher pass per batch: far cheaper than fine-tuning the whole
network, and every layer starts fine-tuning close to what the network expects. The relative
error ``||y_memsizer - y_softmax|| / ||y_softmax||`` of every layer is measured on the first
batches of the validation split before and after.
"""
import argparse
import functools
import math
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import torch
from torch import Tensor, nn

from .toolkit.plugin import MemsizerAttention

Pairs = Dict[str, Tuple[nn.Module, MemsizerAttention]]  # layer -> (teacher's, student's)
Calls = Dict[str, Tuple[Dict, Tensor]]  # layer -> (inputs of the teacher's last call, output)


class TransferError(ValueError):
    """The data or the models do not allow attention transfer; the message says why."""


@dataclass
class TransferSettings:
    updates: int = 200
    lr: float = 1e-3
    max_tokens: int = 4096
    seed: int = 1
    valid_batches: int = 8  # batches of the validation split the errors are measured on


@dataclass
class TransferResult:
    updates: int
    seconds: float
    before: Dict[str, float] = field(default_factory=dict)  # layer -> relative error
    after: Dict[str, float] = field(default_factory=dict)

    def summary(self) -> Dict:
        return {"transfer_updates": self.updates, "seconds": round(self.seconds, 3),
                "layers": {name: {"before": self.before[name], "after": self.after.get(name)}
                           for name in self.before}}


def load_teacher(checkpoint: str, data: str):
    """The Transformer of ``checkpoint`` in evaluation mode and its task, reading ``data``."""
    from fairseq import checkpoint_utils

    models, _, task = checkpoint_utils.load_model_ensemble_and_task(
        [checkpoint], arg_overrides={"data": data})
    teacher = models[0].eval()
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    return teacher, task


def paired_layers(teacher: nn.Module, student: nn.Module) -> Pairs:
    """Each Memsizer attention layer of ``student`` with the teacher's layer at its place."""
    teacher_modules = dict(teacher.named_modules())
    pairs = {}
    for name, module in student.named_modules():
        if isinstance(module, MemsizerAttention):
            if name not in teacher_modules:
                raise TransferError(f"the Transformer has no attention layer {name}")
            pairs[name] = (teacher_modules[name], module)
    if not pairs:
        raise TransferError("the converted model has no Memsizer attention layer")
    return pairs


def batches(task, split: str, settings: TransferSettings, max_positions,
            shuffle: bool) -> Iterator[Dict]:
    """Batches of ``split`` without end (epoch after epoch) when shuffled, else one pass."""
    if split not in task.datasets:
        task.load_dataset(split, combine=False, epoch=1)
    epoch = 1
    while True:
        iterator = task.get_batch_iterator(
            task.dataset(split), max_tokens=settings.max_tokens, max_positions=max_positions,
            ignore_invalid_inputs=True, seed=settings.seed, epoch=epoch,
            disable_iterator_cache=True).next_epoch_itr(shuffle=shuffle)
        yield from (sample for sample in iterator if sample)
        if not shuffle:
            return
        epoch += 1


def _record(calls: Calls, name: str, module, args, kwargs, output):
    """A teacher layer's forward hook: its query, key, key padding mask, attention mask and
    output into ``calls[name]``."""
    given = dict(zip(("query", "key", "value", "key_padding_mask"), args), **kwargs)
    inputs = {k: given.get(k) for k in ("query", "key", "key_padding_mask", "attn_mask")}
    calls[name] = (inputs, output[0])


def layer_errors(teacher, pairs: Pairs, calls: Calls, sample: Dict, pad: int
                 ) -> Dict[str, Tuple[Tensor, Tensor]]:
    """For each layer: ``(sum of squared differences, sum of squared teacher outputs)`` over the
    real query positions of ``sample`` (a graph to the Memsizer parameters when enabled)."""
    with torch.no_grad():
        teacher(**sample["net_input"])
    net_input, sums = sample["net_input"], {}
    for name, (_, layer) in pairs.items():
        inputs, target = calls[name]
        key = inputs["key"]
        output, _ = layer(inputs["query"], key, key, key_padding_mask=inputs["key_padding_mask"],
                          attn_mask=inputs["attn_mask"])
        # T x B, True at the real positions of the sequence that reads in this layer
        decoder = name.startswith("decoder.") and "prev_output_tokens" in net_input
        keep = net_input["prev_output_tokens" if decoder else "src_tokens"].ne(pad).t()
        keep = keep.unsqueeze(-1).to(output.dtype)
        sums[name] = (((output - target) * keep).pow(2).sum(), (target * keep).pow(2).sum())
    return sums


def relative_errors(teacher, pairs: Pairs, calls: Calls, samples: List[Dict], pad: int
                    ) -> Dict[str, float]:
    totals = {name: [0.0, 0.0] for name in pairs}
    with torch.no_grad():
        for sample in samples:
            for name, (diff, ref) in layer_errors(teacher, pairs, calls, sample, pad).items():
                totals[name][0] += float(diff)
                totals[name][1] += float(ref)
    return {name: math.sqrt(diff / max(ref, 1e-30)) for name, (diff, ref) in totals.items()}


def transfer_attention(teacher, student, task, settings: TransferSettings,
                       log: Callable[[str], None] = print) -> TransferResult:
    """Train the Memsizer layers of ``student`` on ``task``'s training split to reproduce the
    attention outputs of ``teacher`` (both fairseq models over the same dictionaries)."""
    from fairseq import utils

    pairs = paired_layers(teacher, student)
    parameters = [p for _, (_, layer) in sorted(pairs.items()) for p in layer.parameters()]
    frozen = [p for p in student.parameters() if all(p is not q for q in parameters)]
    for parameter in frozen:
        parameter.requires_grad_(False)
    student.eval()  # no dropout: the layers learn the teacher's evaluation-mode outputs
    pad = task.target_dictionary.pad()
    max_positions = utils.resolve_max_positions(task.max_positions(), teacher.max_positions(),
                                                student.max_positions())
    calls: Calls = {}
    handles = [teacher_layer.register_forward_hook(functools.partial(_record, calls, name),
                                                   with_kwargs=True)
               for name, (teacher_layer, _) in pairs.items()]
    started = time.perf_counter()
    try:
        held_out = list(batches(task, "valid", settings, max_positions, shuffle=False))
        held_out = held_out[:settings.valid_batches]
        result = TransferResult(settings.updates, 0.0)
        result.before = relative_errors(teacher, pairs, calls, held_out, pad)
        optimizer = torch.optim.Adam(parameters, lr=settings.lr, betas=(0.9, 0.98))
        tenth = max(1, settings.updates // 10)  # the warm-up, and how often the loss is logged
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(
            (step + 1) / tenth, 0.5 * (1 + math.cos(math.pi * step / settings.updates))))
        torch.manual_seed(settings.seed)
        training = batches(task, "train", settings, max_positions, shuffle=True)
        for update in range(1, settings.updates + 1):
            sums = layer_errors(teacher, pairs, calls, next(training), pad)
            loss = torch.stack([diff / ref.clamp(min=1e-30) for diff, ref in sums.values()]).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            if update % tenth == 0 or update == settings.updates:
                log(f"transfer update {update}/{settings.updates}: mean relative squared error "
                    f"{loss.item():.4f}")
        result.after = relative_errors(teacher, pairs, calls, held_out, pad)
    finally:
        for handle in handles:
            handle.remove()
        for parameter in frozen:
            parameter.requires_grad_(True)
    result.seconds = time.perf_counter() - started
    return result


def add_transfer_args(parser: argparse.ArgumentParser):
    group = parser.add_argument_group("attention transfer (with --data)")
    group.add_argument("--data", metavar="DATA-BIN",
                       help="the Transformer's data directory (fairseq-preprocess output): "
                            "train the Memsizer layers on its training split to reproduce the "
                            "attention they replace before writing the checkpoint")
    group.add_argument("--transfer-updates", type=int, default=None, metavar="N",
                       help=f"attention-transfer updates (default {TransferSettings.updates})")
    group.add_argument("--transfer-lr", type=float, default=TransferSettings.lr, metavar="LR",
                       help="Adam learning rate of the transfer (warm-up, cosine decay)")
    group.add_argument("--transfer-max-tokens", type=int, default=TransferSettings.max_tokens,
                       metavar="N", help="tokens per transfer batch")


def transfer_settings(args: argparse.Namespace, seed: int) -> Optional[TransferSettings]:
    """The settings the flags ask for (None without --data); bad values name their flag, and
    ``--data`` must be a fairseq data directory with a binarized training split."""
    if args.data is None:
        if args.transfer_updates is not None:
            raise TransferError("--transfer-updates needs --data (the training data)")
        return None
    updates = TransferSettings.updates if args.transfer_updates is None else args.transfer_updates
    settings = TransferSettings(updates=updates, lr=args.transfer_lr,
                                max_tokens=args.transfer_max_tokens, seed=seed)
    for flag, value in (("--transfer-updates", settings.updates), ("--transfer-lr", settings.lr),
                        ("--transfer-max-tokens", settings.max_tokens)):
        if not value > 0:
            raise TransferError(f"{flag} must be positive, got {value}")
    if not os.path.isdir(args.data):
        raise TransferError(f"--data {args.data}: no such directory")
    if not any(name.startswith("train") and name.endswith(".bin")
               for name in os.listdir(args.data)):
        raise TransferError(f"--data {args.data}: no binarized training split (train*.bin; "
                            "the output folder of fairseq-preprocess)")
    return settings
