"""``python -m memsizer_fairseq.tools.benchmark.training_memory``: a language model's
training-step time and peak memory per sequence length, one fresh process per configuration.

Not a test. The same model, built as ``fairseq-train`` builds it (:func:`.runner.lm_model`), in
kinds that differ only in the attention (:data:`.runner.LM_KINDS`; commands and results:
docs/benchmark/README.md).

Every (kind, length) runs in a fresh child process, forked from this driver once it has imported
torch and fairseq (the driver runs no tensor operation and does not initialise CUDA), so that
peak memory is honest: on CPU the growth of the child's peak resident set over its resident set
just before the first training step; on CUDA ``torch.cuda.max_memory_allocated`` over the memory
allocated then. The children are interleaved -- all kinds of one length, then the next length,
and with ``--rounds 2`` a second pass in the opposite order. A training step is forward,
cross-entropy over the vocabulary, backward and an Adam update; its time is the median over the
timed steps (after the warm-up steps) of all rounds.
"""
import argparse
import contextlib
import gc
import json
import logging
import multiprocessing
import sys
import time
import warnings
from typing import Callable, Dict, List, Optional, Sequence

import torch

from . import arguments, measure, report, runner

# the kinds measured by default; --kinds also takes memsizer-fla (flash-linear-attention's
# kernels: CUDA with fla-core) and memsizer-chunk (PyTorch's chunked read at every length)
KINDS = tuple(k for k in report.TRAIN_KINDS if k not in runner.FLA_KINDS + ("memsizer-chunk",))
KIND_CHOICES = tuple(report.TRAIN_KINDS)
# --quick: these defaults instead (flags given on the command line still win)
QUICK = dict(lengths=[256, 512], dim=64, layers=1, heads=2, vocab=256, steps=1, warmup=1,
             rounds=1)


def train_steps(cfg: Dict) -> Dict:
    """Train one configuration (``cfg``: the options with ``kind`` and ``length``) in this
    process; returns its step times and peak memory growth."""
    torch.set_num_threads(cfg["threads"])
    device = torch.device(cfg["device"])
    torch.manual_seed(0)
    model = runner.lm_model(cfg["kind"], cfg, cfg["length"]).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    tokens = measure.random_words(model, cfg["batch"], cfg["length"] + 1, device)
    losses, times = [], []

    def step():
        losses.append(measure.lm_train_step(model, tokens, optimizer))

    measure.reset_peak(device)
    held = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
    deadline = time.perf_counter() + cfg["budget_s"]
    for index in range(cfg["warmup"] + cfg["steps"]):
        seconds = measure.timed(step, device)
        if index >= cfg["warmup"]:
            times.append(seconds)
        if times and time.perf_counter() > deadline:
            break
    peak = measure.peak_bytes(device)
    return dict(
        section="train", kind=cfg["kind"], seq_len=cfg["length"],
        params=sum(p.numel() for p in model.parameters()), step_times_s=times,
        peak_bytes=None if peak is None else peak - held, loss=float(losses[-1]),
        finite=bool(torch.isfinite(losses[-1])),
    )


def _child(conn, fn, args):
    try:
        conn.send(fn(*args))
    except BaseException as exc:  # noqa: BLE001 - reported to the driver
        text = f"{type(exc).__name__}: {exc}"
        conn.send({"error": ("out of memory: " if "out of memory" in text.lower() else "") + text})
    finally:
        conn.close()


def in_fresh_process(fn: Callable, *args, timeout_s: float):
    """``fn(*args)`` in a child forked from this process: its result, or ``{"error": ...}`` when it
    raised, died or ran past ``timeout_s``."""
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    proc = context.Process(target=_child, args=(send, fn, args))
    proc.start()
    send.close()
    result = None
    with contextlib.suppress(EOFError):
        result = receive.recv() if receive.poll(timeout_s) else None
    proc.join(5)
    if proc.is_alive():
        proc.kill()
        proc.join()
        if result is None:
            return {"error": f"timeout after {timeout_s:.0f}s"}
    if result is None:
        return {"error": f"child died (exit code {proc.exitcode})"}
    return result


def merge(results: List[Dict]) -> List[Dict]:
    """One row per (kind, length): the step times of all rounds (``time``: their summary), the
    largest peak; a configuration that failed in every round keeps its error."""
    merged: Dict = {}
    for r in results:
        key = (r["kind"], r["seq_len"])
        m = merged.get(key)
        if m is None or ("error" in m and "error" not in r):
            merged[key] = dict(r)
        elif "error" not in r:
            m["step_times_s"] = m["step_times_s"] + r["step_times_s"]
            peaks = [p for p in (m["peak_bytes"], r["peak_bytes"]) if p is not None]
            m["peak_bytes"] = max(peaks) if peaks else None
    for row in merged.values():
        if "error" not in row:
            row["time"] = measure.summarize(row["step_times_s"])
    return list(merged.values())


def parse(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """The options, checked: bad values stop here with a usage error naming the flag."""
    p = arguments.ArgumentParser(prog="python -m memsizer_fairseq.tools.benchmark.training_memory",
                                description=__doc__.split("\n\n")[0])
    count = arguments.positive_int
    p.add_argument("--lengths", type=arguments.positive_int_list,
                   default=[512, 1024, 2048, 4096, 8192], help="comma list of sequence lengths")
    p.add_argument("--kinds", type=arguments.names(KIND_CHOICES), default=list(KINDS),
                   help="comma list of " + ",".join(KIND_CHOICES) + " (default "
                   + ",".join(KINDS) + ")")
    p.add_argument("--dim", type=count, default=256)
    p.add_argument("--layers", type=count, default=2)
    p.add_argument("--heads", type=count, default=4)
    p.add_argument("--ffn", type=count, default=None, help="default: 4 x dim")
    p.add_argument("--slots", type=count, default=32, help="Memsizer k (the paper's LM: 32)")
    p.add_argument("--vocab", type=arguments.vocabulary_size, default=1024)
    p.add_argument("--batch", type=count, default=1)
    p.add_argument("--dropout", type=arguments.dropout, default=0.1)
    p.add_argument("--steps", type=count, default=3, help="timed steps per configuration")
    p.add_argument("--warmup", type=arguments.non_negative_int, default=1)
    p.add_argument("--rounds", type=count, default=1,
                   help="passes over all configurations (the 2nd in reverse order)")
    p.add_argument("--threads", type=count, default=1)
    p.add_argument("--device", type=arguments.device, default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--dtype", default="fp32", choices=sorted(runner.DTYPES))
    p.add_argument("--authors-max-len", type=count, default=4096,
                   help="skip the authors' O(T^2 k d) form above this length")
    p.add_argument("--budget-s", type=arguments.positive_float, default=60.0,
                   help="stop timing a configuration after this many seconds (>= 1 step)")
    p.add_argument("--timeout-s", type=arguments.positive_float, default=900.0,
                   help="give up on a configuration's process after this many seconds")
    p.add_argument("--quick", action="store_true",
                   help="seconds-long smoke run: lengths 256,512, d 64, 1 layer, 2 heads, "
                   "vocabulary 256, one warm-up and one timed step (flags given still win)")
    p.add_argument("--out", help="write all results as JSON here")
    if p.parse_known_args(argv)[0].quick:
        p.set_defaults(**QUICK)
    args = p.parse_args(argv)
    arguments.check_heads(p, args.dim, args.heads)
    if args.out:
        arguments.check_output(p, "--out", args.out)
    # The driver must not initialise CUDA (its children are forked): a child looks.
    arguments.check_device(p, args.device, lambda: _device_count_in_child(args.timeout_s))
    return args


def _device_count_in_child(timeout_s: float) -> int:
    found = in_fresh_process(arguments.cuda_device_count, timeout_s=timeout_s)
    return found if isinstance(found, int) else 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse(argv)
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    import torch._dynamo  # noqa: F401  (torch.optim imports it on first use: seconds per child)

    gc.freeze()  # the children's full collections (measure.reset_peak) skip what imports left

    cfg = vars(args)
    skipped = [length for length in args.lengths
               if "memsizer-authors" in args.kinds and length > args.authors_max_len]
    plan = [(length, kind) for length in args.lengths for kind in args.kinds
            if not (kind == "memsizer-authors" and length in skipped)]
    results = []
    started = time.time()
    for round_index in range(args.rounds):
        for length, kind in plan if round_index % 2 == 0 else reversed(plan):
            r = in_fresh_process(train_steps, dict(cfg, kind=kind, length=length),
                                 timeout_s=args.timeout_s)
            r.update(section="train", kind=kind, seq_len=length)
            results.append(r)
            shown = r.get("error") or (
                f"{measure.summarize(r['step_times_s'])['median'] * 1e3:.0f} ms/step, peak "
                + ("n/a" if r["peak_bytes"] is None else f"{r['peak_bytes'] / 2**20:.0f} MiB"))
            print(f"[{time.time() - started:6.0f}s] round {round_index + 1} {kind:>18} "
                  f"T={length:<6} {shown}", file=sys.stderr, flush=True)
    rows = merge(results) + [
        dict(section="train", kind="memsizer-authors", seq_len=length,
             error=f"skipped: above --authors-max-len {args.authors_max_len} (O(T^2 k d))")
        for length in skipped]
    table = "\n".join(report.train_table(rows, stat="median"))
    params = {r["kind"]: r["params"] for r in rows if "params" in r}
    print(f"Training step, {args.device} {args.dtype}, threads {args.threads}: d={args.dim}, "
          f"{args.layers} layers, {args.heads} heads, ffn {args.ffn or 4 * args.dim}, "
          f"k={args.slots}, vocab {args.vocab}, batch {args.batch}; parameters {params}; "
          f"median of up to {args.steps} x {args.rounds} timed steps after {args.warmup} "
          f"warm-up; X / memsizer = X's step time / memsizer's; peak memory = growth during "
          f"training, each configuration in a fresh process.\n")
    print(table)
    for r in rows:
        if "error" in r:
            print(f"\n* {r['kind']} at T={r['seq_len']}: {r['error']}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(dict(options=cfg, results=results, rows=rows, table=table), f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
