"""The decoding step of causal Memsizer attention.

Without autograd (``torch.no_grad`` / ``torch.inference_mode``, eval mode), one new position
runs a dedicated step: one GEMM for ``Phi``, ``W_l`` and ``W_r`` with cached stacked weights and
the running sum and count updated in place. Every output of that step must equal the full causal
pass over the prefix recomputed in float64 (``y_t = a_t S_t / sqrt(n_t)``, ``S_t`` the sum of
``l_j r_j^T`` over the ``n_t`` non-pad positions ``j <= t``), and the general step
(:func:`causal_step`, used when autograd is needed): through beam reorders, dropped sentences and
padding, in float32 and float64, with the incremental state and the checkpoint's parameters
unchanged in names and shapes.
"""
import argparse
import copy

import pytest
import torch

import memsizer_fairseq.layers.memsizer as attention_module
from memsizer_fairseq.models.lm import MemsizerLanguageModel, memsizer_lm_base_architecture
from memsizer_fairseq.models.attention import MemsizerAttention
from reference import reference_attention

DTYPES = [torch.float64, torch.float32]
DTYPE_IDS = ["fp64", "fp32"]
# the step in `dtype` against the float64 full pass, the same parameter values in both
TOLERANCE = {torch.float64: dict(rtol=1e-9, atol=1e-9), torch.float32: dict(rtol=1e-4, atol=2e-5)}


def causal_module(dtype=torch.float64, dim=16, heads=4, slots=6, seed=0):
    """Causal Memsizer with non-trivial LayerNorm affine parameters and biases, in eval mode."""
    torch.manual_seed(seed)
    module = MemsizerAttention(dim, heads, slots, causal=True, q_init_scale=4.0,
                               kv_init_scale=1.0).to(dtype)
    with torch.no_grad():  # drawn in `dtype`: float64 values a float32 copy would round
        for norm in (module.l_norm, module.r_norm):
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.5, 0.5)
        for linear in (module.q_proj, module.l_proj, module.r_proj):
            linear.bias.uniform_(-0.3, 0.3)
            linear.weight.add_(0.01 * torch.randn_like(linear.weight))
    return module.eval()


def exact_copy(module):
    """The same parameter values in float64 (the reference computes with these)."""
    return copy.deepcopy(module).double()


def full_pass(module, x, pad=None):
    """The full causal pass over ``x`` (``T x B x d``) in float64; pad: ``B x T``."""
    with torch.no_grad():
        out, _ = exact_copy(module)(x.double(), x.double(), x.double(), key_padding_mask=pad)
    return out


def step(module, x_t, state, pad=None):
    return module(x_t, x_t, x_t, key_padding_mask=pad, incremental_state=state)[0]


class CountGeneralSteps:
    """Counts the calls of the general step (:func:`causal_step`) made by the attention."""

    def __init__(self, monkeypatch):
        self.calls = 0
        general = attention_module.causal_step

        def counting(*args, **kwargs):
            self.calls += 1
            return general(*args, **kwargs)

        monkeypatch.setattr(attention_module, "causal_step", counting)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("prefill", [0, 5])
def test_each_step_equals_the_full_pass_at_its_position(dtype, prefill, monkeypatch):
    module = causal_module(dtype)
    x = torch.randn(12, 3, 16, dtype=torch.float64)
    want = full_pass(module, x)
    general = CountGeneralSteps(monkeypatch)
    state = {}
    with torch.no_grad():
        outs = [step(module, x[:prefill].to(dtype), state)] if prefill else []
        outs += [step(module, x_t.to(dtype), state) for x_t in x[prefill:].split(1)]
    assert general.calls == 0  # the decoding step, not the general one
    got = torch.cat(outs)
    assert got.dtype == dtype
    torch.testing.assert_close(got.double(), want, **TOLERANCE[dtype])
    if dtype == torch.float64:  # and the per-position definition itself
        torch.testing.assert_close(want, reference_attention(exact_copy(module), x),
                                   rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_decoding_step_equals_the_general_step(dtype, monkeypatch):
    """The same positions through the general step (autograd on) and the decoding step."""
    module = causal_module(dtype)
    x = torch.randn(9, 4, 16, dtype=dtype)
    pad = torch.zeros(4, 9, dtype=torch.bool)
    pad[1, :3] = True  # a left-padded row
    general = CountGeneralSteps(monkeypatch)
    with_grad, without = {}, {}
    outs_grad, outs = [], []
    for t in range(9):
        outs_grad.append(step(module, x[t:t + 1], with_grad, pad[:, t:t + 1]))
        with torch.no_grad():
            outs.append(step(module, x[t:t + 1], without, pad[:, t:t + 1]))
    assert general.calls == 9 and outs_grad[-1].requires_grad and not outs[-1].requires_grad
    tight = dict(rtol=1e-12, atol=1e-12) if dtype == torch.float64 else dict(rtol=2e-6, atol=1e-6)
    torch.testing.assert_close(torch.cat(outs), torch.cat(outs_grad).detach(), **tight)
    for name in ("sum", "count"):
        torch.testing.assert_close(module._get_input_buffer(without)[name],
                                   module._get_input_buffer(with_grad)[name].detach(), **tight)


def decode_with_reorders(module, x, pad, dtype, mask_of_prefix):
    """Decode 3 sentences x 2 beams (``x``: ``T x 6 x d``, ``pad``: ``6 x T``) one position at a
    time; after step 4 permute within the beams (duplicating one), after step 6 drop sentence 1.
    Returns the outputs of the kept rows (``T x 4 x d``) and each kept row's history."""
    state = {}
    outs = []
    rows = torch.arange(x.size(1))
    history, history_pad = x, pad
    with torch.no_grad():
        for t in range(x.size(0)):
            # fairseq passes the mask of the new position, or of the whole prefix
            mask = history_pad[:, :t + 1] if mask_of_prefix else history_pad[:, t:t + 1]
            outs.append(step(module, history[t:t + 1].to(dtype), state, mask))
            order = {3: torch.tensor([1, 1, 2, 3, 5, 4]), 5: torch.tensor([0, 1, 4, 5])}.get(t)
            if order is not None:
                module.reorder_incremental_state(state, order)
                rows, history, history_pad = rows[order], history[:, order], history_pad[order]
                outs = [o[:, order] for o in outs]
    return torch.cat(outs), history, history_pad, rows


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("mask_of_prefix", [False, True], ids=["mask-of-step", "mask-of-prefix"])
def test_steps_through_beam_reorders_dropped_sentences_and_padding(dtype, mask_of_prefix):
    module = causal_module(dtype)
    steps = 9
    x = torch.randn(steps, 6, 16, dtype=torch.float64)
    pad = torch.zeros(6, steps, dtype=torch.bool)
    pad[0, :2] = pad[1, :2] = True  # sentence 0: a left-padded prompt, in both beams
    pad[4, :steps] = True  # a row of nothing but pads (n_t = 0), kept through the reorders
    pad[5, :4] = True
    got, history, history_pad, rows = decode_with_reorders(module, x, pad, dtype, mask_of_prefix)
    assert rows.tolist() == [1, 1, 5, 4]
    want = full_pass(module, history, history_pad)
    torch.testing.assert_close(got.double(), want, **TOLERANCE[dtype])
    if dtype == torch.float64:
        torch.testing.assert_close(
            want, reference_attention(exact_copy(module), history, query_pad=history_pad),
            rtol=1e-9, atol=1e-9)


def test_a_row_of_pads_reads_zero_and_keeps_an_empty_state():
    module = causal_module()
    state = {}
    x = torch.randn(3, 2, 16, dtype=torch.float64)
    pad = torch.tensor([[True], [False]])
    with torch.no_grad():
        outs = [step(module, x_t, state, pad) for x_t in x.split(1)]
    buffer = module._get_input_buffer(state)
    assert torch.equal(buffer["count"], torch.tensor([0.0, 3.0], dtype=torch.float64))
    assert torch.count_nonzero(buffer["sum"][0]) == 0
    assert all(torch.count_nonzero(out[:, 0]) == 0 and torch.isfinite(out).all() for out in outs)


PARAMETER_SHAPES = {  # d = 16, d_src = 16, h = 4, k = 6
    "q_proj.weight": (24, 16), "q_proj.bias": (24,),
    "l_proj.weight": (6, 16), "l_proj.bias": (6,),
    "r_proj.weight": (16, 16), "r_proj.bias": (16,),
    "l_norm.weight": (6,), "l_norm.bias": (6,),
    "r_norm.weight": (16,), "r_norm.bias": (16,),
}


def test_checkpoint_parameters_and_state_keep_their_names_and_shapes():
    module = causal_module(torch.float32)
    state = {}
    with torch.no_grad():
        for x_t in torch.randn(3, 5, 16).split(1):
            step(module, x_t, state)
    # the stacked weights: no parameters or buffers
    assert module.memsizer._stacked.cached is not None
    assert {k: tuple(v.shape) for k, v in module.state_dict().items()} == PARAMETER_SHAPES
    assert [name for name, _ in module.named_buffers()] == []
    assert list(state) == [f"{module._incremental_state_id}.memsizer_state"]
    buffer = module._get_input_buffer(state)
    assert set(buffer) == {"sum", "count"}
    assert buffer["sum"].shape == (5, 6, 16) and buffer["sum"].dtype == torch.float32
    assert buffer["count"].shape == (5,) and torch.equal(buffer["count"], torch.full((5,), 3.0))
    assert module.incremental_state_bytes(state) == 5 * (6 * 16 + 1) * 4
    # a checkpoint of the decoding module loads into a fresh one, which decodes the same
    fresh = causal_module(torch.float32, seed=1)
    fresh.load_state_dict(module.state_dict())
    x = torch.randn(4, 2, 16)
    states = {}, {}
    with torch.no_grad():
        a = torch.cat([step(module, x_t, states[0]) for x_t in x.split(1)])
        b = torch.cat([step(fresh, x_t, states[1]) for x_t in x.split(1)])
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_stacked_weights_follow_every_change_of_the_parameters():
    """In place (version counter), ``.data`` replaced (new memory), a dtype round trip (new
    memory, values rounded), a checkpoint loaded: the next decoding uses the new parameters."""
    module = causal_module()
    x = torch.randn(3, 2, 16, dtype=torch.float64)
    changes = {
        "in place": lambda: module.r_proj.weight.mul_(2.0),
        ".data": lambda: setattr(module.l_proj.weight, "data", module.l_proj.weight.data * 0.5),
        "dtype": lambda: module.float().double(),
        "load": lambda: module.load_state_dict(causal_module(seed=3).state_dict()),
    }
    for name, change in changes.items():
        with torch.no_grad():
            before = torch.cat([step(module, x_t, {}) for x_t in x.split(1)[:1]])
            change()
            state = {}
            got = torch.cat([step(module, x_t, state) for x_t in x.split(1)])
        torch.testing.assert_close(got, full_pass(module, x), rtol=1e-9, atol=1e-9, msg=name)
        assert not torch.equal(before, got[:1]), name  # the change is seen
        params = module.memsizer.projection_parameters()
        weight, bias = module.memsizer._stacked.weights(params)
        assert torch.equal(weight, torch.cat(params[:3])), name
        assert torch.equal(bias, torch.cat(params[3:])), name


def test_state_made_under_inference_mode_continues_under_no_grad():
    module = causal_module()
    x = torch.randn(6, 3, 16, dtype=torch.float64)
    state = {}
    with torch.inference_mode():
        outs = [step(module, x_t, state) for x_t in x[:3].split(1)]
    with torch.no_grad():
        outs += [step(module, x_t, state) for x_t in x[3:].split(1)]
    torch.testing.assert_close(torch.cat(outs), full_pass(module, x), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_half_precision_step_keeps_a_float32_state(dtype):
    module = causal_module(dim=32, heads=4, slots=8).to(dtype)
    x = torch.randn(20, 2, 32).to(dtype)
    state = {}
    with torch.no_grad():
        got = torch.cat([step(module, x_t, state) for x_t in x.split(1)])
    buffer = module._get_input_buffer(state)
    assert got.dtype == dtype and buffer["sum"].dtype == torch.float32
    assert buffer["count"].dtype == torch.float32
    want = full_pass(module, x.double())
    error = float((got.double() - want).abs().max() / want.abs().max().clamp(min=1.0))
    assert error <= (2e-2 if dtype == torch.bfloat16 else 3e-3)


def test_training_mode_and_autograd_use_the_general_step(monkeypatch):
    module = causal_module()
    general = CountGeneralSteps(monkeypatch)
    x = torch.randn(1, 2, 16, dtype=torch.float64, requires_grad=True)
    out = step(module, x, {})
    out.sum().backward()
    assert general.calls == 1 and x.grad is not None
    module.train()
    with torch.no_grad():  # attention dropout is a training-mode step
        step(module, x.detach(), {})
    assert general.calls == 2


def make_lm(**overrides):
    from fairseq.data import Dictionary

    dictionary = Dictionary()
    for i in range(40):
        dictionary.add_symbol(f"w{i}")
    args = argparse.Namespace(
        arch="memsizer_lm", decoder_layers=2, decoder_embed_dim=32, decoder_ffn_embed_dim=64,
        decoder_attention_heads=4, causal_proj_dim=6, dropout=0.0, tokens_per_sample=64,
        max_target_positions=64, add_bos_token=False, tpu=False, **overrides,
    )
    memsizer_lm_base_architecture(args)
    task = argparse.Namespace(source_dictionary=dictionary, target_dictionary=dictionary)
    return MemsizerLanguageModel.build_model(args, task), dictionary


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_language_model_decoding_equals_its_full_forward(dtype, monkeypatch):
    """fairseq's decoder, one token at a time under no_grad, with beam reorders and a dropped
    sentence: the log-probabilities equal the float64 forward over each row's tokens."""
    torch.manual_seed(0)
    model, dictionary = make_lm()
    model = model.to(dtype).eval()
    exact = copy.deepcopy(model).double()
    general = CountGeneralSteps(monkeypatch)
    generator = torch.Generator().manual_seed(1)
    history = torch.randint(dictionary.nspecial, len(dictionary), (6, 10), generator=generator)
    state, outs = {}, []
    tokens = history[:, :0]
    with torch.no_grad():
        for t in range(10):
            tokens = torch.cat([tokens, history[: tokens.size(0), t:t + 1]], dim=1)
            logits, _ = model.decoder(tokens, incremental_state=state)
            outs.append(logits)
            order = {3: torch.tensor([1, 1, 2, 3, 5, 4]), 6: torch.tensor([0, 1, 4, 5])}.get(t)
            if order is not None:
                model.decoder.reorder_incremental_state_scripting(state, order)
                tokens, outs = tokens[order], [o[order] for o in outs]
        want, _ = exact.decoder(tokens)
    assert general.calls == 0
    tolerance = TOLERANCE[dtype] if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(torch.cat(outs, dim=1).double(), want, **tolerance)
