"""The benchmark's plots: decoding step and state, beam search, training step against length,
every axis logarithmic."""
import os
from typing import Dict, List, Optional, Tuple

from .report import BEAM_KINDS, DECODE_KINDS, TRAIN_KINDS, _t


def _series(rows, x, y, **match):
    """(x values, y values) of the measured rows that match, sorted by x."""
    points = sorted((r[x], y(r)) for r in rows
                    if "time" in r and all(r.get(k) == v for k, v in match.items()))
    return [p[0] for p in points], [p[1] for p in points]


def decode_series(rows: List[Dict]) -> Dict[str, Tuple[Tuple[list, list], Optional[tuple]]]:
    """What the decoding plot draws, per measured kind of :data:`DECODE_KINDS`: (prefix
    lengths, ms per token) and (prefix lengths, KiB of state per sentence), both for log axes;
    the state is None for a kind that keeps none (0 bytes at every prefix: no point on a log
    axis; the plot says it is left out)."""
    out = {}
    for kind in DECODE_KINDS:
        match = dict(section="decode", kind=kind)
        times = _series(rows, "prefix_len", lambda r: _t(r) * 1e3, **match)
        if not times[0]:
            continue
        state = _series(rows, "prefix_len", lambda r: r["state_bytes_per_sentence"] / 2**10,
                        **match)
        out[kind] = (times, state if all(v > 0 for v in state[1]) else None)
    return out


def plots(result: Dict, out_dir: str, figures: Optional[Dict] = None) -> List[str]:
    """Writes decode.png, beam.png and train.png (those whose section was measured), every axis
    logarithmic; returns their paths. With ``figures`` (a dict) the figures are kept open
    there, by file name, instead of closed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    class PlainLog(matplotlib.ticker.LogFormatter):
        """matplotlib's log-axis labels (minor ones where the range is narrow), as ``%g``."""

        def _num_to_string(self, x, vmin, vmax):
            return f"{x:.3g}"

    rows = result["rows"]
    written = []

    def save(fig, name):
        path = os.path.join(out_dir, name)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        if figures is None:
            plt.close(fig)
        else:
            figures[name] = fig
        written.append(path)

    def label(ax, x, y, title, yscale="log", fontsize=None):
        """Every plot: a length on a log x axis against one quantity, a legend of the kinds."""
        ax.set(xscale="log", yscale=yscale, xlabel=f"{x} (tokens)", ylabel=y, title=title)
        for axis in (ax.xaxis, ax.yaxis):  # 0.9, not 9 x 10^-1 (labels on narrow ranges too)
            axis.set_major_formatter(PlainLog())
            axis.set_minor_formatter(PlainLog())
        ax.legend(fontsize=fontsize)

    if any(r["section"] == "decode" for r in rows):
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
        drawn = decode_series(rows)
        for kind, (times, state) in drawn.items():
            ax1.plot(*times, marker="o", label=kind)
            if state is not None:
                ax2.plot(*state, marker="o", label=kind)
        label(ax1, "prefix length", "ms per token", "Incremental decoding step")
        label(ax2, "prefix length", "KiB per sentence", "Incremental state")
        stateless = [kind for kind, (_, state) in drawn.items() if state is None]
        if stateless:  # nothing to draw on a log axis: said in the legend
            ax2.legend(title=f"not shown: {', '.join(stateless)} (no state, 0 bytes)",
                       title_fontsize=8)
        save(fig, "decode.png")
    if any(r["section"] == "beam" for r in rows):
        fig, ax = plt.subplots(figsize=(6, 4))
        for batch in sorted({r["batch"] for r in rows if r["section"] == "beam"}):
            for kind, style in zip(BEAM_KINDS, ("-", ":", "--")):
                xs, ys = _series(rows, "out_len", lambda r: r["tokens_per_second"],
                                 section="beam", kind=kind, batch=batch)
                ax.plot(xs, ys, style, marker="o", label=f"{kind}, batch {batch}")
        label(ax, "output length", "tokens / s", "Beam search generation", fontsize=7)
        save(fig, "beam.png")
    if any(r["section"] == "train" for r in rows):
        fig, ax = plt.subplots(figsize=(6, 4))
        for kind in TRAIN_KINDS:
            xs, ys = _series(rows, "seq_len", _t, section="train", kind=kind)
            if xs:
                ax.plot(xs, ys, marker="o", label=kind)
        label(ax, "sequence length", "seconds per step", "Training step")
        save(fig, "train.png")
    return written
