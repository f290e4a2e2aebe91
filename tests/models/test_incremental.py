"""Incremental decoding of the Memsizer layer equals the full pass, through beam reorders."""
import pytest
import torch

from builders import TOL, assert_reorders_keep_the_full_pass, make, step_through


def test_causal_steps_equal_full_pass():
    module = make("causal", dim=16, heads=4, slots=6)
    x = torch.randn(9, 3, 16, dtype=torch.float64)
    full, _ = module(x, x, x)
    state = {}
    torch.testing.assert_close(step_through(module, x.split(1), state), full, **TOL)
    # State is k x d plus a count per sentence, whatever the length.
    buffer = module._get_input_buffer(state)
    assert buffer["sum"].shape == (3, 6, 16) and buffer["count"].shape == (3,)


def test_causal_prefill_then_steps():
    module = make("causal")
    x = torch.randn(8, 2, 12, dtype=torch.float64)
    full, _ = module(x, x, x)
    state = {}
    first, _ = module(x[:5], x[:5], x[:5], incremental_state=state)
    rest = step_through(module, x[5:].split(1), state)
    torch.testing.assert_close(torch.cat([first, rest]), full, **TOL)


def test_causal_reorder_within_beams_and_after_dropping_sentences():
    assert_reorders_keep_the_full_pass(make("causal"), torch.randn(4, 6, 12, dtype=torch.float64))


def test_cross_attention_memory_is_computed_once_and_reordered():
    module = make("cross", kdim=7)
    src = torch.randn(5, 4, 7, dtype=torch.float64)
    pad = torch.zeros(4, 5, dtype=torch.bool)
    pad[2, :2] = True
    queries = torch.randn(3, 4, 12, dtype=torch.float64)
    state = {}
    got = step_through(module, queries.split(1), state, src, pad)
    want, _ = module(queries, src, src, key_padding_mask=pad)
    torch.testing.assert_close(got, want, **TOL)
    memory = module._get_input_buffer(state)["memory"]
    assert memory.shape == (4, module.proj_dim, 12)
    order = torch.tensor([3, 2])
    module.reorder_incremental_state(state, order)
    q2 = torch.randn(2, 2, 12, dtype=torch.float64)
    # once the memory is cached, the source is not needed any more
    got = step_through(module, q2.split(1), state, None, None)
    want, _ = module(q2, src[:, order], src[:, order], key_padding_mask=pad[order])
    torch.testing.assert_close(got, want, **TOL)


def _three_sentences(padded: int, pads: int):
    """Sources (``5 x 3 x 7``) and padding masks of 3 sentences, one row each (beam search's
    encoder output); sentence ``padded`` has ``pads`` pads."""
    src = torch.randn(5, 3, 7, dtype=torch.float64)
    pad = torch.zeros(3, 5, dtype=torch.bool)
    pad[padded, :pads] = True
    return src, pad


def _step_and_compare(module, state, sentences, beam, src, pad):
    """Decode two steps of the rows of ``sentences`` (``beam`` each), compare them with the
    full pass over each row's own copy of its sentence's source."""
    rows = torch.tensor(sentences).repeat_interleave(beam)
    q = torch.randn(2, len(rows), 12, dtype=torch.float64)
    got = step_through(module, q.split(1), state, src[:, sentences], pad[sentences])
    want, _ = module(q, src[:, rows], src[:, rows], key_padding_mask=pad[rows])
    torch.testing.assert_close(got, want, **TOL)


def test_the_beams_of_a_sentence_read_one_memory_written_once():
    """Beam search (set_beam_size): the source holds one row per sentence; each memory is
    written from it once and read by the sentence's beams, reorders within the beams leave it in
    place and dropping sentences keeps the memories of the others."""
    module = make("cross", kdim=7)
    module.set_beam_size(3)
    src, pad = _three_sentences(padded=1, pads=2)
    state = {}
    written = []
    hook = module.l_proj.register_forward_hook(lambda m, inputs, out: written.append(out.shape))
    _step_and_compare(module, state, [0, 1, 2], 3, src, pad)
    hook.remove()
    memory = module._get_input_buffer(state)["memory"]
    assert memory.shape == (3, module.proj_dim, 12)  # one per sentence, shared by its beams
    # written from one copy of each source (the full pass written after it reads 9 copies)
    assert written[0] == (3, 5, module.proj_dim)
    # within each sentence's beams (as SequenceGenerator reorders): the memory is not copied
    module.reorder_incremental_state(state, torch.tensor([2, 2, 0, 4, 3, 3, 8, 6, 7]))
    assert module._get_input_buffer(state)["memory"] is memory
    _step_and_compare(module, state, [0, 1, 2], 3, src, pad)
    # sentences 0, then 2 finish: the memories of the others stay
    for order, sentences in (([4, 3, 5, 6, 8, 7], [1, 2]), ([0, 1, 1], [1])):
        module.reorder_incremental_state(state, torch.tensor(order))
        assert module._get_input_buffer(state)["memory"].size(0) == len(sentences)
        _step_and_compare(module, state, sentences, 3, src, pad)


def test_a_source_for_other_than_beam_size_rows_is_refused():
    module = make("cross", kdim=7)
    src, pad = _three_sentences(padded=0, pads=0)
    with pytest.raises(ValueError, match="3 sources for 6 rows"):
        step_through(module, torch.randn(1, 6, 12, dtype=torch.float64).split(1), {}, src, pad)


def test_state_size_does_not_grow_with_length():
    module = make("causal", dim=8, heads=2, slots=4)
    state = {}
    sizes = []
    for t in range(300):
        x_t = torch.randn(1, 2, 8, dtype=torch.float64)
        module(x_t, x_t, x_t, incremental_state=state)
        if t in (15, 299):
            sizes.append(module.incremental_state_bytes(state))
    assert sizes[0] == sizes[1] == 2 * (4 * 8 + 1) * 8


def test_decoding_fast_path_without_autograd_matches_reference():
    """Under no_grad: fused projection GEMM and in-place state updates."""
    from reference import reference_attention

    module = make("causal", dim=16, heads=4, slots=6)
    x = torch.randn(7, 3, 16, dtype=torch.float64)
    want = reference_attention(module, x)
    with torch.no_grad():
        full, _ = module(x, x, x)
        state = {}
        steps = step_through(module, x.split(1), state)
    torch.testing.assert_close(full, want, **TOL)
    torch.testing.assert_close(steps, want, **TOL)
    assert module.memsizer._stacked.cached is not None


def test_fused_weights_follow_in_place_parameter_updates():
    module = make("causal")
    x = torch.randn(4, 2, 12, dtype=torch.float64)
    with torch.no_grad():
        before, _ = module(x, x, x)
        module.r_proj.weight.mul_(2.0)  # as an optimizer step does
        after, _ = module(x, x, x)
    from reference import reference_attention

    torch.testing.assert_close(after, reference_attention(module, x), **TOL)
    assert not torch.allclose(before, after)


def test_noncausal_self_attention_fast_path_matches_reference():
    from reference import reference_attention

    module = make("self")
    x = torch.randn(5, 3, 12, dtype=torch.float64)
    pad = torch.zeros(3, 5, dtype=torch.bool)
    pad[1, :2] = True
    with torch.no_grad():
        out, _ = module(x, x, x, key_padding_mask=pad)
    want = reference_attention(module, x, query_pad=pad, source_pad=pad)
    keep = (~pad).t().unsqueeze(-1).double()
    torch.testing.assert_close(out * keep, want * keep, **TOL)


def test_fused_weights_are_rebuilt_after_training_writes_through_data():
    from reference import reference_attention

    module = make("causal")
    x = torch.randn(4, 2, 12, dtype=torch.float64)
    with torch.no_grad():
        module(x, x, x)  # builds the cache in eval mode
    module.train()
    module.q_proj.weight.data.add_(0.5)  # an optimizer writing through .data bumps no version
    module.eval()
    with torch.no_grad():
        out, _ = module(x, x, x)
    torch.testing.assert_close(out, reference_attention(module, x), **TOL)
