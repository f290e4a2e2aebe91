"""Runs the benchmark sections: models side by side, interleaved and repeated."""

from typing import Dict, List

import torch

from . import measure
from .models import (
    build,
    lm_flags,
    make_dictionary,
    remove_self_attention,
    seq2seq_flags,
    set_causal_read,
    use_sdpa_attention,
)

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


# language models: kind -> (--arch, what is changed after building it)
LM_KINDS = {
    "memsizer": ("memsizer_lm", None),
    "memsizer-quadratic": ("memsizer_lm", lambda model: set_causal_read(model, "quadratic")),
    "memsizer-authors": ("memsizer_lm", lambda model: set_causal_read(model, "authors")),
    "transformer": ("transformer_lm", None),
    "transformer-sdpa": ("transformer_lm", use_sdpa_attention),
    "no-attention": ("memsizer_lm", remove_self_attention),
}


def lm_model(kind: str, cfg: Dict, max_positions: int):
    """A language model of ``cfg``'s size (``ffn``, ``dropout`` and Memsizer's ``slots`` are
    optional), by kind: ``memsizer`` (the causal read chosen by length), ``memsizer-quadratic``
    (the two-GEMM read ``((A L^T) o mask) R`` at every length), ``memsizer-authors`` (the
    authors' ``T x B x k x d`` formulation), ``transformer`` (fairseq's softmax attention),
    ``transformer-sdpa`` (the same weights through PyTorch's fused causal
    ``scaled_dot_product_attention``) and ``no-attention`` (self-attention removed)."""
    arch, change = LM_KINDS[kind]
    dictionary = make_dictionary(cfg["vocab"])
    flags = lm_flags(cfg["dim"], cfg["layers"], cfg["heads"], cfg.get("ffn"),
                     cfg.get("dropout", 0.0))
    flags += ["--tokens-per-sample", max_positions, "--max-target-positions", max_positions]
    if arch == "memsizer_lm" and cfg.get("slots"):
        flags += ["--causal-proj-dim", cfg["slots"]]
    model = build(arch, dictionary, flags, task_name="language_modeling")
    if change is not None:
        change(model)
    return _place(model, cfg)


# beam search: kind -> (--arch, extra flags)
SEQ2SEQ_KINDS = {
    "memsizer": ("memsizer_transformer", []),
    "memsizer-softmax-cross": ("memsizer_transformer", ["--cross-attention", "softmax"]),
    "transformer": ("transformer", []),
}


def seq2seq_model(kind: str, cfg: Dict, max_positions: int):
    dictionary = make_dictionary(cfg["vocab"])
    arch, extra = SEQ2SEQ_KINDS[kind]
    flags = seq2seq_flags(cfg["dim"], cfg["layers"], cfg["heads"], max_positions) + extra
    return _place(build(arch, dictionary, flags), cfg)


def _place(model, cfg):
    model = model.to(device=torch.device(cfg["device"]), dtype=DTYPES[cfg["dtype"]])
    return model.eval()


def _max_positions(cfg):
    return max(cfg["prefix_lengths"] + cfg["train_lengths"] + cfg["out_lengths"]) + 64


def _measure(job: Dict, model, first: bool) -> Dict:
    """One measurement of one configuration (sizes that do not vary only at the ``first``)."""
    cfg = job["cfg"]
    device = torch.device(cfg["device"])
    section = job["section"]
    if section == "decode":
        return measure.decode_step_time(
            model, job["prefix_len"], cfg["batch"], cfg["steps"], device, count_flops=first
        )
    if section == "beam":
        return measure.beam_search_time(
            model,
            cfg["src_len"],
            job["out_len"],
            job["batch"],
            cfg["beam"],
            device,
            with_state=first,
        )
    return measure.train_step_time(model, job["seq_len"], cfg["train_batch"], device,
                                   count_flops=first)


def jobs_for(cfg: Dict) -> List[Dict]:
    jobs = []
    if "decode" in cfg["sections"]:
        for prefix_len in cfg["prefix_lengths"]:
            for kind in ("memsizer", "transformer", "no-attention"):
                jobs.append(dict(section="decode", kind=kind, prefix_len=prefix_len))
    if "beam" in cfg["sections"]:
        for out_len in cfg["out_lengths"]:
            for batch in cfg["beam_batches"]:
                for kind in SEQ2SEQ_KINDS:
                    jobs.append(dict(section="beam", kind=kind, out_len=out_len, batch=batch))
    if "train" in cfg["sections"]:
        for seq_len in cfg["train_lengths"]:
            kinds = ["memsizer", "transformer", "transformer-sdpa", "no-attention"]
            if seq_len <= cfg["authors_max_len"]:
                kinds.append("memsizer-authors")
            for kind in kinds:
                jobs.append(dict(section="train", kind=kind, seq_len=seq_len))
    for job in jobs:
        job["cfg"] = cfg
    return jobs


def run(cfg: Dict, progress=None) -> List[Dict]:
    """Every job ``repeats`` times, interleaved (round-robin over jobs), then summarized."""
    jobs = jobs_for(cfg)
    models = {}
    for job in jobs:
        key = ("beam" if job["section"] == "beam" else "lm", job["kind"])
        if key not in models:
            builder = seq2seq_model if key[0] == "beam" else lm_model
            models[key] = builder(job["kind"], cfg, _max_positions(cfg))
        job["model_key"] = key
    samples = {id(job): [] for job in jobs}
    extra = {}
    for repeat in range(cfg["repeats"]):
        for job in jobs:
            result = _measure(job, models[job["model_key"]], first=repeat == 0)
            time_key = "seconds_per_token" if job["section"] == "decode" else "seconds"
            samples[id(job)].append(result[time_key])
            previous = extra.get(id(job), {})
            if result.get("peak_bytes") is not None:
                result["peak_bytes"] = max(result["peak_bytes"], previous.get("peak_bytes") or 0)
            extra[id(job)] = {**previous, **result}
            if progress:
                progress.update(1)
    rows = []
    for job in jobs:
        row = {k: v for k, v in job.items() if k not in ("cfg", "model_key")}
        row.update({k: v for k, v in extra[id(job)].items() if not k.startswith("seconds")})
        row["time"] = measure.summarize(samples[id(job)])
        if row["section"] == "beam":
            seconds = row["time"]["min"]
            row["sentences_per_second"] = job["batch"] / seconds
            row["tokens_per_second"] = job["batch"] * job["out_len"] / seconds
        rows.append(row)
    return rows
