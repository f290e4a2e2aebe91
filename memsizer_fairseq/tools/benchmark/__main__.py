"""``python -m memsizer_fairseq.tools.benchmark``: Memsizer against the Transformer, side by side.

Measures, interleaved and repeated, with models built through fairseq's registries:
incremental decoding per token against prefix length (memsizer_lm, transformer_lm and the same
network without attention), beam search with fairseq's SequenceGenerator (memsizer_transformer
and transformer), training steps against length (also the authors' quadratic formulation, and
transformer_lm with PyTorch's fused causal scaled_dot_product_attention; on CUDA with fla-core
also Memsizer on flash-linear-attention's kernels), incremental-state bytes per sentence and peak
memory; and beam search at the bound (section beam_bound: the Transformer, Memsizer and Memsizer
with softmax cross-attention, each Memsizer beside the same network without its decoder
attention, one thread, with a profile of where the time goes). Writes benchmark.json,
benchmark.md and PNG plots into --out.
Peak memory is measured in this one process; ``python -m
memsizer_fairseq.tools.benchmark.training_memory`` measures training memory in a fresh process per
configuration.
"""

import json
import logging
import os
import platform
import warnings

import torch
from tqdm import tqdm

from . import arguments, plots, report, runner

FULL = dict(
    prefix_lengths=[16, 64, 256, 1024, 4096, 8192],
    out_lengths=[20, 100, 500],
    beam_batches=[1, 8, 64],
    train_lengths=[512, 1024, 2048, 4096, 8192],
)
QUICK = dict(prefix_lengths=[16, 64], out_lengths=[8], beam_batches=[1, 2], train_lengths=[32, 64])


def machine(device: str) -> str:
    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    return f"{cpu}, {os.cpu_count()} CPU cores, torch {torch.__version__}"


SECTIONS = ("decode", "beam", "train", "beam_bound")
# the beam-bound section's own sizes: 32 sentences, beam 4, d 256, 3+3 layers, vocabulary 8000,
# random weights, one thread; every hypothesis exactly the target length
BOUND = dict(dim=256, layers=3, heads=4, vocab=8000, sentences=32, beam=4, threads=1,
             repeats=3, lengths=[[30, 30], [60, 60], [400, 60], [30, 200]])
QUICK_BOUND = dict(BOUND, dim=32, layers=1, heads=2, vocab=200, sentences=2, repeats=1,
                   lengths=[[4, 4], [8, 8], [24, 4], [4, 12]])
# the target of Memsizer's beam search over its bound (the same network without attention)
BOUND_TARGET = 1.12


def fla_choice(device: str):
    """(whether the memsizer-fla kind is measured, the one-line note saying why not)."""
    if not device.startswith("cuda"):
        return False, ("memsizer-fla (flash-linear-attention's Triton kernels) is not measured: "
                       "it needs a CUDA device (on a CPU the kernels run only under Triton's "
                       "interpreter, far too slow to time)")
    from ...ops.causal.fla import fla_available

    if not fla_available(torch.device(device)):
        return False, ("memsizer-fla (flash-linear-attention's Triton kernels) is not measured: "
                       "fla-core is not installed (pip install fla-core)")
    return True, None
# --quick: tiny sizes, caps on the flags
QUICK_CAPS = dict(dim=64, layers=2, heads=4, vocab=200, repeats=2, steps=4, batch=2)


def parse(argv=None):
    """The options, checked: bad values stop here with a usage error naming the flag."""
    p = arguments.ArgumentParser(
        prog="python -m memsizer_fairseq.tools.benchmark", description=__doc__.splitlines()[0]
    )
    count = arguments.positive_int
    p.add_argument("--out", default="runs/benchmark", help="output folder")
    p.add_argument("--device", default="cpu", type=arguments.device, help="cpu or cuda[:N]")
    p.add_argument("--dtype", default="fp32", choices=sorted(runner.DTYPES))
    p.add_argument("--quick", action="store_true", help="tiny sizes, seconds (CI)")
    p.add_argument("--sections", default=",".join(SECTIONS), type=arguments.names(SECTIONS),
                   help="comma list of " + ",".join(SECTIONS))
    p.add_argument("--repeats", type=count, default=3)
    p.add_argument("--dim", type=count, default=512)
    p.add_argument("--layers", type=count, default=4)
    p.add_argument("--heads", type=count, default=8)
    p.add_argument("--vocab", type=arguments.vocabulary_size, default=1000)
    p.add_argument("--batch", type=count, default=8, help="batch of the decoding-step measurement")
    p.add_argument("--steps", type=count, default=16, help="decoding steps timed per prefix")
    p.add_argument("--beam", type=count, default=4)
    p.add_argument("--src-len", type=count, default=32)
    p.add_argument("--train-batch", type=count, default=1)
    p.add_argument(
        "--authors-max-len",
        type=count,
        default=None,
        help="longest length for the authors' O(T^2 k d) form (default 2048 on CPU, 8192 on GPU)",
    )
    p.add_argument("--threads", type=count, default=torch.get_num_threads())
    for name in FULL:
        p.add_argument("--" + name.replace("_", "-"), type=arguments.positive_int_list)
    p.add_argument("--bound-lengths", type=arguments.length_pairs, default=None,
                   help="source:target lengths of the beam_bound section (default "
                   + ",".join(f"{a}:{b}" for a, b in BOUND["lengths"]) + ")")
    p.add_argument("--bound-repeats", type=count, default=None,
                   help=f"interleaved repeats of the beam_bound section (default "
                   f"{BOUND['repeats']}, 1 with --quick)")
    args = p.parse_args(argv)
    if args.quick:
        for name, cap in QUICK_CAPS.items():
            setattr(args, name, min(getattr(args, name), cap))
    arguments.check_heads(p, args.dim, args.heads, " (after --quick's caps)" if args.quick else "")
    arguments.check_device(
        p, args.device, lambda: torch.cuda.device_count() if torch.cuda.is_available() else 0
    )
    arguments.check_output_folder(p, "--out", args.out)
    return args


def main(argv=None):
    args = parse(argv)
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    sizes = dict(QUICK if args.quick else FULL)
    for name in FULL:
        if getattr(args, name) is not None:
            sizes[name] = getattr(args, name)
    copied = ("device", "dtype", "repeats", "dim", "layers", "heads", "vocab", "batch", "steps",
              "beam", "src_len", "train_batch", "threads", "sections")
    cfg = dict(
        sizes,
        **{name: getattr(args, name) for name in copied},
        authors_max_len=args.authors_max_len or (8192 if args.device.startswith("cuda") else 2048),
    )
    cfg["fla"], fla_note = fla_choice(args.device)
    cfg["bound"] = dict(QUICK_BOUND if args.quick else BOUND)
    if args.bound_lengths:
        cfg["bound"]["lengths"] = args.bound_lengths
    if args.bound_repeats:
        cfg["bound"]["repeats"] = args.bound_repeats
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    total = len(runner.jobs_for(cfg)) * cfg["repeats"] + runner.bound_job_count(cfg)
    with tqdm(total=total, desc="benchmark", unit="run") as progress:
        rows = runner.run(cfg, progress)
    result = {"machine": machine(args.device), "config": cfg, "rows": rows}
    if fla_note and {"decode", "train"} & set(cfg["sections"]):
        result["notes"] = [fla_note]
    if "beam_bound" in cfg["sections"]:
        result["beam_bound"] = {
            "target": BOUND_TARGET,
            "ratios": report.bound_ratios(rows, BOUND_TARGET),
            "profile": runner.profile_beam_bound(cfg, rounds=min(2, cfg["bound"]["repeats"])),
        }
    result["targets"] = report.targets(rows)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "benchmark.json"), "w") as f:
        json.dump(result, f, indent=1)
    text = report.markdown(result)
    with open(os.path.join(args.out, "benchmark.md"), "w") as f:
        f.write(text)
    written = plots.plots(result, args.out)
    print(text)
    print(
        "wrote",
        ", ".join(
            [os.path.join(args.out, "benchmark.json"), os.path.join(args.out, "benchmark.md")]
            + written
        ),
    )


if __name__ == "__main__":
    main()
