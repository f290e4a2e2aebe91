"""Markdown tables, target checks and PNG plots from the benchmark's rows."""

import os
from typing import Dict, List, Optional


def _find(rows, **match) -> Optional[Dict]:
    for row in rows:
        if all(row.get(k) == v for k, v in match.items()):
            return row
    return None


def _t(row):
    return row["time"]["min"] if row else float("nan")


def _mib(value):
    return "n/a" if value is None else f"{value / 2**20:.1f}"


def _ratio(a, b):
    return a / b if b and b == b and b > 0 else float("nan")


def decode_table(rows: List[Dict]) -> List[str]:
    out = [
        "| prefix | memsizer ms/token | transformer ms/token | no-attention ms/token "
        "| transformer / memsizer | memsizer / no-attention | state B/sentence memsizer "
        "| state B/sentence transformer | peak MiB memsizer / transformer | spread memsizer |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for length in sorted({r["prefix_len"] for r in rows if r["section"] == "decode"}):
        m = _find(rows, section="decode", kind="memsizer", prefix_len=length)
        t = _find(rows, section="decode", kind="transformer", prefix_len=length)
        n = _find(rows, section="decode", kind="no-attention", prefix_len=length)
        out.append(
            f"| {length} | {_t(m) * 1e3:.3f} | {_t(t) * 1e3:.3f} | {_t(n) * 1e3:.3f} "
            f"| {_ratio(_t(t), _t(m)):.2f}x | {_ratio(_t(m), _t(n)):.2f}x "
            f"| {m['state_bytes_per_sentence']:.0f} | {t['state_bytes_per_sentence']:.0f} "
            f"| {_mib(m.get('peak_bytes'))} / {_mib(t.get('peak_bytes'))} "
            f"| {m['time']['spread']:.0%} |"
        )
    return out


def beam_table(rows: List[Dict]) -> List[str]:
    kinds = ("memsizer", "memsizer-softmax-cross", "transformer")
    out = [
        "| output length | batch | sent/s: " + " / ".join(kinds) + " | speed-up over transformer: "
        "memsizer / memsizer-softmax-cross | state KiB per sentence: "
        + " / ".join(kinds)
        + " | peak MiB: "
        + " / ".join(kinds)
        + " |",
        "|---|---|---|---|---|---|",
    ]
    keys = sorted({(r["out_len"], r["batch"]) for r in rows if r["section"] == "beam"})
    for out_len, batch in keys:
        found = [
            _find(rows, section="beam", kind=kind, out_len=out_len, batch=batch) for kind in kinds
        ]
        if any(row is None for row in found):
            continue
        *memsizers, t = found
        state = " / ".join(
            "n/a"
            if row.get("state_bytes_per_sentence") is None
            else f"{row['state_bytes_per_sentence'] / 2**10:.0f}"
            for row in found
        )
        out.append(
            f"| {out_len} | {batch} | "
            + " / ".join(f"{row['sentences_per_second']:.2f}" for row in found)
            + " | "
            + " / ".join(f"{_ratio(_t(t), _t(m)):.2f}x" for m in memsizers)
            + f" | {state} | "
            + " / ".join(_mib(row.get("peak_bytes")) for row in found)
            + " |"
        )
    return out


def train_table(rows: List[Dict]) -> List[str]:
    out = [
        "| length | memsizer s/step | transformer s/step | authors' form s/step "
        "| transformer / memsizer | authors / memsizer "
        "| peak MiB memsizer / transformer / authors |",
        "|---|---|---|---|---|---|---|",
    ]
    for length in sorted({r["seq_len"] for r in rows if r["section"] == "train"}):
        m = _find(rows, section="train", kind="memsizer", seq_len=length)
        t = _find(rows, section="train", kind="transformer", seq_len=length)
        a = _find(rows, section="train", kind="memsizer-authors", seq_len=length)
        a_time = f"{_t(a):.3f}" if a else "skipped"
        a_ratio = f"{_ratio(_t(a), _t(m)):.2f}x" if a else "-"
        out.append(
            f"| {length} | {_t(m):.3f} | {_t(t):.3f} | {a_time} | {_ratio(_t(t), _t(m)):.2f}x "
            f"| {a_ratio} | {_mib(m.get('peak_bytes'))} / {_mib(t.get('peak_bytes'))} / "
            f"{_mib(a.get('peak_bytes')) if a else '-'} |"
        )
    return out


def targets(rows: List[Dict]) -> List[Dict]:
    """The decoding targets, evaluated where the measured lengths allow."""
    checks = []
    m64 = _find(rows, section="decode", kind="memsizer", prefix_len=64)
    m1k = _find(rows, section="decode", kind="memsizer", prefix_len=1024)
    t1k = _find(rows, section="decode", kind="transformer", prefix_len=1024)
    n1k = _find(rows, section="decode", kind="no-attention", prefix_len=1024)
    # (numerator, denominator, name, comparison, bound)
    for over, under, name, op, bound in (
        (m1k, m64, "memsizer step at 1024 / step at 64", "<=", 1.25),
        (t1k, m1k, "transformer_lm step / memsizer step at 1024", ">=", 2),
        (m1k, n1k, "memsizer step / no-attention step at 1024", "<=", 1.2),
    ):
        if over and under:
            value = _t(over) / _t(under)
            ok = value <= bound if op == "<=" else value >= bound
            checks.append(dict(name=name, value=value, target=f"{op} {bound:g}", ok=ok))
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
    if any(r["section"] == "decode" for r in rows):
        lines += [
            f"### Incremental decoding, batch {cfg['batch']} (per token, after the prefix)",
            "",
        ]
        lines += decode_table(rows) + [""]
    if any(r["section"] == "beam" for r in rows):
        lines += [
            f"### Beam search (SequenceGenerator, beam {cfg['beam']}, "
            f"source length {cfg['src_len']})",
            "",
        ]
        lines += beam_table(rows) + [""]
    if any(r["section"] == "train" for r in rows):
        lines += [f"### Training step (forward + backward), batch {cfg['train_batch']}", ""]
        lines += train_table(rows) + [""]
    checks = result.get("targets") or []
    if checks:
        lines += ["### Targets", "", "| check | measured | target | met |", "|---|---|---|---|"]
        for c in checks:
            value = f"{c['value']:.2f}" if isinstance(c["value"], float) else c["value"]
            lines.append(
                f"| {c['name']} | {value} | {c['target']} | {'yes' if c['ok'] else 'no'} |"
            )
    return "\n".join(lines) + "\n"


def plots(result: Dict, out_dir: str) -> List[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    written = []

    def save(fig, name):
        path = os.path.join(out_dir, name)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    def series(section, kind, x, y):
        points = sorted((r[x], y(r)) for r in rows if r["section"] == section and r["kind"] == kind)
        return [p[0] for p in points], [p[1] for p in points]

    if any(r["section"] == "decode" for r in rows):
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
        for kind in ("memsizer", "transformer", "no-attention"):
            xs, ys = series("decode", kind, "prefix_len", lambda r: r["time"]["min"] * 1e3)
            ax1.plot(xs, ys, marker="o", label=kind)
            xs, ys = series(
                "decode", kind, "prefix_len", lambda r: r["state_bytes_per_sentence"] / 2**10
            )
            ax2.plot(xs, ys, marker="o", label=kind)
        ax1.set(
            xscale="log",
            xlabel="prefix length (tokens)",
            ylabel="ms per token",
            title="Incremental decoding step",
        )
        ax2.set(
            xscale="log",
            yscale="symlog",
            xlabel="prefix length (tokens)",
            ylabel="KiB per sentence",
            title="Incremental state",
        )
        ax1.legend(), ax2.legend()
        save(fig, "decode.png")
    if any(r["section"] == "beam" for r in rows):
        fig, ax = plt.subplots(figsize=(6, 4))
        for batch in sorted({r["batch"] for r in rows if r["section"] == "beam"}):
            for kind, style in (
                ("memsizer", "-"),
                ("memsizer-softmax-cross", ":"),
                ("transformer", "--"),
            ):
                pts = sorted(
                    (r["out_len"], r["tokens_per_second"])
                    for r in rows
                    if r["section"] == "beam" and r["kind"] == kind and r["batch"] == batch
                )
                ax.plot(
                    [p[0] for p in pts],
                    [p[1] for p in pts],
                    style,
                    marker="o",
                    label=f"{kind}, batch {batch}",
                )
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="output length (tokens)",
            ylabel="tokens / s",
            title="Beam search generation",
        )
        ax.legend(fontsize=7)
        save(fig, "beam.png")
    if any(r["section"] == "train" for r in rows):
        fig, ax = plt.subplots(figsize=(6, 4))
        for kind in ("memsizer", "transformer", "memsizer-authors"):
            xs, ys = series("train", kind, "seq_len", lambda r: r["time"]["min"])
            if xs:
                ax.plot(xs, ys, marker="o", label=kind)
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="sequence length (tokens)",
            ylabel="seconds per step",
            title="Training step",
        )
        ax.legend()
        save(fig, "train.png")
    return written
