"""The benchmark's kinds on flash-linear-attention's kernels (measured on CUDA only, with a note
elsewhere), the bound of an encoder-decoder model, and what the plots draw: log axes, no
stateless kind on the log state axis."""
import pytest

from memsizer_fairseq.models.attention import MemsizerAttention
from memsizer_fairseq.tools.benchmark import __main__ as benchmark
from memsizer_fairseq.tools.benchmark import plots, report, runner
from memsizer_fairseq.tools.benchmark.models import NoAttention


def _cfg(**changes):
    return dict(dict(sections=["decode", "train"], prefix_lengths=[16], train_lengths=[64],
                     out_lengths=[8], beam_batches=[1], authors_max_len=0), **changes)


def test_fla_kinds_are_measured_only_where_fla_can_run():
    measured, note = benchmark.fla_choice("cpu")
    assert not measured and "memsizer-fla" in note and "CUDA" in note
    assert len(note.splitlines()) == 1
    kinds = {(job["section"], job["kind"]) for job in runner.jobs_for(_cfg())}
    assert not {kind for _, kind in kinds} & {"memsizer-fla", "memsizer-chunk"}
    kinds = {(job["section"], job["kind"]) for job in runner.jobs_for(_cfg(fla=True))}
    assert {("decode", "memsizer-fla"), ("train", "memsizer-fla"),
            ("train", "memsizer-chunk"), ("train", "transformer-sdpa"),
            ("decode", "no-attention"), ("train", "no-attention")} <= kinds


def test_the_fla_kind_reads_with_fla_chunk_and_steps_with_fla():
    """On the fla kind the layer's causal form is fla_chunk: its training and prefill read is
    fla's chunked kernel and its one-token step fla's recurrent kernel (layers/memsizer.py)."""
    cfg = dict(vocab=20, dim=16, layers=2, heads=2, device="cpu", dtype="fp32")
    for kind, form in (("memsizer-fla", "fla_chunk"), ("memsizer-chunk", "chunk")):
        layers = [m for m in runner.lm_model(kind, cfg, 32).modules()
                  if isinstance(m, MemsizerAttention)]
        assert len(layers) == 2 and all(layer.causal_form == form for layer in layers)


@pytest.mark.parametrize("kind, self_removed, cross_removed", [
    ("memsizer", False, False),
    ("memsizer-bound", True, True),
    ("memsizer-softmax-cross-bound", True, False),
])
def test_the_bounds_remove_the_decoder_attention_they_name(kind, self_removed, cross_removed):
    bound = dict(dim=16, layers=2, heads=2, vocab=30, lengths=[[4, 4]])
    model = runner.bound_model(kind, bound, "cpu", "fp32")
    for layer in model.decoder.layers:
        assert isinstance(layer.self_attn, NoAttention) == self_removed
        assert isinstance(layer.encoder_attn, NoAttention) == cross_removed
    assert not any(isinstance(layer.self_attn, NoAttention) for layer in model.encoder.layers)


def _rows():
    rows = []
    for prefix, scale in ((16, 1.0), (256, 1.1), (4096, 1.3)):
        for kind, ms, state in (("memsizer", 1.2, 16392), ("transformer", 2.0, 2048 * prefix),
                                ("no-attention", 1.0, 0)):
            rows.append(dict(section="decode", kind=kind, prefix_len=prefix,
                             time={"min": ms * scale / 1e3, "spread": 0.0},
                             state_bytes_per_sentence=state, peak_bytes=0, flops=1))
    for length in (512, 1024):
        for kind in ("memsizer", "transformer", "no-attention"):
            rows.append(dict(section="train", kind=kind, seq_len=length,
                             time={"min": length / 1e4}, peak_bytes=1, flops=1))
    for out_len in (20, 100):
        for kind in report.BEAM_KINDS:
            rows.append(dict(section="beam", kind=kind, out_len=out_len, batch=1,
                             time={"min": 1.0}, tokens_per_second=out_len,
                             sentences_per_second=1.0, state_bytes_per_sentence=1))
    return rows


def test_the_decoding_plot_leaves_out_the_stateless_network_of_its_log_state_axis():
    series = plots.decode_series(_rows())
    assert list(series) == ["memsizer", "transformer", "no-attention"]
    assert series["no-attention"][1] is None  # 0 bytes: no point on a log axis
    assert series["memsizer"][1][1] == [16392 / 2**10] * 3
    assert series["no-attention"][0] == ([16, 256, 4096], [1.0, 1.1, 1.3])


def test_every_plot_has_log_axes(tmp_path):
    import matplotlib.pyplot as plt

    figures = {}
    written = plots.plots({"rows": _rows()}, str(tmp_path), figures)
    assert sorted(figures) == ["beam.png", "decode.png", "train.png"] and len(written) == 3
    try:
        for name, fig in figures.items():
            assert (tmp_path / name).stat().st_size > 0
            for ax in fig.axes:
                assert (ax.get_xscale(), ax.get_yscale()) == ("log", "log"), name
        step, state = figures["decode.png"].axes
        assert [line.get_label() for line in step.get_lines()] == [
            "memsizer", "transformer", "no-attention"]
        assert [line.get_label() for line in state.get_lines()] == ["memsizer", "transformer"]
        note = state.get_legend().get_title().get_text()
        assert "not shown: no-attention" in note and "0 bytes" in note
    finally:
        plt.close("all")


def test_the_bound_table_prints_each_ratio_beside_the_target():
    rows = [dict(section="beam_bound", kind=kind, src_len=30, out_len=30, time={"min": t})
            for kind, t in (("transformer", 2.0), ("memsizer", 1.2), ("memsizer-bound", 1.0),
                            ("memsizer-softmax-cross", 1.5),
                            ("memsizer-softmax-cross-bound", 1.4))]
    ratios = report.bound_ratios(rows, 1.1)
    assert ratios[0]["memsizer/bound"] == pytest.approx(1.2)
    assert not ratios[0]["memsizer/bound ok"] and ratios[0]["memsizer-softmax-cross/bound ok"]
    table = report.bound_table({"beam_bound": {"target": 1.1, "ratios": ratios}})
    assert "| 30 -> 30 | 2.000 | 1.200 | 1.000 | 1.20x | not met | 1.500 | 1.400 | 1.07x | met |" \
        in "\n".join(table)
