"""Incremental decoding of the Memsizer layer equals the full pass, through beam reorders."""
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


def _beams_of_three_sentences(beam: int, padded: int, pads: int):
    """Sources (5 x 3*beam x 7) and padding masks of 3 sentences, each repeated for its
    ``beam`` beams as SequenceGenerator lays them out; sentence ``padded`` has ``pads`` pads."""
    src = torch.randn(5, 3, 7, dtype=torch.float64).repeat_interleave(beam, dim=1)
    pad = torch.zeros(3, 5, dtype=torch.bool)
    pad[padded, :pads] = True
    return src, pad.repeat_interleave(beam, dim=0)


def _reorder_and_compare(module, state, src, pad, order):
    """Reorder the state, decode two more steps, compare with the full pass; the reordered
    sources and masks."""
    order = torch.tensor(order)
    module.reorder_incremental_state(state, order)
    src, pad = src[:, order], pad[order]
    q = torch.randn(2, len(order), 12, dtype=torch.float64)
    got = step_through(module, q.split(1), state)
    want, _ = module(q, src, src, key_padding_mask=pad)
    torch.testing.assert_close(got, want, **TOL)
    return src, pad


def test_beam_reorders_keep_the_shared_source_memory_and_others_move_it():
    module = make("cross", kdim=7)
    src, pad = _beams_of_three_sentences(beam=3, padded=1, pads=2)
    state = {}
    written = []
    hook = module.l_proj.register_forward_hook(lambda m, inputs, out: written.append(out.shape))
    step_through(module, torch.randn(1, 9, 12, dtype=torch.float64).split(1), state, src, pad)
    hook.remove()
    memory = module._get_input_buffer(state)["memory"]
    assert memory.shape == (3, module.proj_dim, 12)  # one per sentence, shared by its beams
    assert written == [(3, 5, module.proj_dim)]  # written from one copy of each source
    # within each sentence's beams (as SequenceGenerator reorders): the memory is not copied
    module.reorder_incremental_state(state, torch.tensor([2, 2, 0, 4, 3, 3, 8, 6, 7]))
    assert module._get_input_buffer(state)["memory"] is memory
    # whole sentences moved or dropped: one memory per sentence; rows of different sentences
    # interleaved: one per row, until rows that share a source are consecutive again
    for order, memories in (([3, 4, 5, 0, 1, 2, 6, 7, 8], 3), ([3, 4, 5, 6, 7, 8], 2),
                            ([0, 3, 1, 4], 4), ([1, 2], 2), ([1, 1], 1)):
        src, pad = _reorder_and_compare(module, state, src, pad, order)
        assert module._get_input_buffer(state)["memory"].size(0) == memories


def test_reorders_without_reading_the_order_on_the_host_gather_a_memory_per_row(monkeypatch):
    """On an accelerator the reorder never reads ``new_order`` on the host (no synchronisation
    per decoding step): every row gets its memory; the outputs stay those of the full pass."""
    module = make("cross", kdim=7)
    monkeypatch.setattr(type(module), "host_reads_orders", staticmethod(lambda device: False))
    src, pad = _beams_of_three_sentences(beam=2, padded=2, pads=3)
    state = {}
    step_through(module, torch.randn(1, 6, 12, dtype=torch.float64).split(1), state, src, pad)
    assert module._get_input_buffer(state)["memory"].size(0) == 3  # shared until a reorder
    for order in ([1, 1, 2, 3, 5, 4], [2, 3, 4, 5], [3, 0, 1]):
        src, pad = _reorder_and_compare(module, state, src, pad, order)
        assert module._get_input_buffer(state)["memory"].size(0) == len(order)


def test_equal_sources_with_different_padding_get_their_own_memories():
    module = make("cross", kdim=7)
    src = torch.randn(5, 1, 7, dtype=torch.float64).expand(5, 4, 7)
    pad = torch.zeros(4, 5, dtype=torch.bool)
    pad[2:, :2] = True  # rows 0, 1 and rows 2, 3: the same source, read to different lengths
    queries = torch.randn(2, 4, 12, dtype=torch.float64)
    state = {}
    got = step_through(module, queries.split(1), state, src, pad)
    want, _ = module(queries, src, src, key_padding_mask=pad)
    torch.testing.assert_close(got, want, **TOL)
    assert module._get_input_buffer(state)["memory"].size(0) == 2


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
    assert module._stacked.cached is not None


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
