"""The benchmark command runs in --quick mode and its JSON holds every field."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_quick_benchmark_writes_json_markdown_and_plots(tmp_path):
    out = tmp_path / "bench"
    proc = subprocess.run(
        [sys.executable, "-m", "memsizer_fairseq.benchmark", "--quick", "--threads", "1",
         "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "benchmark.json").read_text())
    assert {"machine", "config", "rows", "targets"} <= set(result)
    sections = {row["section"] for row in result["rows"]}
    assert sections == {"decode", "beam", "train"}
    kinds = {(row["section"], row["kind"]) for row in result["rows"]}
    assert {("decode", "memsizer"), ("decode", "transformer"), ("decode", "no-attention"),
            ("beam", "memsizer"), ("beam", "transformer"), ("train", "memsizer"),
            ("train", "transformer"), ("train", "memsizer-authors")} <= kinds
    for row in result["rows"]:
        assert row["time"]["min"] > 0 and row["time"]["n"] == result["config"]["repeats"]
        assert "peak_bytes" in row
        if row["section"] == "decode":
            assert row["state_bytes_per_sentence"] >= 0
            assert (row["state_bytes_per_sentence"] > 0) == (row["kind"] != "no-attention")
        if row["section"] == "beam":
            assert row["tokens_per_second"] > 0 and row["sentences_per_second"] > 0
    decode = {(r["kind"], r["prefix_len"]): r for r in result["rows"] if r["section"] == "decode"}
    # Memsizer's state does not grow with the prefix; softmax attention's cache does.
    assert decode[("memsizer", 16)]["state_bytes_per_sentence"] == decode[("memsizer", 64)]["state_bytes_per_sentence"]
    assert decode[("transformer", 64)]["state_bytes_per_sentence"] > decode[("transformer", 16)]["state_bytes_per_sentence"]
    for name in ("benchmark.md", "decode.png", "beam.png", "train.png"):
        assert (out / name).stat().st_size > 0
    assert "Incremental decoding" in proc.stdout
