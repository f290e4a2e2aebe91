"""Property tests (hypothesis): for random shapes, paddings, head and slot counts, the layer matches
the per-position reference, and incremental decoding matches the full pass (any chunking; the
causal state through any reorder, the cross-attention through beam search's).

CI runs a fixed (derandomized) set of examples; set ``MEMSIZER_PROPERTY_EXAMPLES=500`` to search
more, with fresh random examples on each run.
"""
import os

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reference import assert_gradients_match, reference_attention
from builders import TOL, make

_EXAMPLES = os.environ.get("MEMSIZER_PROPERTY_EXAMPLES")
SETTINGS = settings(
    max_examples=int(_EXAMPLES or 100),
    derandomize=_EXAMPLES is None,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@st.composite
def masks(draw, bsz, length):
    """``B x T`` padding masks (True = pad): none, left, right or any pattern; rows may be empty."""
    kind = draw(st.sampled_from(["none", "left", "right", "any"]))
    if kind == "none":
        return None
    mask = torch.zeros(bsz, length, dtype=torch.bool)
    for b in range(bsz):
        if kind == "any":
            row = draw(st.lists(st.booleans(), min_size=length, max_size=length))
            mask[b] = torch.tensor(row, dtype=torch.bool)
        else:
            n = draw(st.integers(0, length))  # n = 0: a row of pads only
            if kind == "left":
                mask[b, : length - n] = True
            else:
                mask[b, n:] = True
    return mask


@st.composite
def layers(draw, roles=("causal", "self", "cross")):
    role = draw(st.sampled_from(roles))
    heads, head_dim = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    slots = draw(st.integers(1, 6))
    kdim = draw(st.integers(1, 7)) if role == "cross" else None
    forms = dict(  # the chunked causal form with blocks of 1 to 4, or any other form
        causal_block_size=draw(st.integers(1, 4)),
        causal_form=draw(st.sampled_from(["auto", "chunk", "quadratic", "recurrent"])),
    )
    torch.manual_seed(draw(st.integers(0, 2 ** 16)))
    return make(role, dim=heads * head_dim, heads=heads, slots=slots, kdim=kdim, **forms)


@SETTINGS
@given(data=st.data())
def test_layer_matches_the_reference(data):
    module = data.draw(layers())
    bsz, tgt_len, src_len = (data.draw(st.integers(1, n)) for n in (3, 7, 6))
    query = torch.randn(tgt_len, bsz, module.embed_dim, dtype=torch.float64, requires_grad=True)
    if module.encoder_decoder_attention:
        source = torch.randn(src_len, bsz, module.kdim, dtype=torch.float64, requires_grad=True)
        source_pad, query_pad = data.draw(masks(bsz, src_len)), None
        out, _ = module(query, source, source, key_padding_mask=source_pad)
    else:
        query_pad = data.draw(masks(bsz, tgt_len))
        source, source_pad = None, query_pad  # self-attention writes its own (padded) positions
        out, _ = module(query, query, query, key_padding_mask=query_pad)
    ref = reference_attention(module, query, source, query_pad, source_pad)
    torch.testing.assert_close(out, ref, **TOL)  # at every position, pads included

    inputs = [query] + ([source] if source is not None else [])
    assert_gradients_match(out, ref, inputs, module, **TOL)


def _reorder(data, bsz):
    """A ``new_order`` as SequenceGenerator makes: any rows, repeated or dropped (>= 1 row)."""
    rows = data.draw(st.lists(st.integers(0, bsz - 1), min_size=1, max_size=bsz + 1))
    return torch.tensor(rows, dtype=torch.long)


@SETTINGS
@given(data=st.data())
def test_causal_incremental_decoding_matches_the_full_pass(data):
    module = data.draw(layers(roles=("causal",)))
    dim = module.embed_dim
    bsz = data.draw(st.integers(1, 3))
    history = torch.zeros(0, bsz, dim, dtype=torch.float64)
    history_pad = torch.zeros(bsz, 0, dtype=torch.bool)
    state = {}
    for _ in range(data.draw(st.integers(1, 4))):
        if data.draw(st.booleans()):
            order = _reorder(data, history.size(1))
            module.reorder_incremental_state(state, order)
            history, history_pad = history[:, order], history_pad[order]
        rows = history.size(1)
        chunk = data.draw(st.integers(1, 4))  # a prefill of several tokens, or one step
        x = torch.randn(chunk, rows, dim, dtype=torch.float64)
        pad = data.draw(masks(rows, chunk))
        got, _ = module(x, x, x, key_padding_mask=pad, incremental_state=state)
        history = torch.cat([history, x])
        pad = torch.zeros(rows, chunk, dtype=torch.bool) if pad is None else pad
        history_pad = torch.cat([history_pad, pad], dim=1)
        full, _ = module(history, history, history, key_padding_mask=history_pad)
        torch.testing.assert_close(got, full[-chunk:], **TOL)
        buffer = module._get_input_buffer(state)
        assert buffer["sum"].shape == (rows, module.proj_dim, dim)  # constant in the length
        assert buffer["count"].tolist() == (~history_pad).sum(1).double().tolist()


def _beam_reorder(data, sentences, beam):
    """A ``new_order`` as SequenceGenerator makes for ``sentences`` sentences of ``beam`` rows:
    the sentences that go on (at least one, in order), each of their rows continuing any row of
    the same sentence. Returns it and the sentences kept."""
    kept = data.draw(st.lists(st.booleans(), min_size=sentences, max_size=sentences).filter(any))
    rows = [s * beam + data.draw(st.integers(0, beam - 1))
            for s in range(sentences) if kept[s] for _ in range(beam)]
    return torch.tensor(rows, dtype=torch.long), [s for s in range(sentences) if kept[s]]


@SETTINGS
@given(data=st.data())
def test_cross_attention_incremental_decoding_matches_the_full_pass(data):
    """Beam search's cross-attention: one source row per sentence read by its beams
    (``beam_size`` rows), through the reorders SequenceGenerator makes."""
    module = data.draw(layers(roles=("cross",)))
    beam = data.draw(st.integers(1, 3))
    module.set_beam_size(beam)
    bsz, src_len = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 6))
    source = torch.randn(src_len, bsz, module.kdim, dtype=torch.float64)
    source_pad = data.draw(masks(bsz, src_len))
    state = {}
    for step in range(data.draw(st.integers(1, 4))):
        if step and data.draw(st.booleans()):
            order, kept = _beam_reorder(data, source.size(1), beam)
            module.reorder_incremental_state(state, order)
            source = source[:, kept]
            source_pad = None if source_pad is None else source_pad[kept]
        rows = torch.arange(source.size(1)).repeat_interleave(beam)
        query = torch.randn(data.draw(st.integers(1, 3)), len(rows), module.embed_dim,
                            dtype=torch.float64)
        # after the first step the memory is cached: the source is not needed any more
        key = source if step == 0 else None
        got, _ = module(query, key, key, key_padding_mask=source_pad if step == 0 else None,
                        incremental_state=state, static_kv=True)
        full, _ = module(query, source[:, rows], source[:, rows],
                         key_padding_mask=None if source_pad is None else source_pad[rows])
        torch.testing.assert_close(got, full, **TOL)
