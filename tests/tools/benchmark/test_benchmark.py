"""The benchmark commands run in --quick mode and their JSON holds every field; bad options are
refused before anything runs; the fused-attention baseline computes what fairseq's does."""
import copy
import importlib
import json
import os
import subprocess
import sys

import pytest
import torch

from memsizer_fairseq.tools.toolkit.fairseq_cli import REPO_ROOT as ROOT

BENCHMARK = "memsizer_fairseq.tools.benchmark.__main__"
ALIGNMENT = "memsizer_fairseq.tools.benchmark.alignment"
TRAINING_MEMORY = "memsizer_fairseq.tools.benchmark.training_memory"


def test_quick_benchmark_writes_json_markdown_and_plots(tmp_path):
    out = tmp_path / "bench"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "memsizer_fairseq.tools.benchmark",
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
    assert sections == {"decode", "beam", "train", "beam_bound"}
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
        ("train", "transformer-sdpa"),
        ("train", "memsizer-authors"),
        ("train", "no-attention"),
    } <= kinds
    _check_beam_bound(result, proc.stdout)
    # on a CPU flash-linear-attention's kernels are not timed, and the report says why
    assert not any(row["kind"] == "memsizer-fla" for row in result["rows"])
    assert any("memsizer-fla" in note and "CUDA" in note for note in result["notes"])
    assert "Note: memsizer-fla" in proc.stdout
    for row in result["rows"]:
        repeats = result["config"]["bound" if row["section"] == "beam_bound" else "repeats"]
        if row["section"] == "beam_bound":
            repeats = repeats["repeats"]
        assert row["time"]["min"] > 0 and row["time"]["n"] == repeats
        assert "peak_bytes" in row
        if row["section"] in ("decode", "train"):
            assert row["flops"] > 0
        if row["section"] == "decode":
            assert row["state_bytes_per_sentence"] >= 0
            assert (row["state_bytes_per_sentence"] > 0) == (row["kind"] != "no-attention")
        if row["section"] == "beam":
            assert row["tokens_per_second"] > 0 and row["sentences_per_second"] > 0
            assert row["state_bytes_per_sentence"] > 0
    decode = {(r["kind"], r["prefix_len"]): r for r in result["rows"] if r["section"] == "decode"}
    # the projections are matrix products the network without attention does not have
    assert decode[("memsizer", 64)]["flops"] > decode[("no-attention", 64)]["flops"]
    train = {(r["kind"], r["seq_len"]): r for r in result["rows"] if r["section"] == "train"}
    assert train[("transformer", 64)]["flops"] > train[("no-attention", 64)]["flops"]
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


def _check_beam_bound(result, stdout):
    """The quick beam-bound section: every kind at every length, each Memsizer's ratio to its
    bound beside the target, and the profile of Memsizer and its bound."""
    from memsizer_fairseq.tools.benchmark.runner import BOUND_KINDS

    bound = result["config"]["bound"]
    rows = [row for row in result["rows"] if row["section"] == "beam_bound"]
    assert {(r["kind"], r["src_len"], r["out_len"]) for r in rows} == {
        (kind, src, out) for kind in BOUND_KINDS for src, out in bound["lengths"]}
    section = result["beam_bound"]
    assert section["target"] == 1.12
    assert [[e["src_len"], e["out_len"]] for e in section["ratios"]] == bound["lengths"]
    for entry in section["ratios"]:
        for memsizer in ("memsizer", "memsizer-softmax-cross"):
            ratio = entry[f"{memsizer}/bound"]
            assert ratio > 0 and entry[f"{memsizer}/bound ok"] == (ratio <= 1.12)
        assert set(entry["seconds"]) == set(BOUND_KINDS)
    profile = section["profile"]
    assert [profile["src_len"], profile["out_len"]] == bound["lengths"][0]
    for kind in ("memsizer", "memsizer-bound"):
        ops = profile["kinds"][kind]["ops"]
        assert 0 < len(ops) <= 10 and all(op["self_cpu_ms"] >= 0 for op in ops)
    assert "### Beam search at the bound" in stdout and "target <= 1.12" in stdout
    assert "self CPU ms" in stdout


def test_fused_attention_counts_the_flops_of_its_two_products():
    """PyTorch's FLOP table lacks the CPU kernels of scaled_dot_product_attention (fairseq's
    attention calls them): counted here as the two matrix products they compute, forward and
    backward."""
    from memsizer_fairseq.tools.benchmark.measure import counted_flops

    q, k, v = (torch.randn(2, 3, 16, 8, requires_grad=True) for _ in range(3))

    def fused():
        return torch.nn.functional.scaled_dot_product_attention(q, k, v)

    def explicit():
        return torch.softmax(q @ k.transpose(-1, -2) / 8 ** 0.5, dim=-1) @ v

    two_products = 2 * (2 * 6 * 16 * 16 * 8)
    assert counted_flops(fused) == counted_flops(explicit) == two_products
    # backward: the two products' four gradients, plus the scores recomputed (flash kernels)
    assert counted_flops(lambda: fused().sum().backward()) == two_products * 7 // 2


def test_targets_name_the_bound_any_attention_allows():
    from memsizer_fairseq.tools.benchmark import report

    def row(section, kind, seconds, flops, **where):
        return dict(section=section, kind=kind, time={"min": seconds}, flops=flops, **where)

    rows = [
        row("decode", "memsizer", 1.3, 120, prefix_len=1024),
        row("decode", "no-attention", 1.0, 100, prefix_len=1024),
        row("decode", "transformer", 6.5, 300, prefix_len=1024),
        row("train", "memsizer", 2.0, 10, seq_len=4096),
        row("train", "transformer", 7.0, 30, seq_len=4096),
        row("train", "no-attention", 1.75, 8, seq_len=4096),
    ]
    checks = {c["name"]: c for c in report.targets(rows)}
    step = checks["memsizer step / no-attention step at 1024"]
    assert (step["value"], step["bound_free"], step["ok"]) == (1.3, 1.0, False)
    assert step["bound_flops"] == pytest.approx(1.2)
    speed = checks["transformer_lm step / memsizer step at 1024"]
    assert (speed["value"], speed["bound_free"], speed["ok"]) == (5.0, 6.5, False)
    assert speed["bound_flops"] == pytest.approx(6.5 / 1.2)
    training = checks["transformer_lm training step / memsizer's at 4096"]
    assert (training["value"], training["bound_free"], training["ok"]) == (3.5, 4.0, False)
    assert training["bound_flops"] == pytest.approx(4.0 / 1.25)
    assert "| 1.30 | <= 1.2 | no | 1.00 | 1.20 |" in report.markdown(
        {"rows": [], "targets": list(checks.values()), "machine": "m",
         "config": dict(dim=1, layers=1, heads=1, vocab=5, dtype="fp32", device="cpu",
                        repeats=1, batch=8, beam=4, src_len=32, train_batch=1)})


def test_read_init_gain_scales_the_initial_read_exactly():
    """The read is linear in r, and LN(r)'s bias starts at zero: the gain scales the output."""
    import torch

    from memsizer_fairseq.models.attention import MemsizerAttention

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
                read_init_gain=gain, q_init_scale=1.0, kv_init_scale=1.0,
            ).double()
            assert torch.all(module.r_norm.weight == gain)
            written = x if role == "causal" else source
            outputs.append(module(x, written, written)[0])
        torch.testing.assert_close(outputs[1], 3.0 * outputs[0])


def test_init_scale_report_shows_the_quiet_read_and_its_fix():
    from memsizer_fairseq.tools.benchmark.init_scale import markdown, measure

    rows = {row["label"]: row for row in measure(dim=64, heads=4, batch=4)}
    assert rows["softmax, cross"]["rms_vs_softmax"] == 1.0
    paper, fixed = rows["paper MT, cross"], rows["paper MT, cross, --read-init-gain sqrt-k"]
    assert paper["rms_vs_softmax"] < 0.5  # the paper's read starts quiet
    assert fixed["rms"] > 4 * paper["rms"]  # other random weights: about sqrt(32) = 5.7x
    assert "| paper MT, cross | 32 |" in markdown(list(rows.values()), 64, 4)


def test_training_memory_quick_mode_measures_every_kind_in_its_own_process(tmp_path):
    from memsizer_fairseq.tools.benchmark.training_memory import KINDS

    out = tmp_path / "training.json"
    proc = subprocess.run(
        [sys.executable, "-m", TRAINING_MEMORY, "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    rows = {(row["kind"], row["seq_len"]): row for row in result["rows"]}
    assert set(rows) == {(kind, length) for kind in KINDS for length in (256, 512)}
    for row in rows.values():
        assert "error" not in row, row
        assert row["finite"] and row["time"]["median"] > 0 and row["time"]["n"] == 1
        assert row["peak_bytes"] > 0  # resident-set growth of the configuration's own process
    params = {kind: rows[(kind, 512)]["params"] for kind in KINDS}
    assert params["transformer"] == params["transformer-sdpa"]
    assert params["memsizer"] == params["memsizer-quadratic"] == params["memsizer-authors"]
    # the authors' form keeps a k x d memory per position
    assert rows[("memsizer-authors", 512)]["peak_bytes"] > rows[("memsizer", 512)]["peak_bytes"]
    assert "| 512 |" in proc.stdout and "transformer SDPA s/step" in proc.stdout


def test_lm_kinds_pin_the_read_form_and_the_attention():
    from memsizer_fairseq.tools.benchmark import runner
    from memsizer_fairseq.tools.benchmark.models import SdpaSelfAttention
    from memsizer_fairseq.models.attention import MemsizerAttention

    cfg = dict(vocab=20, dim=16, layers=2, heads=2, device="cpu", dtype="fp32")
    for kind, form in (
        ("memsizer", "auto"),
        ("memsizer-quadratic", "quadratic"),
        ("memsizer-authors", "authors"),
    ):
        layers = [m for m in runner.lm_model(kind, cfg, 32).modules()
                  if isinstance(m, MemsizerAttention)]
        assert len(layers) == 2 and all(layer.causal_form == form for layer in layers)
    model = runner.lm_model("transformer-sdpa", cfg, 32)
    assert all(isinstance(layer.self_attn, SdpaSelfAttention) for layer in model.decoder.layers)


def test_sdpa_attention_computes_what_fairseq_attention_computes(monkeypatch):
    from fairseq.modules import MultiheadAttention

    from memsizer_fairseq.tools.benchmark import runner
    from memsizer_fairseq.tools.benchmark.models import use_sdpa_attention

    cfg = dict(vocab=50, dim=32, layers=2, heads=4, device="cpu", dtype="fp32")
    reference = runner.lm_model("transformer", cfg, 64).train()  # dropout 0
    fused = use_sdpa_attention(copy.deepcopy(reference))
    tokens = torch.randint(4, 50, (3, 40))

    def outputs_and_grads(model):
        logits, _ = model(tokens)
        logits.square().mean().backward()
        grads = {name: p.grad for name, p in model.named_parameters()}
        return logits, grads

    expected, expected_grads = outputs_and_grads(reference)
    forward, calls = MultiheadAttention.forward, []

    def counted(self, *args, **kwargs):
        calls.append(type(self).__name__)
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(MultiheadAttention, "forward", counted)
    got, grads = outputs_and_grads(fused)
    assert calls == []  # every layer took the fused path
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    for name, grad in grads.items():
        torch.testing.assert_close(grad, expected_grads[name], rtol=1e-5, atol=1e-5)
    # incremental decoding is fairseq's own forward, with the same weights
    reference.eval(), fused.eval()
    states = [{}, {}]
    with torch.no_grad():
        for t in range(1, 4):
            steps = [m.decoder(tokens[:, :t], incremental_state=s)[0]
                     for m, s in zip((reference, fused), states)]
            torch.testing.assert_close(steps[1], steps[0], rtol=1e-5, atol=1e-5)
    assert calls.count("SdpaSelfAttention") == 2 * 3  # two layers, three steps


def _refused(module: str, argv, capsys) -> str:
    """Runs the command's main(argv); it must stop with exit status 2 and a two-line error
    (no traceback). Returns the error line."""
    with pytest.raises(SystemExit) as stopped:
        importlib.import_module(module).main(argv)
    err = capsys.readouterr().err
    assert stopped.value.code == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 2, err
    return err.splitlines()[0]


@pytest.mark.parametrize(
    "module, argv, flag",
    [
        (BENCHMARK, ["--dim", "0"], "--dim"),
        (BENCHMARK, ["--train-lengths", "64,x"], "--train-lengths"),
        (BENCHMARK, ["--vocab", "4"], "--vocab"),
        (BENCHMARK, ["--sections", "decode,nope"], "--sections"),
        (TRAINING_MEMORY, ["--lengths", "512,0"], "--lengths"),
        (TRAINING_MEMORY, ["--batch", "-2"], "--batch"),
        (TRAINING_MEMORY, ["--dropout", "1"], "--dropout"),
        (TRAINING_MEMORY, ["--kinds", "memsizer,rnn"], "--kinds"),
        (ALIGNMENT, ["--updates", "many"], "--updates"),
    ],
)
def test_unparsable_or_non_positive_values_are_refused(module, argv, flag, capsys):
    assert f"argument {flag}:" in _refused(module, argv, capsys)


@pytest.mark.parametrize(
    "module, argv",
    [
        (BENCHMARK, ["--dim", "64", "--heads", "3"]),
        (BENCHMARK, ["--quick", "--dim", "96", "--heads", "3"]),  # --quick caps --dim at 64
        (TRAINING_MEMORY, ["--dim", "64", "--heads", "3"]),
    ],
)
def test_heads_that_do_not_divide_the_width_are_refused(module, argv, capsys):
    assert "argument --heads: 3 does not divide --dim 64" in _refused(module, argv, capsys)


@pytest.mark.parametrize("module", [BENCHMARK, TRAINING_MEMORY])
def test_a_device_that_is_not_there_is_refused(module, capsys):
    assert "argument --device:" in _refused(module, ["--device", "gpu"], capsys)
    if not torch.cuda.is_available():
        line = _refused(module, ["--device", "cuda"], capsys)
        assert "argument --device: cuda, but no CUDA device is available" in line


@pytest.mark.parametrize(
    "module, flag, name",
    [
        (BENCHMARK, "--out", "results"),
        (ALIGNMENT, "--work-dir", "work"),
        (ALIGNMENT, "--json", "rows.json"),
        (TRAINING_MEMORY, "--out", "training.json"),
    ],
)
def test_output_paths_that_cannot_be_written_are_refused(module, flag, name, tmp_path, capsys):
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    # a folder that does not exist (a file command) or cannot be created (a folder command)
    missing = tmp_path / "missing" / name if "." in name else a_file / name
    assert f"argument {flag}:" in _refused(module, [flag, str(missing)], capsys)
    assert not (tmp_path / "missing").exists()
    # a folder that takes no new file, whoever runs the test
    line = _refused(module, [flag, os.path.join("/proc", name)], capsys)
    assert f"argument {flag}: the folder /proc is not writable" in line
