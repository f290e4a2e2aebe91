"""Training-step time and peak memory: ``memsizer_lm`` against ``transformer_lm`` of the same size.

Not a test. Four configurations per sequence length, all the same model except the attention:

* ``transformer`` -- fairseq's ``transformer_lm`` (softmax attention);
* ``memsizer`` -- ``memsizer_lm`` as shipped (causal read chosen by length: two-GEMM up to
  ``DEFAULT_QUADRATIC_MAX_LEN``, linear-time chunked prefix sums above);
* ``memsizer_2gemm`` -- ``memsizer_lm`` forced to the two-GEMM form ``((A L^T) o mask) R`` at
  every length (O(T^2 (k + d)) time, a T x T matrix per layer);
* ``authors`` -- ``memsizer_lm`` with the authors' formulation (a ``T x B x k x d`` tensor of
  per-position memories and a ``T x T`` mixing: O(T^2 k d) time, O(T k d) memory per layer).

Every (configuration, length) runs in a fresh child process, forked from a driver that has
imported torch and fairseq once (and has run no tensor operation), so that peak memory is honest:
on CPU the growth of the child's peak resident set (``getrusage`` maxrss, which Linux restarts at
the child's current size on fork) over its resident set just before the first training step; on
CUDA ``torch.cuda.max_memory_allocated`` over the memory held before it. The children are
interleaved -- all configurations of one length, then the next length, and with ``--rounds 2`` a
second pass in the opposite order -- and the ratios come from this one run. A training step is
forward, cross-entropy over the vocabulary, backward and an Adam update; its time is the median
over the timed steps (after warm-up steps).

    python benchmarks/lm_training.py                       # 512 .. 8192, d 256, 2 layers, CPU
    python benchmarks/lm_training.py --quick               # a few seconds
    python benchmarks/lm_training.py --device cuda --dim 1024 --layers 4 --lengths 1024,...,16384
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KINDS = ("transformer", "memsizer", "memsizer_2gemm", "authors")


# -- one configuration, in its own process ------------------------------------------------------


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: kilobytes


def _model_args(opts):
    return argparse.Namespace(
        decoder_layers=opts.layers,
        decoder_embed_dim=opts.dim,
        decoder_ffn_embed_dim=opts.ffn or 4 * opts.dim,
        decoder_attention_heads=opts.heads,
        dropout=opts.dropout,
        attention_dropout=0.0,
        tokens_per_sample=opts.length,
        max_target_positions=opts.length,
        add_bos_token=False,
        tpu=False,
        causal_proj_dim=opts.slots,
    )


def build_model(kind, opts):
    import torch
    from fairseq.data import Dictionary

    dictionary = Dictionary()
    for i in range(opts.vocab - dictionary.nspecial):
        dictionary.add_symbol(f"w{i}")

    class Task:
        source_dictionary = target_dictionary = dictionary

    args = _model_args(opts)
    if kind == "transformer":
        from fairseq.models.transformer_lm import TransformerLanguageModel, base_lm_architecture

        del args.causal_proj_dim
        base_lm_architecture(args)
        model = TransformerLanguageModel.build_model(args, Task)
    else:
        from memsizer_fairseq.models.memsizer_lm import (
            MemsizerLanguageModel,
            memsizer_lm_base_architecture,
        )
        from memsizer_fairseq.modules import MemsizerAttention, memsizer_attention

        memsizer_lm_base_architecture(args)
        model = MemsizerLanguageModel.build_model(args, Task)
        if kind == "memsizer_2gemm":
            for module in model.modules():
                if isinstance(module, MemsizerAttention):
                    module.quadratic_max_len = 1 << 60
        elif kind == "authors":
            from memsizer_fairseq.modules.authors_causal import authors_causal_read

            def authors(a, l, r, keep=None, init_sum=None, init_count=None, *_, **__):
                return authors_causal_read(a, l, r, keep, init_sum, init_count)

            memsizer_attention.causal_read = authors
    torch.manual_seed(0)
    return model, dictionary


def worker(opts):
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(opts.threads)
    device = torch.device(opts.device)
    dtype = {"float32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[opts.dtype]
    model, dictionary = build_model(opts.kind, opts)
    model = model.to(device=device, dtype=dtype).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(dictionary.nspecial, len(dictionary), (opts.batch, opts.length),
                           generator=gen).to(device)
    target = tokens.roll(-1, dims=1)
    params = sum(p.numel() for p in model.parameters())

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def step():
        logits, _ = model(tokens)
        loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), target.view(-1))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        before = _rss_bytes()
    times = []
    deadline = time.perf_counter() + opts.budget_s
    for i in range(opts.warmup + opts.steps):
        start = time.perf_counter()
        loss = step()
        sync()
        elapsed = time.perf_counter() - start
        if i >= opts.warmup:
            times.append(elapsed)
        if time.perf_counter() > deadline and times:
            break
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() - before
    else:
        peak = max(0, _peak_rss_bytes() - before)
    result = dict(
        kind=opts.kind, length=opts.length, params=params, step_s=statistics.median(times),
        steps_timed=len(times), step_times_s=times, peak_bytes=peak, loss=float(loss.detach()),
        finite=bool(torch.isfinite(loss)), device=opts.device, dtype=opts.dtype,
    )
    return result


# -- the driver ----------------------------------------------------------------------------------


def _child(conn, opts):
    try:
        conn.send(worker(opts))
    except BaseException as exc:  # noqa: BLE001 - reported to the driver
        text = f"{type(exc).__name__}: {exc}"
        conn.send({"error": ("out of memory: " if "out of memory" in text.lower() else "") + text})
    finally:
        conn.close()


def run_one(kind, length, opts):
    """Run one configuration in a forked child; returns its result (or an ``error``)."""
    import multiprocessing

    child_opts = argparse.Namespace(**vars(opts))
    child_opts.kind, child_opts.length = kind, length
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    proc = context.Process(target=_child, args=(send, child_opts))
    proc.start()
    send.close()
    result = None
    if receive.poll(opts.timeout_s):
        try:
            result = receive.recv()
        except EOFError:
            result = None
    proc.join(5)
    if proc.is_alive():
        proc.kill()
        proc.join()
        if result is None:
            return dict(kind=kind, length=length, error=f"timeout after {opts.timeout_s:.0f}s")
    if result is None:
        return dict(kind=kind, length=length, error=f"child died (exit code {proc.exitcode})")
    result.setdefault("kind", kind)
    result.setdefault("length", length)
    return result


def merge(results):
    """Per (kind, length): the median step time over all rounds' timed steps, the max peak."""
    merged = {}
    for r in results:
        key = (r["kind"], r["length"])
        if "error" in r:
            merged.setdefault(key, r)
            continue
        m = merged.get(key)
        if m is None or "error" in m:
            merged[key] = dict(r)
        else:
            m["step_times_s"] = m["step_times_s"] + r["step_times_s"]
            m["step_s"] = statistics.median(m["step_times_s"])
            m["steps_timed"] = len(m["step_times_s"])
            m["peak_bytes"] = max(m["peak_bytes"], r["peak_bytes"])
    return merged


def _fmt_time(r):
    return f"{r['step_s'] * 1e3:,.0f} ms" if r and "error" not in r else "-"


def _fmt_mem(r):
    return f"{r['peak_bytes'] / 2**20:,.0f} MiB" if r and "error" not in r else "-"


def _ratio(a, b, field):
    if not a or not b or "error" in a or "error" in b or not b[field]:
        return "-"
    return f"{a[field] / b[field]:.2f}x"


def table(merged, lengths, kinds):
    lines = [
        "| T | transformer step | memsizer step | 2-GEMM step | authors step "
        "| speed-up vs transformer | vs 2-GEMM | vs authors "
        "| transformer mem | memsizer mem | 2-GEMM mem | authors mem "
        "| mem transformer/memsizer | authors/memsizer |",
        "|" + "---|" * 14,
    ]
    for length in lengths:
        get = {k: merged.get((k, length)) for k in KINDS}
        m = get["memsizer"]
        cells = [
            str(length),
            *(_fmt_time(get[k]) if k in kinds else "n/a" for k in KINDS),
            _ratio(get["transformer"], m, "step_s"),
            _ratio(get["memsizer_2gemm"], m, "step_s"),
            _ratio(get["authors"], m, "step_s"),
            *(_fmt_mem(get[k]) if k in kinds else "n/a" for k in KINDS),
            _ratio(get["transformer"], m, "peak_bytes"),
            _ratio(get["authors"], m, "peak_bytes"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    notes = [
        f"{r['kind']} at T={r['length']}: {r['error']}"
        for r in merged.values() if "error" in r
    ]
    return "\n".join(lines), notes


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lengths", default="512,1024,2048,4096,8192")
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--ffn", type=int, default=None, help="default: 4 x dim")
    parser.add_argument("--slots", type=int, default=32, help="Memsizer k (the paper's LM: 32)")
    parser.add_argument("--vocab", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per configuration")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=1,
                        help="passes over all configurations (the 2nd in reverse order)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bf16", "fp16"])
    parser.add_argument("--authors-max-len", type=int, default=4096,
                        help="skip the authors' O(T^2 k d) form above this length")
    parser.add_argument("--budget-s", type=float, default=60.0,
                        help="stop timing a configuration after this many seconds (>= 1 step)")
    parser.add_argument("--timeout-s", type=float, default=900.0)
    parser.add_argument("--quick", action="store_true",
                        help="seconds-long smoke run: short lengths, tiny model, one step")
    parser.add_argument("--out", help="write all results as JSON here")
    opts = parser.parse_args(argv)
    # Import once in the driver (the children are forked from it); run no tensor op here.
    sys.path.insert(0, ROOT)
    import fairseq.models.transformer_lm  # noqa: F401
    import torch._dynamo  # noqa: F401  (torch.optim imports it on first use: 3 s per child)

    import memsizer_fairseq.models.memsizer_lm  # noqa: F401

    if opts.quick:
        opts.lengths, opts.dim, opts.layers, opts.heads = "256,512", 64, 1, 2
        opts.vocab, opts.steps, opts.warmup, opts.rounds = 256, 1, 1, 1
    lengths = [int(x) for x in opts.lengths.split(",")]
    kinds = [k for k in opts.kinds.split(",") if k]
    for k in kinds:
        if k not in KINDS:
            parser.error(f"unknown kind {k!r}; choose from {', '.join(KINDS)}")

    results = []
    plan = [(length, kind) for length in lengths for kind in kinds
            if not (kind == "authors" and length > opts.authors_max_len)]
    started = time.time()
    for round_index in range(opts.rounds):
        for length, kind in plan if round_index % 2 == 0 else reversed(plan):
            r = run_one(kind, length, opts)
            results.append(r)
            shown = (f"{r['step_s'] * 1e3:.0f} ms/step, peak {r['peak_bytes'] / 2**20:.0f} MiB"
                     if "error" not in r else r["error"])
            print(f"[{time.time() - started:6.0f}s] round {round_index + 1} {kind:>15} "
                  f"T={length:<6} {shown}", file=sys.stderr, flush=True)
    merged = merge(results)
    for length in lengths:
        if "authors" in kinds and length > opts.authors_max_len:
            merged[("authors", length)] = dict(
                kind="authors", length=length,
                error=f"skipped: above --authors-max-len {opts.authors_max_len} (O(T^2 k d))")
    text, notes = table(merged, lengths, kinds)
    params = {k: r.get("params") for (k, _), r in merged.items() if "params" in r}
    print(f"Training step, {opts.device} {opts.dtype}, threads {opts.threads}: d={opts.dim}, "
          f"{opts.layers} layers, {opts.heads} heads, ffn {opts.ffn or 4 * opts.dim}, "
          f"k={opts.slots}, vocab {opts.vocab}, batch {opts.batch}; parameters {params}; "
          f"median of {opts.steps} x {opts.rounds} timed steps after {opts.warmup} warm-up; "
          f"speed-up = other's step time / memsizer's; memory = peak growth during training.\n")
    print(text)
    for note in notes:
        print(f"\n* {note}")
    if opts.out:
        with open(opts.out, "w") as f:
            json.dump(dict(options=vars(opts), results=results,
                           merged=[v for v in merged.values()], table=text), f, indent=1)


if __name__ == "__main__":
    main()
