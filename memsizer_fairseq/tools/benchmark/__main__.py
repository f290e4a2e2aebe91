"""``python -m memsizer_fairseq.tools.benchmark``: Memsizer against the Transformer, side by side.

Sections, each measured interleaved and repeated on models built through fairseq's registries
(the kinds: :func:`.runner.jobs_for`; what they show: docs/benchmark/README.md): ``decode``, the
incremental decoding step against prefix length; ``beam``, fairseq's SequenceGenerator;
``train``, training steps against length; ``beam_bound``, beam search beside each Memsizer's bound
(the same network without its decoder attention, one thread, with a profile). Writes
benchmark.json, benchmark.md and PNG plots into --out. Peak memory is measured in this one
process; ``python -m memsizer_fairseq.tools.benchmark.training_memory`` measures training memory
in a fresh process per configuration.
"""

import json
import logging
import os
import platform
import warnings

import torch
from tqdm import tqdm

from . import arguments, plots, report, runner

FULL = dict(prefix_lengths=[16, 64, 256, 1024, 4096, 8192], out_lengths=[20, 100, 500],
            beam_batches=[1, 8, 64], train_lengths=[512, 1024, 2048, 4096, 8192])
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
    p = arguments.ArgumentParser(prog="python -m memsizer_fairseq.tools.benchmark",
                                 description=__doc__.splitlines()[0])
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
    p.add_argument("--authors-max-len", type=count, default=None, help="longest length for the "
                   "authors' O(T^2 k d) form (default 2048 on CPU, 8192 on GPU)")
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
    arguments.check_device(p, args.device, arguments.cuda_device_count)
    arguments.check_output(p, "--out", args.out, folder=True)
    return args


def main(argv=None):
    args = parse(argv)
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    sizes = QUICK if args.quick else FULL
    copied = ("device", "dtype", "repeats", "dim", "layers", "heads", "vocab", "batch", "steps",
              "beam", "src_len", "train_batch", "threads", "sections")
    cfg = {name: sizes[name] if getattr(args, name) is None else getattr(args, name)
           for name in FULL}
    cfg.update({name: getattr(args, name) for name in copied})
    cuda = args.device.startswith("cuda")
    cfg["authors_max_len"] = args.authors_max_len or (8192 if cuda else 2048)
    cfg["fla"], fla_note = fla_choice(args.device)
    cfg["bound"] = dict(QUICK_BOUND if args.quick else BOUND)
    cfg["bound"].update(lengths=args.bound_lengths or cfg["bound"]["lengths"],
                        repeats=args.bound_repeats or cfg["bound"]["repeats"])
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    total = len(runner.jobs_for(cfg)) * cfg["repeats"] + runner.bound_job_count(cfg)
    with tqdm(total=total, desc="benchmark", unit="run") as progress:
        rows = runner.run(cfg, progress)
    result = {"machine": machine(args.device), "config": cfg, "rows": rows}
    if fla_note and {"decode", "train"} & set(cfg["sections"]):
        result["notes"] = [fla_note]
    if "beam_bound" in cfg["sections"]:
        ratios = report.bound_ratios(rows, BOUND_TARGET)
        profile = runner.profile_beam_bound(cfg, rounds=min(2, cfg["bound"]["repeats"]))
        result["beam_bound"] = {"target": BOUND_TARGET, "ratios": ratios, "profile": profile}
    result["targets"] = report.targets(rows)
    os.makedirs(args.out, exist_ok=True)
    paths = [os.path.join(args.out, name) for name in ("benchmark.json", "benchmark.md")]
    with open(paths[0], "w") as f:
        json.dump(result, f, indent=1)
    text = report.markdown(result)
    with open(paths[1], "w") as f:
        f.write(text)
    paths += plots.plots(result, args.out)
    print(text)
    print("wrote", ", ".join(paths))


if __name__ == "__main__":
    main()
