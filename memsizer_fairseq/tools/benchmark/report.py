"""Markdown tables and target checks from the benchmark's rows (pandas frames)."""
from typing import Dict, List, Optional, Sequence

import pandas as pd

from ..toolkit.tables import cell, columns_table, markdown as table_lines

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
# the beam-bound section's (Memsizer, bound) pairs
BOUND_PAIRS = (("memsizer", "memsizer-bound"),
               ("memsizer-softmax-cross", "memsizer-softmax-cross-bound"))
NAN = float("nan")


def _t(row, stat: str = "min"):
    return row["time"][stat] if row and "time" in row else NAN


def wide(rows: List[Dict], section: str, keys: Sequence[str], stat: str = "min") -> pd.DataFrame:
    """A section's rows, one line per value of ``keys`` (sorted) and a column per (quantity,
    kind); ``seconds`` is each measurement's ``stat`` of its timings. Values keep their type
    (a peak that could not be measured stays None)."""
    found = [dict(r, seconds=_t(r, stat)) for r in rows if r["section"] == section]
    return pd.DataFrame(found, dtype=object).set_index([*keys, "kind"]).unstack("kind")


def _field(frame: pd.DataFrame, name: str, kinds: Sequence[str]) -> pd.DataFrame:
    """The column of each kind for quantity ``name`` (NaN where it is not measured)."""
    return pd.DataFrame({kind: frame[name][kind] if (name, kind) in frame.columns else NAN
                         for kind in kinds}, index=frame.index)


def ratio(a, b) -> float:
    """``a / b``; NaN where either is missing or ``b`` is not positive."""
    if a is None or b is None or a != a or not b == b or b <= 0:
        return NAN
    return a / b


def _ratio(a, b) -> List[float]:  # :func:`ratio` of each line
    return list(map(ratio, a, b))


def _x(value) -> str:
    return cell(value, lambda v: f"{v:.2f}x")


def _mib(value) -> str:
    return "n/a" if value is None else cell(value, lambda v: f"{v / 2**20:.1f}")


def _joined(values: pd.DataFrame, form) -> List[str]:
    """``a / b / c``: each line's values (one column each) formatted by ``form``."""
    return [" / ".join(map(form, line)) for line in values.itertuples(index=False)]


def _form(header: str):
    """A column's cell format, by its header (text cells are shown as they are)."""
    for ending, form in (("ms/token", ".3f"), ("s/step", ".3g"), (" s", ".3f"),
                         ("spread memsizer", ".0%")):
        if header.endswith(ending):
            return form
    return ".0f" if header.startswith("state B/") else _x if " / " in header else ""


def decode_table(rows: List[Dict]) -> List[str]:
    w = wide(rows, "decode", ["prefix_len"])
    kinds = ("memsizer", "transformer", "no-attention", "memsizer-fla")
    s, state, peak, flops = (_field(w, name, kinds) for name in (
        "seconds", "state_bytes_per_sentence", "peak_bytes", "flops"))
    columns = [("prefix", w.index),
               *((f"{kind} ms/token", s[kind] * 1e3) for kind in kinds[:3]),
               ("transformer / memsizer", _ratio(s["transformer"], s["memsizer"])),
               ("memsizer / no-attention", _ratio(s["memsizer"], s["no-attention"])),
               ("matrix-product FLOPs memsizer / no-attention",
                _ratio(flops["memsizer"], flops["no-attention"])),
               ("state B/sentence memsizer", state["memsizer"]),
               ("state B/sentence transformer", state["transformer"]),
               ("peak MiB memsizer / transformer", _joined(peak[list(kinds[:2])], _mib)),
               ("spread memsizer", [time["spread"] for time in w["time"]["memsizer"]])]
    if "memsizer-fla" in w["seconds"].columns:
        columns += [("memsizer-fla ms/token", s["memsizer-fla"] * 1e3),
                    ("memsizer-fla / no-attention", _ratio(s["memsizer-fla"], s["no-attention"])),
                    ("state B/sentence memsizer-fla", state["memsizer-fla"]),
                    ("peak MiB memsizer-fla", peak["memsizer-fla"].map(_mib))]
    return columns_table(columns, _form)


def beam_table(rows: List[Dict]) -> List[str]:
    joined = " / ".join(BEAM_KINDS)
    w = wide(rows, "beam", ["out_len", "batch"])
    w = w[_field(w, "seconds", BEAM_KINDS).notna().all(axis=1)]  # every kind measured
    s, state = _field(w, "seconds", BEAM_KINDS), _field(w, "state_bytes_per_sentence", BEAM_KINDS)
    speed_ups = pd.DataFrame({kind: _ratio(s["transformer"], s[kind]) for kind in BEAM_KINDS[:2]})
    return columns_table([
        ("output length", w.index.get_level_values(0)), ("batch", w.index.get_level_values(1)),
        (f"sent/s: {joined}", _joined(_field(w, "sentences_per_second", BEAM_KINDS),
                                      lambda v: f"{v:.2f}")),
        ("speed-up over transformer: memsizer / memsizer-softmax-cross", _joined(speed_ups, _x)),
        (f"state KiB per sentence: {joined}",
         _joined(state, lambda v: "n/a" if v is None else f"{v / 2**10:.0f}")),
        (f"peak MiB: {joined}", _joined(_field(w, "peak_bytes", BEAM_KINDS), _mib))], _form)


def train_table(rows: List[Dict], stat: str = "min") -> List[str]:
    """Seconds per training step (the ``stat`` of each configuration's timings), their ratios to
    memsizer's, and peak memory, for every kind of :data:`TRAIN_KINDS` in ``rows``; ``-`` where a
    configuration was skipped or failed."""
    w = wide(rows, "train", ["seq_len"], stat)
    kinds = [kind for kind in TRAIN_KINDS if kind in w["seconds"].columns]
    others = [kind for kind in kinds if kind != "memsizer"] if "memsizer" in kinds else []
    s, peak, flops = (_field(w, name, kinds) for name in ("seconds", "peak_bytes", "flops"))
    names = " / ".join(TRAIN_KINDS[kind] for kind in others)

    def to_memsizer(values):
        return _joined(pd.DataFrame({k: _ratio(values[k], values["memsizer"]) for k in others}),
                       _x)

    return columns_table([
        ("length", w.index), *((f"{TRAIN_KINDS[k]} s/step", s[k]) for k in kinds),
        *((f"{TRAIN_KINDS[k]} / memsizer", _ratio(s[k], s["memsizer"])) for k in others),
        ("peak MiB " + " / ".join(TRAIN_KINDS[k] for k in kinds), _joined(peak, _mib)),
        *([(f"peak / memsizer's: {names}", to_memsizer(peak)),
           (f"matrix-product FLOPs / memsizer's: {names}", to_memsizer(flops))] if others else [])],
        _form)


def bound_ratios(rows: List[Dict], target: float) -> List[Dict]:
    """Per (source, target) length of the beam-bound section, in the order measured: each
    kind's seconds (minimum of the repeats) and, for each Memsizer of :data:`BOUND_PAIRS`, its
    time over its bound's and whether that meets ``target`` (``<=``)."""
    out = []
    bound_rows = [r for r in rows if r["section"] == "beam_bound"]
    for src, length in dict.fromkeys((r["src_len"], r["out_len"]) for r in bound_rows):
        seconds = {r["kind"]: _t(r) for r in bound_rows
                   if (r["src_len"], r["out_len"]) == (src, length)}
        entry = {"src_len": src, "out_len": length, "seconds": seconds}
        for memsizer, bound in BOUND_PAIRS:
            value = ratio(seconds.get(memsizer, NAN), seconds.get(bound, NAN))
            entry[f"{memsizer}/bound"], entry[f"{memsizer}/bound ok"] = value, value <= target
        out.append(entry)
    return out


def bound_table(result: Dict) -> List[str]:
    target = result["beam_bound"]["target"]
    frame = pd.json_normalize(result["beam_bound"]["ratios"])
    seconds = frame.filter(like="seconds.").rename(columns=lambda c: c[len("seconds."):])
    seconds = seconds.reindex(columns=["transformer", *(k for pair in BOUND_PAIRS for k in pair)])
    columns = [("source -> target", frame["src_len"].astype(str) + " -> "
                + frame["out_len"].astype(str)), ("transformer s", seconds["transformer"])]
    for (memsizer, bound), name in zip(BOUND_PAIRS, ("memsizer", "softmax-cross")):
        ratios, met = frame[f"{memsizer}/bound"], frame[f"{memsizer}/bound ok"]
        columns += [(f"{name} s", seconds[memsizer]), (f"{name} bound s", seconds[bound]),
                    (f"{name} / bound", ratios),
                    (f"target <= {target:g}", [cell(r, lambda _, ok=ok: "met" if ok else "not met")
                                               for r, ok in zip(ratios, met)])]
    return columns_table(
        [*columns, ("transformer / memsizer", _ratio(seconds["transformer"], seconds["memsizer"]))],
        _form)


def profile_tables(profile: Dict) -> List[str]:
    """The profile's top ops, Memsizer's beside its bound's (self CPU ms and calls)."""
    out = [f"Profile (torch.profiler, CPU, one beam search at {profile['src_len']} -> "
           f"{profile['out_len']}): the ops with the most self CPU time.", ""]
    names = {"memsizer": "paper's Memsizer",
             "memsizer-bound": "its bound (decoder attention removed)"}
    for kind, found in profile["kinds"].items():
        ops = pd.DataFrame(found["ops"])
        ops["op"] = "`" + ops["name"] + "`"
        ops["share"] = [ratio(ms, found["total_self_cpu_ms"]) for ms in ops["self_cpu_ms"]]
        out += [f"{names.get(kind, kind)}: {found['total_self_cpu_ms']:.1f} ms self CPU in all",
                "", *table_lines(ops, {"op": "", "self_cpu_ms": ("self CPU ms", ".1f"),
                                       "share": ".0%", "calls": ""}), ""]
    return out


def _find(rows, **match) -> Optional[Dict]:
    return next((r for r in rows if all(r.get(k) == v for k, v in match.items())), None)


def targets(rows: List[Dict]) -> List[Dict]:
    """The targets, evaluated where the measured lengths allow, each with two bounds measured
    on the same network: ``bound_free``, the value if attention cost nothing (the no-attention
    network's time), and ``bound_flops``, the value if Memsizer ran at the no-attention
    network's rate of matrix-product FLOPs (its projections are extra products)."""
    longest = max((r["seq_len"] for r in rows if r["section"] == "train"), default=None)
    m64 = _find(rows, section="decode", kind="memsizer", prefix_len=64)
    m1k, t1k, n1k = (_find(rows, section="decode", kind=kind, prefix_len=1024)
                     for kind in ("memsizer", "transformer", "no-attention"))
    mt, tt, nt = (_find(rows, section="train", kind=kind, seq_len=longest)
                  for kind in ("memsizer", "transformer", "no-attention"))

    def flops(row):
        return row.get("flops", NAN) if row else NAN

    def speed_up_bounds(transformer, memsizer, free):
        """(transformer / no attention, that over Memsizer's FLOP ratio to no attention)."""
        if not free:
            return NAN, NAN
        best = ratio(_t(transformer), _t(free))
        return best, ratio(best, ratio(flops(memsizer), flops(free)))

    checks = []
    for over, under, name, op, target, bounds in (
        (m1k, m64, "memsizer step at 1024 / step at 64", "<=", 1.25, (NAN, NAN)),
        (t1k, m1k, "transformer_lm step / memsizer step at 1024", ">=", 7,
         speed_up_bounds(t1k, m1k, n1k)),
        (m1k, n1k, "memsizer step / no-attention step at 1024", "<=", 1.2,
         (1.0, ratio(flops(m1k), flops(n1k)))),
        (tt, mt, f"transformer_lm training step / memsizer's at {longest}", ">=", 4,
         speed_up_bounds(tt, mt, nt)),
    ):
        if over and under:
            value = _t(over) / _t(under)
            checks.append(dict(name=name, value=value, target=f"{op} {target:g}",
                               ok=value <= target if op == "<=" else value >= target,
                               bound_free=bounds[0], bound_flops=bounds[1]))
    beams = [r for r in rows if r["section"] == "beam" and r["kind"] == "memsizer"]
    if beams:
        slower = [(r["out_len"], r["batch"]) for r in beams if _t(r) >= _t(_find(
            rows, section="beam", kind="transformer", out_len=r["out_len"], batch=r["batch"]))]
        checks.append(dict(name="beam search: memsizer faster at every (length, batch)",
                           value=f"slower at {slower}" if slower else "faster everywhere",
                           target="faster everywhere", ok=not slower))
    return checks


def _targets_lines(checks: List[Dict]) -> List[str]:
    frame = pd.DataFrame(checks).reindex(columns=["name", "value", "target", "ok", "bound_free",
                                                  "bound_flops"])
    return ["### Targets", "", *columns_table([
        ("check", frame["name"]), ("measured", frame["value"]), ("target", frame["target"]),
        ("met", frame["ok"].map({True: "yes", False: "no"})),
        ("bound: attention free", frame["bound_free"]),
        ("bound: Memsizer's FLOPs at the no-attention rate", frame["bound_flops"])],
        lambda header: ".2f"),
        "", "Bounds, measured on the same network: *attention free* is the value if attention "
        "cost nothing (the no-attention network's time); *Memsizer's FLOPs at the no-attention "
        "rate* is the value if Memsizer ran its extra matrix products (the projections) as fast "
        "per FLOP as the no-attention network runs its own."]


def markdown(result: Dict) -> str:
    rows, cfg = result["rows"], result["config"]
    lines = [
        f"Machine: {result['machine']}. Models: d={cfg['dim']}, {cfg['layers']} layers, "
        f"{cfg['heads']} heads, vocabulary {cfg['vocab']}, dtype {cfg['dtype']}, "
        f"device {cfg['device']}; times are the minimum of {cfg['repeats']} interleaved repeats "
        "(spread = (max-min)/min).", "",
        *[f"Note: {note}" for note in result.get("notes", [])],
        *([""] if result.get("notes") else [])]
    for section, title, table in (
        ("decode", f"Incremental decoding, batch {cfg['batch']} (per token, after the prefix)",
         decode_table),
        ("beam", f"Beam search (SequenceGenerator, beam {cfg['beam']}, source length "
         f"{cfg['src_len']})", beam_table),
        ("train", f"Training step (forward + backward), batch {cfg['train_batch']}", train_table),
    ):
        if any(r["section"] == section for r in rows):
            lines += [f"### {title}", "", *table(rows), ""]
    if result.get("beam_bound"):
        b = cfg["bound"]
        lines += [
            f"### Beam search at the bound (SequenceGenerator, {b['sentences']} sentences, beam "
            f"{b['beam']}, d={b['dim']}, {b['layers']}+{b['layers']} layers, vocabulary "
            f"{b['vocab']}, random weights, {b['threads']} thread(s), every hypothesis exactly "
            f"the target length; minimum of {b['repeats']} interleaved repeats"
            + (", CPU time of the thread)" if cfg["device"] == "cpu" else ")"), "",
            "The bound of the paper's Memsizer is the same network with every decoder attention "
            "removed (self and cross); the bound of Memsizer with softmax cross-attention has "
            "only its decoder self-attention removed.", "", *bound_table(result), "",
            *profile_tables(result["beam_bound"]["profile"])]
    if result.get("targets"):
        lines += _targets_lines(result["targets"])
    return "\n".join(lines) + "\n"
