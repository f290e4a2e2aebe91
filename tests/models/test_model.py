"""memsizer_transformer through fairseq: presets, flags, incremental decoding, beam search."""
import pytest
import torch
from fairseq.sequence_generator import SequenceGenerator

from fairseq_helpers import build_translation_model, parse_translation_args, write_dicts
from memsizer_fairseq.models.attention import MemsizerAttention

TOL = dict(rtol=1e-8, atol=1e-8)
SMALL = [
    "--encoder-embed-dim", "16", "--decoder-embed-dim", "16", "--encoder-ffn-embed-dim", "32",
    "--decoder-ffn-embed-dim", "32", "--encoder-layers", "2", "--decoder-layers", "2",
    "--encoder-attention-heads", "2", "--decoder-attention-heads", "2",
]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_dicts(str(tmp_path_factory.mktemp("dicts")))


PRESETS = {
    "memsizer_transformer": 512,
    "memsizer_transformer_tiny": 64,
    "memsizer_transformer_iwslt_de_en": 512,
    "memsizer_transformer_wmt_en_de": 512,
    "memsizer_transformer_wmt_en_de_big": 1024,
    "memsizer_vaswani_wmt_en_de_big": 1024,
}


@pytest.mark.parametrize("arch", sorted(PRESETS))
def test_each_preset_builds_with_the_papers_mt_defaults(data_dir, arch):
    model, _, args, cfg = build_translation_model(data_dir, arch)
    assert args.encoder_embed_dim == PRESETS[arch]
    for source in (args, cfg.model):  # argparse namespace and the OmegaConf config agree
        assert (source.causal_proj_dim, source.cross_proj_dim) == (4, 32)
        assert (source.q_init_scale, source.kv_init_scale) == (8.0, 8.0)
    layer = model.decoder.layers[0]
    assert isinstance(layer.self_attn, MemsizerAttention) and layer.self_attn.causal
    assert layer.self_attn.proj_dim == 4
    assert isinstance(layer.encoder_attn, MemsizerAttention)
    assert layer.encoder_attn.proj_dim == 32
    assert not isinstance(model.encoder.layers[0].self_attn, MemsizerAttention)


def test_given_flags_override_and_omitted_flags_keep_the_preset(data_dir):
    model, _, args, cfg = build_translation_model(
        data_dir, "memsizer_transformer_wmt_en_de_big",
        SMALL + ["--causal-proj-dim", "8", "--kv-init-scale", "2", "--encoder-use-memsizer"],
    )
    assert (cfg.model.causal_proj_dim, cfg.model.cross_proj_dim) == (8, 32)
    assert (cfg.model.q_init_scale, cfg.model.kv_init_scale) == (8.0, 2.0)
    assert cfg.model.dropout == 0.3  # the preset's value survives
    layer = model.decoder.layers[1]
    assert layer.self_attn.proj_dim == 8 and layer.encoder_attn.proj_dim == 32
    attention = layer.self_attn.memsizer
    assert attention.kv_init_scale == 2.0 and attention.q_init_scale == 8.0
    encoder_attn = model.encoder.layers[0].self_attn
    assert isinstance(encoder_attn, MemsizerAttention) and encoder_attn.proj_dim == 32


def test_decoder_memsizer_can_be_switched_off(data_dir):
    model, *_ = build_translation_model(
        data_dir, "memsizer_transformer_tiny", ["--decoder-use-memsizer", "false"]
    )
    assert not any(isinstance(m, MemsizerAttention) for m in model.modules())


@pytest.mark.parametrize(
    "flags, named",
    [
        (["--causal-proj-dim", "0"], "--causal-proj-dim"),
        (["--cross-proj-dim", "-1"], "--cross-proj-dim"),
        (["--q-init-scale", "-1"], "--q-init-scale"),
        (["--kv-init-scale", "0"], "--kv-init-scale"),
        (["--causal-proj-dim", "2.5"], "--causal-proj-dim"),
        (["--causal-short-conv", "1"], "--causal-short-conv"),
        (["--causal-short-conv", "three"], "--causal-short-conv"),
    ],
)
def test_bad_values_fail_at_parse_time_naming_the_flag(data_dir, flags, named, capsys):
    with pytest.raises(SystemExit):
        parse_translation_args(data_dir, "memsizer_transformer_tiny", flags)
    assert named in capsys.readouterr().err


def test_short_conv_is_off_by_default_and_in_the_decoder_self_attention_when_asked(data_dir):
    from memsizer_fairseq.models.attention import MemsizerAttention

    def with_conv(model):
        return [m for m in model.modules()
                if isinstance(m, MemsizerAttention) and m.short_conv is not None]

    plain, *_ = build_translation_model(data_dir, "memsizer_transformer_tiny")
    assert not with_conv(plain)
    model, *_ = build_translation_model(data_dir, "memsizer_transformer_tiny",
                                        ["--causal-short-conv", "4"])
    convs = with_conv(model)
    assert len(convs) == len(model.decoder.layers)
    assert all(m.memsizer.causal_short_conv == 4 and m.short_conv.shape == (64, 4)
               for m in convs)
    assert all(layer.self_attn in convs for layer in model.decoder.layers)


def test_heads_not_dividing_the_width_fail_naming_the_flag(data_dir):
    with pytest.raises(ValueError, match="--decoder-attention-heads"):
        build_translation_model(
            data_dir, "memsizer_transformer_tiny",
            ["--decoder-attention-heads", "5", "--decoder-embed-dim", "64"],
        )


def test_unsupported_transformer_options_are_refused(data_dir):
    with pytest.raises(ValueError, match="--cross-self-attention"):
        build_translation_model(data_dir, "memsizer_transformer_tiny", ["--cross-self-attention"])


@pytest.mark.parametrize("mode, kinds", [
    ("softmax", ["softmax", "softmax"]),
    ("memsizer,softmax", ["memsizer", "softmax"]),
    ("softmax,memsizer", ["softmax", "memsizer"]),
])
def test_cross_attention_softmax_builds_fairseqs_attention(data_dir, mode, kinds):
    from fairseq.modules import MultiheadAttention

    model, _, args, cfg = build_translation_model(
        data_dir, "memsizer_transformer_tiny", SMALL + ["--cross-attention", mode])
    assert cfg.model.cross_attention == mode
    for layer, kind in zip(model.decoder.layers, kinds):
        assert isinstance(layer.self_attn, MemsizerAttention) and layer.self_attn.causal
        wanted = MultiheadAttention if kind == "softmax" else MemsizerAttention
        assert type(layer.encoder_attn) is wanted
        assert layer.encoder_attn.encoder_decoder_attention


def test_cross_attention_defaults_to_memsizer(data_dir):
    _, _, args, cfg = build_translation_model(data_dir, "memsizer_transformer_tiny", SMALL)
    assert args.cross_attention == cfg.model.cross_attention == "memsizer"


@pytest.mark.parametrize("mode, message", [
    ("memsizer,softmax,softmax", "--cross-attention names 3 layers"),
    ("softmax,", "--cross-attention"),
])
def test_bad_cross_attention_modes_are_refused_naming_the_flag(data_dir, mode, message, capsys):
    try:
        build_translation_model(data_dir, "memsizer_transformer_tiny",
                                SMALL + ["--cross-attention", mode])
    except SystemExit:
        assert message in capsys.readouterr().err
    except ValueError as error:
        assert message in str(error)
    else:
        raise AssertionError(f"--cross-attention {mode} was accepted")


def test_read_init_gain_sqrt_k_resolves_per_layer_and_defaults_to_the_papers(data_dir):
    model, *_ = build_translation_model(data_dir, "memsizer_transformer_tiny", SMALL)
    layer = model.decoder.layers[0]
    assert torch.all(layer.self_attn.r_norm.weight == 1.0)
    assert torch.all(layer.encoder_attn.r_norm.weight == 1.0)
    model, *_ = build_translation_model(
        data_dir, "memsizer_transformer_tiny", SMALL + ["--read-init-gain", "sqrt-k"])
    layer = model.decoder.layers[1]
    torch.testing.assert_close(layer.self_attn.r_norm.weight,
                               torch.full((16,), 2.0))  # 4 causal slots
    torch.testing.assert_close(layer.encoder_attn.r_norm.weight, torch.full((16,), 32 ** 0.5))


def test_bad_read_init_gain_fails_naming_the_flag(data_dir, capsys):
    with pytest.raises(SystemExit):
        parse_translation_args(data_dir, "memsizer_transformer_tiny", ["--read-init-gain", "0"])
    assert "--read-init-gain" in capsys.readouterr().err


def small_model(data_dir, extra=()):
    model, task, _, _ = build_translation_model(
        data_dir, "memsizer_transformer_tiny", SMALL + ["--dropout", "0"] + list(extra)
    )
    return model.double().eval(), task


def random_batch(task, bsz=4, src_len=7, tgt_len=6):
    vocab = task.source_dictionary
    src = torch.randint(vocab.nspecial, len(vocab), (bsz, src_len))
    lengths = torch.tensor([src_len, src_len - 2, src_len - 4, 1][:bsz])
    for b, n in enumerate(lengths):  # left-padded sources, as fairseq's translation task makes
        src[b, : src_len - n] = vocab.pad()
    prev = torch.randint(vocab.nspecial, len(vocab), (bsz, tgt_len))
    prev[:, 0] = vocab.eos()
    return src, lengths, prev


CROSS_MODES = ["memsizer", "softmax", "softmax,memsizer"]


def steps_equal_full_pass_through(model, src, lengths, prev, enc, orders):
    """Three incremental steps, the reorders (of the state, the encoder output and the batch),
    then the remaining steps: each equals the full pass over the reordered batch."""
    with torch.no_grad():
        full, _ = model.decoder(prev, encoder_out=enc)
        state = {}
        for t in range(3):
            step, _ = model.decoder(prev[:, : t + 1], encoder_out=enc, incremental_state=state)
            torch.testing.assert_close(step[:, 0], full[:, t], **TOL)
        for order in map(torch.tensor, orders):
            model.decoder.reorder_incremental_state_scripting(state, order)
            enc = model.encoder.reorder_encoder_out(enc, order)
            prev, src, lengths = prev[order], src[order], lengths[order]
        full, _ = model.decoder(prev, encoder_out=model.encoder(src, src_lengths=lengths))
        for t in range(3, prev.size(1)):
            step, _ = model.decoder(prev[:, : t + 1], encoder_out=enc, incremental_state=state)
            torch.testing.assert_close(step[:, 0], full[:, t], **TOL)


@pytest.mark.parametrize("encoder_memsizer, cross", [(False, "memsizer"), (True, "memsizer"),
                                                     (False, "softmax,memsizer")])
def test_decoder_steps_equal_full_pass_when_sentences_finish(data_dir, encoder_memsizer, cross):
    """Without beams: each row its own sentence; finished sentences leave the batch."""
    model, task = small_model(data_dir, ["--cross-attention", cross] + (
        ["--encoder-use-memsizer"] if encoder_memsizer else []))
    src, lengths, prev = random_batch(task)
    with torch.no_grad():
        enc = model.encoder.reorder_encoder_out(model.encoder(src, src_lengths=lengths),
                                                torch.arange(4))
    steps_equal_full_pass_through(model, src, lengths, prev, enc, ([0, 2, 3], [0, 2]))


@pytest.mark.parametrize("cross", CROSS_MODES)
@pytest.mark.parametrize("told", [True, False], ids=["set_beam_size", "no-beam-size"])
def test_decoder_steps_equal_full_pass_through_beam_reorders(data_dir, cross, told):
    """As SequenceGenerator runs it: sentences expanded to beams, rows moved within a sentence's
    beams, finished sentences dropped; with the model told the beam size (the encoder output
    keeps one row per sentence) or not (one row per beam, as fairseq lays them out)."""
    model, task = small_model(data_dir, ["--cross-attention", cross])
    if told:
        model.set_beam_size(2)
    src, lengths, _ = random_batch(task, bsz=3)
    beams = torch.arange(3).repeat_interleave(2)
    prev = torch.randint(task.target_dictionary.nspecial, len(task.target_dictionary), (6, 6))
    prev[:, 0] = task.target_dictionary.eos()
    with torch.no_grad():
        enc = model.encoder.reorder_encoder_out(model.encoder(src, src_lengths=lengths), beams)
    assert enc["encoder_out"][0].size(1) == (3 if told else 6)
    steps_equal_full_pass_through(model, src[beams], lengths[beams], prev, enc,
                                  ([1, 1, 2, 3, 5, 4], [0, 1, 4, 5], [1, 0, 3, 3]))


def test_the_encoder_output_keeps_one_row_per_sentence_for_the_beams(data_dir):
    """Told the beam size, the encoder leaves its output as it is for beam search's expansion and
    its reorders within beams, and keeps the rows of the sentences left when some finish: each
    row then stands for the beams of its sentence. Not told, it reorders as fairseq does."""
    from fairseq.models.transformer import TransformerEncoderBase

    model, task = small_model(data_dir)
    src, lengths, _ = random_batch(task, bsz=3)
    with torch.no_grad():
        fresh = model.encoder(src, src_lengths=lengths)
    orders = [torch.arange(3).repeat_interleave(2),  # SequenceGenerator's expansion to 2 beams
              torch.tensor([1, 1, 2, 3, 4, 4]), torch.tensor([0, 1, 5, 4]),
              torch.tensor([1, 0, 2, 3]), torch.tensor([3, 3])]
    for beam_size in (1, 2):
        model.encoder.set_beam_size(beam_size)
        enc = stock = fresh
        for order, unchanged in zip(orders, [True, True, False, True, False]):
            before = enc
            enc = model.encoder.reorder_encoder_out(enc, order)
            stock = TransformerEncoderBase.reorder_encoder_out(model.encoder, stock, order)
            rows = torch.arange(stock["encoder_out"][0].size(1))
            if beam_size == 2:
                assert (enc["encoder_out"][0] is before["encoder_out"][0]) == unchanged
                rows = rows // 2  # the row of each beam's sentence
            for name, tensors in stock.items():
                dim = 1 if name == "encoder_out" else 0
                for mine, want in zip(enc[name], tensors):
                    assert torch.equal(mine.index_select(dim, rows), want), name


def full_recompute(decoder_forward):
    """A decoder forward that recomputes the whole prefix at every step (no incremental state)."""

    def forward(prev_output_tokens, encoder_out=None, incremental_state=None, **kwargs):
        out, extra = decoder_forward(prev_output_tokens, encoder_out=encoder_out)
        return out[:, -1:], extra

    return forward


@pytest.mark.parametrize("cross", CROSS_MODES)
def test_beam_search_equals_search_without_incremental_state(data_dir, cross):
    model, task = small_model(data_dir, ["--cross-attention", cross])
    src, lengths, _ = random_batch(task, bsz=4)
    sample = {"net_input": {"src_tokens": src, "src_lengths": lengths}}
    generator = SequenceGenerator([model], task.target_dictionary, beam_size=4, max_len_b=10)
    with torch.no_grad():
        fast = generator.forward(sample)
    model.decoder.forward = full_recompute(model.decoder.forward)
    slow_gen = SequenceGenerator([model], task.target_dictionary, beam_size=4, max_len_b=10)
    with torch.no_grad():
        slow = slow_gen.forward(sample)
    for hyps_fast, hyps_slow in zip(fast, slow):
        for a, b in zip(hyps_fast, hyps_slow):
            assert torch.equal(a["tokens"], b["tokens"])
            torch.testing.assert_close(a["score"], b["score"], rtol=1e-6, atol=1e-6)


def test_softmax_cross_attention_caches_one_source_per_sentence_through_reorders():
    """fairseq's MultiheadAttention, given one source row per sentence for its beams (as the
    decoder runs it in beam search, its beam_size set): one cache per sentence, left in place
    by reorders within the beams, selected when sentences finish."""
    from fairseq.modules import MultiheadAttention

    torch.manual_seed(0)
    attention = MultiheadAttention(8, 2, kdim=6, vdim=6, encoder_decoder_attention=True).double()
    beam = 3
    attention.set_beam_size(beam)
    src = torch.randn(5, 3, 6, dtype=torch.float64)
    pad = torch.zeros(3, 5, dtype=torch.bool)
    pad[1, :2] = True

    def step(state, sentences):
        rows = torch.tensor(sentences).repeat_interleave(beam)
        query = torch.randn(1, len(rows), 8, dtype=torch.float64)
        got, _ = attention(query, src[:, sentences], src[:, sentences],
                           key_padding_mask=pad[sentences], incremental_state=state,
                           static_kv=True)
        want, _ = attention(query, src[:, rows], src[:, rows], key_padding_mask=pad[rows],
                            static_kv=True)
        torch.testing.assert_close(got, want, **TOL)

    state = {}
    step(state, [0, 1, 2])
    cache = attention._get_input_buffer(state)["prev_key"]
    assert cache.shape == (3, 2, 5, 4)  # one copy of each source, shared by its beams
    # within each sentence's beams: nothing copied
    attention.reorder_incremental_state(state, torch.tensor([2, 2, 0, 4, 3, 3, 8, 6, 7]))
    assert attention._get_input_buffer(state)["prev_key"] is cache
    step(state, [0, 1, 2])
    for order, sentences in (([3, 4, 5, 6, 7, 8], [1, 2]), ([4, 4, 5], [2])):
        attention.reorder_incremental_state(state, torch.tensor(order))
        assert attention._get_input_buffer(state)["prev_key"].size(0) == len(sentences)
        step(state, sentences)


@pytest.mark.parametrize("cross", CROSS_MODES)
def test_a_search_of_another_beam_than_the_model_was_told_finds_the_same(data_dir, cross):
    """fairseq tells the model its beam size only for beams above one: a greedy search after a
    beam search of 4 (the hub interface's translate(beam=4), then beam=1) must not read one
    source for four sentences. Its encoder output keeps one row per beam."""
    model, task = small_model(data_dir, ["--cross-attention", cross])
    src, lengths, _ = random_batch(task, bsz=4)
    sample = {"net_input": {"src_tokens": src, "src_lengths": lengths}}
    with torch.no_grad():
        untold = SequenceGenerator([model], task.target_dictionary, beam_size=1,
                                   max_len_b=8).forward(sample)
        SequenceGenerator([model], task.target_dictionary, beam_size=4)  # tells the model 4
        assert model.encoder.beam_size == 4
        told = SequenceGenerator([model], task.target_dictionary, beam_size=1,
                                 max_len_b=8).forward(sample)
    for a, b in zip(told, untold):
        assert torch.equal(a[0]["tokens"], b[0]["tokens"])
        torch.testing.assert_close(a[0]["score"], b[0]["score"], **TOL)
