"""Runs the benchmark sections: models side by side, interleaved and repeated."""

import contextlib
import gc
import time
from typing import Callable, Dict, List

import torch

from . import measure
from .models import (build, lm_flags, make_dictionary, remove_attention, seq2seq_flags,
                     set_causal_read, use_sdpa_attention)

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


# language models: kind -> (--arch, what is changed after building it)
LM_KINDS = {
    # the causal read chosen by length
    "memsizer": ("memsizer_lm", None),
    # the two-GEMM read ``((A L^T) o mask) R`` at every length
    "memsizer-quadratic": ("memsizer_lm", lambda model: set_causal_read(model, "quadratic")),
    # the authors' ``T x B x k x d`` formulation
    "memsizer-authors": ("memsizer_lm", lambda model: set_causal_read(model, "authors")),
    "transformer": ("transformer_lm", None),  # fairseq's softmax attention
    # the same weights through PyTorch's fused causal ``scaled_dot_product_attention``
    "transformer-sdpa": ("transformer_lm", use_sdpa_attention),
    "no-attention": ("memsizer_lm", remove_attention),
    # flash-linear-attention's kernels (CUDA): the chunked read in training and prefill, fla's
    # fused recurrent kernel for each decoding step (the layer's step follows its causal form)
    "memsizer-fla": ("memsizer_lm", lambda model: set_causal_read(model, "fla_chunk")),
    # PyTorch's chunked read at every length (where ``auto`` would choose fla's kernel)
    "memsizer-chunk": ("memsizer_lm", lambda model: set_causal_read(model, "chunk")),
}
# the kinds on flash-linear-attention's kernels: measured only where fla_available(device)
FLA_KINDS = ("memsizer-fla",)
# beam search: kind -> (--arch, extra flags)
SEQ2SEQ_KINDS = {
    "memsizer": ("memsizer_transformer", []),
    "memsizer-softmax-cross": ("memsizer_transformer", ["--cross-attention", "softmax"]),
    "transformer": ("transformer", []),
}
# beam search at the bound: kind -> (SEQ2SEQ_KINDS kind, what is removed: None, or whether the
# cross-attention goes too)
BOUND_KINDS = {
    "transformer": ("transformer", None),
    "memsizer": ("memsizer", None),
    "memsizer-bound": ("memsizer", True),  # every decoder attention removed: self and cross
    "memsizer-softmax-cross": ("memsizer-softmax-cross", None),
    # only the decoder self-attention removed: the softmax cross-attention stays
    "memsizer-softmax-cross-bound": ("memsizer-softmax-cross", False),
}


def _place(model, cfg):
    return model.to(device=torch.device(cfg["device"]), dtype=DTYPES[cfg["dtype"]]).eval()


def lm_model(kind: str, cfg: Dict, max_positions: int):
    """A language model of ``cfg``'s size (``ffn``, ``dropout`` and Memsizer's ``slots`` are
    optional) of a kind of :data:`LM_KINDS`."""
    arch, change = LM_KINDS[kind]
    flags = lm_flags(cfg["dim"], cfg["layers"], cfg["heads"], cfg.get("ffn"),
                     cfg.get("dropout", 0.0))
    flags += ["--tokens-per-sample", max_positions, "--max-target-positions", max_positions]
    if arch == "memsizer_lm" and cfg.get("slots"):
        flags += ["--causal-proj-dim", cfg["slots"]]
    model = build(arch, make_dictionary(cfg["vocab"]), flags, task_name="language_modeling")
    if change is not None:
        change(model)
    return _place(model, cfg)


def seq2seq_model(kind: str, cfg: Dict, max_positions: int):
    arch, extra = SEQ2SEQ_KINDS[kind]
    flags = seq2seq_flags(cfg["dim"], cfg["layers"], cfg["heads"], max_positions) + extra
    return _place(build(arch, make_dictionary(cfg["vocab"]), flags), cfg)


_bound_models: Dict = {}


def bound_model(kind: str, bound: Dict, device: str, dtype: str):
    """A model of the beam-bound section (sizes from ``bound``): a kind of
    :data:`BOUND_KINDS`; built once per process (the profile reuses the measured models)."""
    key = (kind, repr(sorted(bound.items())), device, dtype)
    if key not in _bound_models:
        base, cross = BOUND_KINDS[kind]
        longest = max(max(pair) for pair in bound["lengths"]) + 64
        model = seq2seq_model(base, dict(bound, device=device, dtype=dtype), longest)
        _bound_models[key] = model if cross is None else remove_attention(model, cross=cross)
    return _bound_models[key]


@contextlib.contextmanager
def _threads(count: int):
    """torch's intra-op threads set to ``count`` inside the block, restored after it."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _bound_search(model, src_len: int, out_len: int, bound: Dict, device, clock=time.perf_counter):
    """One beam search of the section's sizes, from the same seed every time."""
    torch.manual_seed(0)
    return measure.beam_search_time(model, src_len, out_len, bound["sentences"], bound["beam"],
                                    device, with_state=False, clock=clock)


def _interleaved(jobs: List[Dict], repeats: int, measure_one: Callable, progress) -> Dict:
    """Every job ``repeats`` times, round-robin over the jobs: each job's results (by id) in
    order; ``measure_one(job, first)`` is told the first round."""
    results = {id(job): [] for job in jobs}
    for repeat in range(repeats):
        for job in jobs:
            results[id(job)].append(measure_one(job, repeat == 0))
            if progress:
                progress.update(1)
    return results


def run_beam_bound(cfg: Dict, progress=None) -> List[Dict]:
    """The beam-bound section: every kind of :data:`BOUND_KINDS` at every (source, target)
    length of ``cfg["bound"]``, interleaved (round-robin over kinds and lengths, ``repeats``
    rounds), with ``threads`` threads; on CPU the time is the thread's CPU time."""
    bound = cfg["bound"]
    device = torch.device(cfg["device"])
    models = {kind: bound_model(kind, bound, cfg["device"], cfg["dtype"]) for kind in BOUND_KINDS}
    jobs = [dict(section="beam_bound", kind=kind, src_len=src, out_len=out)
            for src, out in bound["lengths"] for kind in BOUND_KINDS]
    with _threads(bound["threads"]):
        results = _interleaved(jobs, bound["repeats"], lambda job, first: _bound_search(
            models[job["kind"]], job["src_len"], job["out_len"], bound, device,
            measure.cpu_clock(device)), progress)
    for job in jobs:
        found = results[id(job)]
        job["peak_bytes"] = max(0, *(result["peak_bytes"] or 0 for result in found))
        job["time"] = measure.summarize([result["seconds"] for result in found])
    return jobs


def profile_beam_bound(cfg: Dict, top: int = 10, rounds: int = 2) -> Dict:
    """torch.profiler's ops with the most self CPU time during one beam search of the paper's
    Memsizer and of its bound at the section's first (source, target) length (the profiler
    times by the wall clock: the two are profiled in turn ``rounds`` times, and each keeps its
    round with the least time in all)."""
    from torch.profiler import ProfilerActivity, profile

    bound = cfg["bound"]
    device = torch.device(cfg["device"])
    src, out = bound["lengths"][0]
    found = {"src_len": src, "out_len": out, "kinds": {}}
    with _threads(bound["threads"]):
        for _ in range(rounds):
            for kind in ("memsizer", "memsizer-bound"):
                model = bound_model(kind, bound, cfg["device"], cfg["dtype"])
                _bound_search(model, src, out, bound, device)  # warm-up
                with profile(activities=[ProfilerActivity.CPU]) as prof:
                    _bound_search(model, src, out, bound, device)
                events = prof.key_averages()
                total = sum(e.self_cpu_time_total for e in events) / 1e3
                if total >= found["kinds"].get(kind, {}).get("total_self_cpu_ms", float("inf")):
                    continue
                ops = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
                found["kinds"][kind] = {
                    "total_self_cpu_ms": total,
                    "ops": [dict(name=e.key, self_cpu_ms=e.self_cpu_time_total / 1e3,
                                 calls=e.count) for e in ops],
                }
    return found


def _measure(job: Dict, cfg: Dict, model, first: bool) -> Dict:
    """One measurement of one configuration (sizes that do not vary only at the ``first``)."""
    device = torch.device(cfg["device"])
    if job["section"] == "decode":
        return measure.decode_step_time(model, job["prefix_len"], cfg["batch"], cfg["steps"],
                                        device, count_flops=first)
    if job["section"] == "beam":
        return measure.beam_search_time(model, cfg["src_len"], job["out_len"], job["batch"],
                                        cfg["beam"], device, with_state=first)
    return measure.train_step_time(model, job["seq_len"], cfg["train_batch"], device,
                                   count_flops=first)


def jobs_for(cfg: Dict) -> List[Dict]:
    jobs = []
    fla = list(FLA_KINDS) if cfg.get("fla") else []
    if "decode" in cfg["sections"]:
        jobs += [dict(section="decode", kind=kind, prefix_len=prefix_len)
                 for prefix_len in cfg["prefix_lengths"]
                 for kind in ["memsizer", *fla, "transformer", "no-attention"]]
    if "beam" in cfg["sections"]:
        jobs += [dict(section="beam", kind=kind, out_len=out_len, batch=batch)
                 for out_len in cfg["out_lengths"] for batch in cfg["beam_batches"]
                 for kind in SEQ2SEQ_KINDS]
    if "train" in cfg["sections"]:
        for seq_len in cfg["train_lengths"]:
            kinds = ["memsizer", *fla, "transformer", "transformer-sdpa", "no-attention"]
            if fla:  # beside fla's kernel, PyTorch's read where auto would choose fla's
                kinds.insert(1, "memsizer-chunk")
            if seq_len <= cfg["authors_max_len"]:
                kinds.append("memsizer-authors")
            jobs += [dict(section="train", kind=kind, seq_len=seq_len) for kind in kinds]
    return jobs


def bound_job_count(cfg: Dict) -> int:
    """How many measurements the beam-bound section makes (0 when it is not chosen)."""
    if "beam_bound" not in cfg["sections"]:
        return 0
    return len(cfg["bound"]["lengths"]) * len(BOUND_KINDS) * cfg["bound"]["repeats"]


def run(cfg: Dict, progress=None) -> List[Dict]:
    """Every job ``repeats`` times, interleaved (round-robin over jobs), then summarized; the
    beam-bound section's rows (its own sizes and repeats) after them."""
    # every measurement starts with a full collection (measure.reset_peak); the objects that
    # torch's and fairseq's imports left behind are moved out of its way (0.2 s -> ms per call)
    gc.freeze()
    jobs = jobs_for(cfg)
    max_positions = max(cfg["prefix_lengths"] + cfg["train_lengths"] + cfg["out_lengths"]) + 64
    models = {}  # (whether a beam-search model, kind) -> model
    for job in jobs:
        key = (job["section"] == "beam", job["kind"])
        if key not in models:
            models[key] = (seq2seq_model if key[0] else lm_model)(job["kind"], cfg, max_positions)
    results = _interleaved(jobs, cfg["repeats"], lambda job, first: _measure(
        job, cfg, models[job["section"] == "beam", job["kind"]], first), progress)
    rows = []
    for job in jobs:
        row = dict(job)
        for result in results[id(job)]:  # the fields of every round, the largest peak
            if result.get("peak_bytes") is not None:
                result["peak_bytes"] = max(result["peak_bytes"], row.get("peak_bytes") or 0)
            row.update({k: v for k, v in result.items() if not k.startswith("seconds")})
        time_key = "seconds_per_token" if job["section"] == "decode" else "seconds"
        row["time"] = measure.summarize([result[time_key] for result in results[id(job)]])
        if row["section"] == "beam":
            seconds = row["time"]["min"]
            row["sentences_per_second"] = job["batch"] / seconds
            row["tokens_per_second"] = job["batch"] * job["out_len"] / seconds
        rows.append(row)
    if "beam_bound" in cfg["sections"]:
        rows += run_beam_bound(cfg, progress)
    return rows
