"""Markdown tables, target checks and PNG plots from the benchmark's rows."""

from typing import Dict, Iterator, List, Optional, Tuple


# The training-step kinds, in table order, with their names in the column titles.
TRAIN_KINDS = {
    "memsizer": "memsizer",
    "memsizer-chunk": "memsizer chunked (PyTorch)",
    "memsizer-fla": "memsizer fla",
    "memsizer-quadratic": "memsizer two-GEMM",
    "memsizer-authors": "authors' form",
    "transformer": "transformer",
    "transformer-sdpa": "transformer SDPA",
    "no-attention": "no attention",
}
BEAM_KINDS = ("memsizer", "memsizer-softmax-cross", "transformer")
# the decoding-step kinds, in plot order (memsizer-fla only where it was measured)
DECODE_KINDS = ("memsizer", "memsizer-fla", "transformer", "no-attention")
# the beam-bound section's (Memsizer, bound, name) pairs
BOUND_PAIRS = (("memsizer", "memsizer-bound", "paper's Memsizer"),
               ("memsizer-softmax-cross", "memsizer-softmax-cross-bound",
                "Memsizer, softmax cross-attention"))
NAN = float("nan")


def _find(rows, **match) -> Optional[Dict]:
    for row in rows:
        if all(row.get(k) == v for k, v in match.items()):
            return row
    return None


def _grouped(rows, section: str, *keys) -> Iterator[Tuple[tuple, Dict[str, Dict]]]:
    """The rows of ``section`` grouped by the values of ``keys`` (sorted): (values, kind -> row)."""
    rows = [r for r in rows if r["section"] == section]
    for values in sorted({tuple(r[k] for k in keys) for r in rows}):
        yield values, {r["kind"]: r for r in rows if tuple(r[k] for k in keys) == values}


def _t(row, stat: str = "min"):
    return row["time"][stat] if row and "time" in row else NAN


def _peak(row):
    return row.get("peak_bytes") if row and "error" not in row else NAN


def _mib(value):
    return "n/a" if value is None else "-" if value != value else f"{value / 2**20:.1f}"


def _ratio(a, b):
    if a is None or b is None or not b == b or b <= 0:
        return NAN
    return a / b


def _flops(row):
    return row.get("flops", NAN) if row else NAN


def _x(ratio):
    return "-" if ratio != ratio else f"{ratio:.2f}x"


def _row(*cells) -> str:
    return "| " + " | ".join(map(str, cells)) + " |"


def _header(*columns) -> List[str]:
    return [_row(*columns), "|" + "---|" * len(columns)]


def decode_table(rows: List[Dict]) -> List[str]:
    out = _header(
        "prefix", "memsizer ms/token", "transformer ms/token", "no-attention ms/token",
        "transformer / memsizer", "memsizer / no-attention",
        "matrix-product FLOPs memsizer / no-attention", "state B/sentence memsizer",
        "state B/sentence transformer", "peak MiB memsizer / transformer", "spread memsizer",
    )
    fla = any(r["section"] == "decode" and r["kind"] == "memsizer-fla" for r in rows)
    if fla:
        out[0] = out[0][:-2] + _row("memsizer-fla ms/token", "memsizer-fla / no-attention",
                                    "state B/sentence memsizer-fla", "peak MiB memsizer-fla")[1:]
        out[1] += "---|" * 4
    for (length,), found in _grouped(rows, "decode", "prefix_len"):
        m, t, n = (found[kind] for kind in ("memsizer", "transformer", "no-attention"))
        cells = [
            length, *(f"{_t(row) * 1e3:.3f}" for row in (m, t, n)),
            _x(_ratio(_t(t), _t(m))), _x(_ratio(_t(m), _t(n))), _x(_ratio(_flops(m), _flops(n))),
            f"{m['state_bytes_per_sentence']:.0f}", f"{t['state_bytes_per_sentence']:.0f}",
            f"{_mib(m.get('peak_bytes'))} / {_mib(t.get('peak_bytes'))}",
            f"{m['time']['spread']:.0%}",
        ]
        if fla:
            f = found.get("memsizer-fla")
            cells += ["-", "-", "-", "-"] if f is None else [
                f"{_t(f) * 1e3:.3f}", _x(_ratio(_t(f), _t(n))),
                f"{f['state_bytes_per_sentence']:.0f}", _mib(f.get("peak_bytes"))]
        out.append(_row(*cells))
    return out


def bound_ratios(rows: List[Dict], target: float) -> List[Dict]:
    """Per (source, target) length of the beam-bound section: each kind's seconds (minimum of
    the repeats) and, for each Memsizer of :data:`BOUND_PAIRS`, its time over its bound's and
    whether that meets ``target`` (``<=``)."""
    out = []
    bound_rows = [r for r in rows if r["section"] == "beam_bound"]
    for src, length in dict.fromkeys((r["src_len"], r["out_len"]) for r in bound_rows):
        found = {r["kind"]: r for r in bound_rows if (r["src_len"], r["out_len"]) == (src, length)}
        entry = {"src_len": src, "out_len": length,
                 "seconds": {kind: _t(row) for kind, row in found.items()}}
        for memsizer, bound, _ in BOUND_PAIRS:
            ratio = _ratio(_t(found.get(memsizer)), _t(found.get(bound)))
            entry[f"{memsizer}/bound"] = ratio
            entry[f"{memsizer}/bound ok"] = ratio == ratio and ratio <= target
        out.append(entry)
    return out


def bound_table(result: Dict) -> List[str]:
    section = result["beam_bound"]
    target = section["target"]
    out = _header(
        "source -> target", "transformer s", "memsizer s", "memsizer bound s",
        "memsizer / bound", f"target <= {target:g}", "softmax-cross s", "softmax-cross bound s",
        "softmax-cross / bound", f"target <= {target:g}", "transformer / memsizer",
    )
    for entry in section["ratios"]:
        sec = entry["seconds"]

        def s(kind):
            value = sec.get(kind, NAN)
            return "-" if value != value else f"{value:.3f}"

        def ratio(kind):
            value = entry[f"{kind}/bound"]
            met = "met" if entry[f"{kind}/bound ok"] else "not met"
            return _x(value), "-" if value != value else met

        out.append(_row(
            f"{entry['src_len']} -> {entry['out_len']}", s("transformer"), s("memsizer"),
            s("memsizer-bound"), *ratio("memsizer"), s("memsizer-softmax-cross"),
            s("memsizer-softmax-cross-bound"), *ratio("memsizer-softmax-cross"),
            _x(_ratio(sec.get("transformer"), sec.get("memsizer"))),
        ))
    return out


def profile_tables(profile: Dict) -> List[str]:
    """The profile's top ops, Memsizer's beside its bound's (self CPU ms and calls)."""
    kinds = profile["kinds"]
    out = [f"Profile (torch.profiler, CPU, one beam search at {profile['src_len']} -> "
           f"{profile['out_len']}): the ops with the most self CPU time.", ""]
    names = {"memsizer": "paper's Memsizer", "memsizer-bound": "its bound (decoder attention "
             "removed)"}
    for kind, found in kinds.items():
        out += [f"{names.get(kind, kind)}: {found['total_self_cpu_ms']:.1f} ms self CPU in all",
                "", *_header("op", "self CPU ms", "share", "calls")]
        for op in found["ops"]:
            share = _ratio(op["self_cpu_ms"], found["total_self_cpu_ms"])
            out.append(_row(f"`{op['name']}`", f"{op['self_cpu_ms']:.1f}", f"{share:.0%}",
                            op["calls"]))
        out.append("")
    return out


def beam_table(rows: List[Dict]) -> List[str]:
    joined = " / ".join(BEAM_KINDS)
    out = _header(
        "output length", "batch", f"sent/s: {joined}",
        "speed-up over transformer: memsizer / memsizer-softmax-cross",
        f"state KiB per sentence: {joined}", f"peak MiB: {joined}",
    )
    for (out_len, batch), found in _grouped(rows, "beam", "out_len", "batch"):
        if any(kind not in found for kind in BEAM_KINDS):
            continue
        *memsizers, t = (found[kind] for kind in BEAM_KINDS)
        state = [found[kind].get("state_bytes_per_sentence") for kind in BEAM_KINDS]
        out.append(_row(
            out_len, batch,
            " / ".join(f"{found[kind]['sentences_per_second']:.2f}" for kind in BEAM_KINDS),
            " / ".join(_x(_ratio(_t(t), _t(m))) for m in memsizers),
            " / ".join("n/a" if b is None else f"{b / 2**10:.0f}" for b in state),
            " / ".join(_mib(found[kind].get("peak_bytes")) for kind in BEAM_KINDS),
        ))
    return out


def train_table(rows: List[Dict], stat: str = "min") -> List[str]:
    """Seconds per training step (the ``stat`` of each configuration's timings), their ratios to
    memsizer's, and peak memory, for every kind of :data:`TRAIN_KINDS` in ``rows``; ``-`` where a
    configuration was skipped or failed."""
    groups = list(_grouped(rows, "train", "seq_len"))
    kinds = [kind for kind in TRAIN_KINDS if any(kind in found for _, found in groups)]
    others = [kind for kind in kinds if kind != "memsizer"] if "memsizer" in kinds else []
    out = _header(
        "length", *(f"{TRAIN_KINDS[kind]} s/step" for kind in kinds),
        *(f"{TRAIN_KINDS[kind]} / memsizer" for kind in others),
        "peak MiB " + " / ".join(TRAIN_KINDS[kind] for kind in kinds),
        *(["peak / memsizer's: " + " / ".join(TRAIN_KINDS[kind] for kind in others)]
          if others else []),
        *(["matrix-product FLOPs / memsizer's: " + " / ".join(TRAIN_KINDS[k] for k in others)]
          if others else []),
    )
    for (length,), found in groups:
        time = {kind: _t(found.get(kind), stat) for kind in kinds}
        peak = {kind: _peak(found.get(kind)) for kind in kinds}
        out.append(_row(
            length, *("-" if time[kind] != time[kind] else f"{time[kind]:.3g}" for kind in kinds),
            *(_x(_ratio(time[kind], time["memsizer"])) for kind in others),
            " / ".join(_mib(peak[kind]) for kind in kinds),
            *([" / ".join(_x(_ratio(peak[kind], peak["memsizer"])) for kind in others)]
              if others else []),
            *([" / ".join(_x(_ratio(_flops(found.get(kind)), _flops(found.get("memsizer"))))
                          for kind in others)] if others else []),
        ))
    return out


def targets(rows: List[Dict]) -> List[Dict]:
    """The targets, evaluated where the measured lengths allow, each with two bounds measured
    on the same network: ``bound_free``, the value if attention cost nothing (the no-attention
    network's time), and ``bound_flops``, the value if Memsizer ran at the no-attention
    network's rate of matrix-product FLOPs (its projections are extra products)."""
    checks = []

    def decode(kind, prefix_len):
        return _find(rows, section="decode", kind=kind, prefix_len=prefix_len)

    m64, m1k, t1k, n1k = (decode("memsizer", 64), decode("memsizer", 1024),
                          decode("transformer", 1024), decode("no-attention", 1024))
    lengths = sorted({r["seq_len"] for r in rows if r["section"] == "train"})
    longest = lengths[-1] if lengths else None
    mt, tt, nt = (_find(rows, section="train", kind=kind, seq_len=longest)
                  for kind in ("memsizer", "transformer", "no-attention"))

    def speed_up_bounds(transformer, memsizer, free):
        """(transformer / no attention, that over Memsizer's FLOP ratio to no attention)."""
        if not free:
            return NAN, NAN
        best = _ratio(_t(transformer), _t(free))
        return best, _ratio(best, _ratio(_flops(memsizer), _flops(free)))

    # (numerator, denominator, name, comparison, target, (bound_free, bound_flops))
    for over, under, name, op, target, bounds in (
        (m1k, m64, "memsizer step at 1024 / step at 64", "<=", 1.25, (NAN, NAN)),
        (t1k, m1k, "transformer_lm step / memsizer step at 1024", ">=", 7,
         speed_up_bounds(t1k, m1k, n1k)),
        (m1k, n1k, "memsizer step / no-attention step at 1024", "<=", 1.2,
         (1.0, _ratio(_flops(m1k), _flops(n1k)))),
        (tt, mt, f"transformer_lm training step / memsizer's at {longest}", ">=", 4,
         speed_up_bounds(tt, mt, nt)),
    ):
        if over and under:
            value = _t(over) / _t(under)
            ok = value <= target if op == "<=" else value >= target
            checks.append(dict(name=name, value=value, target=f"{op} {target:g}", ok=ok,
                               bound_free=bounds[0], bound_flops=bounds[1]))
    beams = [r for r in rows if r["section"] == "beam" and r["kind"] == "memsizer"]
    if beams:
        slower = [
            (r["out_len"], r["batch"])
            for r in beams
            if _t(r)
            >= _t(
                _find(
                    rows, section="beam", kind="transformer", out_len=r["out_len"], batch=r["batch"]
                )
            )
        ]
        checks.append(
            dict(
                name="beam search: memsizer faster at every (length, batch)",
                value=f"slower at {slower}" if slower else "faster everywhere",
                target="faster everywhere",
                ok=not slower,
            )
        )
    return checks


def markdown(result: Dict) -> str:
    rows = result["rows"]
    cfg = result["config"]
    lines = [
        f"Machine: {result['machine']}. Models: d={cfg['dim']}, {cfg['layers']} layers, "
        f"{cfg['heads']} heads, vocabulary {cfg['vocab']}, dtype {cfg['dtype']}, "
        f"device {cfg['device']}; "
        f"times are the minimum of {cfg['repeats']} interleaved repeats (spread = (max-min)/min).",
        "",
    ]
    sections = (
        ("decode", f"Incremental decoding, batch {cfg['batch']} (per token, after the prefix)",
         decode_table),
        ("beam", f"Beam search (SequenceGenerator, beam {cfg['beam']}, source length "
         f"{cfg['src_len']})", beam_table),
        ("train", f"Training step (forward + backward), batch {cfg['train_batch']}", train_table),
    )
    lines += [f"Note: {note}" for note in result.get("notes", [])]
    if result.get("notes"):
        lines.append("")
    for section, title, table in sections:
        if any(r["section"] == section for r in rows):
            lines += [f"### {title}", "", *table(rows), ""]
    if result.get("beam_bound"):
        b = cfg["bound"]
        lines += [
            f"### Beam search at the bound (SequenceGenerator, {b['sentences']} sentences, beam "
            f"{b['beam']}, d={b['dim']}, {b['layers']}+{b['layers']} layers, vocabulary "
            f"{b['vocab']}, random weights, {b['threads']} thread(s), every hypothesis exactly "
            f"the target length; minimum of {b['repeats']} interleaved repeats"
            + (", CPU time of the thread)" if cfg["device"] == "cpu" else ")"),
            "",
            "The bound of the paper's Memsizer is the same network with every decoder attention "
            "removed (self and cross); the bound of Memsizer with softmax cross-attention has "
            "only its decoder self-attention removed.",
            "", *bound_table(result), "",
            *profile_tables(result["beam_bound"]["profile"]),
        ]
    checks = result.get("targets") or []
    if checks:
        lines += ["### Targets", "",
                  *_header("check", "measured", "target", "met", "bound: attention free",
                           "bound: Memsizer's FLOPs at the no-attention rate")]
        for c in checks:
            value = f"{c['value']:.2f}" if isinstance(c["value"], float) else c["value"]
            bounds = ("-" if c.get(key, NAN) != c.get(key, NAN) else f"{c[key]:.2f}"
                      for key in ("bound_free", "bound_flops"))
            lines.append(_row(c["name"], value, c["target"], "yes" if c["ok"] else "no",
                              *bounds))
        lines += ["", "Bounds, measured on the same network: *attention free* is the value if "
                  "attention cost nothing (the no-attention network's time); *Memsizer's FLOPs "
                  "at the no-attention rate* is the value if Memsizer ran its extra matrix "
                  "products (the projections) as fast per FLOP as the no-attention network "
                  "runs its own."]
    return "\n".join(lines) + "\n"

