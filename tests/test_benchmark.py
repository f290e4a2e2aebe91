"""The benchmark command runs in --quick mode and its JSON holds every field."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_quick_benchmark_writes_json_markdown_and_plots(tmp_path):
    out = tmp_path / "bench"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "memsizer_fairseq.benchmark",
            "--quick",
            "--threads",
            "1",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "benchmark.json").read_text())
    assert {"machine", "config", "rows", "targets"} <= set(result)
    sections = {row["section"] for row in result["rows"]}
    assert sections == {"decode", "beam", "train"}
    kinds = {(row["section"], row["kind"]) for row in result["rows"]}
    assert {
        ("decode", "memsizer"),
        ("decode", "transformer"),
        ("decode", "no-attention"),
        ("beam", "memsizer"),
        ("beam", "memsizer-softmax-cross"),
        ("beam", "transformer"),
        ("train", "memsizer"),
        ("train", "transformer"),
        ("train", "memsizer-authors"),
    } <= kinds
    for row in result["rows"]:
        assert row["time"]["min"] > 0 and row["time"]["n"] == result["config"]["repeats"]
        assert "peak_bytes" in row
        if row["section"] == "decode":
            assert row["state_bytes_per_sentence"] >= 0
            assert (row["state_bytes_per_sentence"] > 0) == (row["kind"] != "no-attention")
        if row["section"] == "beam":
            assert row["tokens_per_second"] > 0 and row["sentences_per_second"] > 0
            assert row["state_bytes_per_sentence"] > 0
    decode = {(r["kind"], r["prefix_len"]): r for r in result["rows"] if r["section"] == "decode"}
    # Memsizer's state does not grow with the prefix; softmax attention's cache does.
    assert (
        decode[("memsizer", 16)]["state_bytes_per_sentence"]
        == decode[("memsizer", 64)]["state_bytes_per_sentence"]
    )
    assert (
        decode[("transformer", 64)]["state_bytes_per_sentence"]
        > decode[("transformer", 16)]["state_bytes_per_sentence"]
    )
    beam = {
        (r["kind"], r["batch"]): r["state_bytes_per_sentence"]
        for r in result["rows"]
        if r["section"] == "beam"
    }
    # softmax cross-attention caches every source position of every beam
    assert beam[("memsizer-softmax-cross", 1)] > beam[("memsizer", 1)]
    for name in ("benchmark.md", "decode.png", "beam.png", "train.png"):
        assert (out / name).stat().st_size > 0
    assert "Incremental decoding" in proc.stdout


def test_read_init_gain_scales_the_initial_read_exactly():
    """The read is linear in r, and LN(r)'s bias starts at zero: the gain scales the output."""
    import torch

    from memsizer_fairseq.modules import MemsizerAttention

    x, source = (
        torch.randn(5, 2, 16, dtype=torch.float64),
        torch.randn(7, 2, 16, dtype=torch.float64),
    )
    for role in ("causal", "cross"):
        outputs = []
        for gain in (1.0, 3.0):
            torch.manual_seed(0)
            module = MemsizerAttention(
                16,
                2,
                8,
                causal=role == "causal",
                self_attention=role == "causal",
                encoder_decoder_attention=role == "cross",
                read_init_gain=gain,
            ).double()
            assert torch.all(module.r_norm.weight == gain)
            written = x if role == "causal" else source
            outputs.append(module(x, written, written)[0])
        torch.testing.assert_close(outputs[1], 3.0 * outputs[0])


def test_init_scale_report_shows_the_quiet_read_and_its_fix():
    from memsizer_fairseq.benchmark.init_scale import markdown, measure

    rows = {row["label"]: row for row in measure(dim=64, heads=4, batch=4)}
    assert rows["softmax, cross"]["rms_vs_softmax"] == 1.0
    paper, fixed = rows["paper MT, cross"], rows["paper MT, cross, --read-init-gain sqrt-k"]
    assert paper["rms_vs_softmax"] < 0.5  # the paper's read starts quiet
    assert fixed["rms"] > 4 * paper["rms"]  # other random weights: about sqrt(32) = 5.7x
    assert "| paper MT, cross | 32 |" in markdown(list(rows.values()), 64, 4)
