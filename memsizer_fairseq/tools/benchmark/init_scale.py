"""``python -m memsizer_fairseq.tools.benchmark.init_scale``: how loud each attention reads at init.

Builds one freshly initialised attention layer of each kind (fairseq's softmax attention, and
Memsizer with the paper's and other settings), feeds it unit-variance inputs (what a layer norm
hands it) and prints, per layer, the RMS of its output and the RMS of the part of the output that
changes with the reading position (what the layer can tell positions apart with). Seeded and
on the CPU: the numbers are the same on every run.
"""
import argparse
from typing import Dict, List, Optional, Sequence

import torch
from fairseq.modules import MultiheadAttention

from ..toolkit.plugin import MemsizerAttention

# (label, role, slots, q_init_scale, kv_init_scale, read_init_gain); gain None: sqrt(slots)
MEMSIZER_SETTINGS = (
    ("paper MT, causal", "causal", 4, 8.0, 8.0, 1.0),
    ("paper MT, cross", "cross", 32, 8.0, 8.0, 1.0),
    ("paper LM, causal", "causal", 32, 32.0, 1.0, 1.0),
    ("32 / 128 slots, causal", "causal", 32, 8.0, 8.0, 1.0),
    ("32 / 128 slots, cross", "cross", 128, 8.0, 8.0, 1.0),
    ("paper MT, causal, --read-init-gain sqrt-k", "causal", 4, 8.0, 8.0, None),
    ("paper MT, cross, --read-init-gain sqrt-k", "cross", 32, 8.0, 8.0, None),
    ("paper LM, causal, --read-init-gain sqrt-k", "causal", 32, 32.0, 1.0, None),
)


def output_scale(output: torch.Tensor) -> Dict[str, float]:
    """RMS of ``T x B x d`` outputs, and RMS of their deviation from each sentence's mean over
    the reading positions."""
    varying = output - output.mean(dim=0, keepdim=True)
    return {"rms": output.pow(2).mean().sqrt().item(),
            "position_rms": varying.pow(2).mean().sqrt().item()}


@torch.no_grad()
def measure(dim: int = 256, heads: int = 4, tgt_len: int = 20, src_len: int = 30,
            batch: int = 16, seed: int = 0) -> List[Dict]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(tgt_len, batch, dim, generator=generator)
    source = torch.randn(src_len, batch, dim, generator=generator)
    future = torch.triu(torch.full((tgt_len, tgt_len), float("-inf")), 1)
    torch.manual_seed(seed)
    rows = []
    causal = MultiheadAttention(dim, heads, self_attention=True)
    rows.append(dict(label="softmax, causal", role="causal", slots=None,
                     **output_scale(causal(x, x, x, attn_mask=future)[0])))
    cross = MultiheadAttention(dim, heads, kdim=dim, vdim=dim, encoder_decoder_attention=True)
    rows.append(dict(label="softmax, cross", role="cross", slots=None,
                     **output_scale(cross(x, source, source, static_kv=True)[0])))
    for label, role, slots, q_scale, kv_scale, gain in MEMSIZER_SETTINGS:
        module = MemsizerAttention(
            dim, heads, slots, causal=role == "causal", self_attention=role == "causal",
            encoder_decoder_attention=role == "cross", q_init_scale=q_scale,
            kv_init_scale=kv_scale, read_init_gain=slots ** 0.5 if gain is None else gain)
        written = x if role == "causal" else source
        rows.append(dict(label=label, role=role, slots=slots,
                         **output_scale(module(x, written, written)[0])))
    reference = {row["role"]: row for row in rows if row["slots"] is None}
    for row in rows:
        row["rms_vs_softmax"] = row["rms"] / reference[row["role"]]["rms"]
    return rows


def markdown(rows: List[Dict], dim: int, heads: int) -> str:
    lines = [f"Output scale at initialisation (d {dim}, {heads} heads, unit-variance inputs)", "",
             "| attention | slots | output RMS | RMS across reading positions | "
             "RMS / softmax's |",
             "|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['label']} | {row['slots'] or '-'} | {row['rms']:.3f} | "
                     f"{row['position_rms']:.3f} | {row['rms_vs_softmax']:.2f}x |")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m memsizer_fairseq.tools.benchmark.init_scale",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--heads", type=int, default=4)
    args = parser.parse_args(argv)
    print(markdown(measure(args.dim, args.heads), args.dim, args.heads))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
