"""fp16 / bf16: finite (and close to float64) on 16k-token and 1-token inputs; no division by zero.

On CPU, fairseq's own ``--fp16`` / ``--bf16`` *training* does not run (``--fp16`` needs CUDA,
``--bf16`` means a TPU), so half-precision training is tested at the module and model level
(forward and backward of the same fairseq models in ``torch.float16`` / ``torch.bfloat16``), and
decoding through fairseq's ``SequenceGenerator``. ``fairseq-generate`` / ``-interactive --fp16``
on CPU is exercised in ``test_reliability.py``; bf16 training of ``memsizer_lm`` on 16k tokens in
``test_lm.py``.
"""
import pytest
import torch
import torch.nn.functional as F
from fairseq.sequence_generator import SequenceGenerator

from fairseq_helpers import build_translation_model, write_dicts
from builders import REL_TOL, make_lm, module, random_tokens, relative_error

HALF = [torch.bfloat16, torch.float16]


LONG = 16384


def call(layer, query, source=None, mask=None, state=None):
    source = query if source is None else source
    return layer(query, source, source, key_padding_mask=mask, incremental_state=state)[0]


def assert_all_finite(tensors, what):
    for name, tensor in tensors:
        assert tensor is not None and torch.isfinite(tensor.float()).all(), f"{what}: {name}"


@pytest.mark.parametrize("dtype", HALF, ids=["bf16", "fp16"])
@pytest.mark.parametrize("role", ["causal", "self", "cross"])
@pytest.mark.parametrize("length", [1, LONG])
def test_half_precision_layer_is_finite_and_close_to_float64(dtype, role, length):
    half = module(role, dtype)
    exact = module(role).double()
    exact.load_state_dict(half.state_dict())  # the half weights, exactly, in float64
    gen = torch.Generator().manual_seed(length)
    # inputs representable in the half type: the comparison measures the computation only
    x = (3 * torch.randn(length, 2, 32, generator=gen)).to(dtype).double()
    src = (3 * torch.randn(max(length // 2, 1), 2, 32, generator=gen)).to(dtype).double()
    source = src if role == "cross" else None
    want = call(exact, x, source)
    xh = x.to(dtype).requires_grad_()
    sh = None if source is None else src.to(dtype).requires_grad_()
    got = call(half, xh, sh)
    assert got.dtype == dtype and got.shape == want.shape
    assert relative_error(got, want) <= REL_TOL[dtype]
    (got.float() * torch.randn(got.shape, generator=gen)).sum().backward()
    grads = [("query", xh.grad)] + ([("source", sh.grad)] if sh is not None else [])
    grads += [(n, p.grad) for n, p in half.named_parameters()]
    assert_all_finite(grads, f"{role} {dtype} backward")


@pytest.mark.parametrize("dtype", HALF, ids=["bf16", "fp16"])
def test_half_precision_incremental_decoding_after_16k_tokens(dtype):
    """The causal state (running sum, count) stays float32: the step reads match the full pass."""
    half = module("causal", dtype)
    exact = module("causal").double()
    exact.load_state_dict(half.state_dict())
    x = (3 * torch.randn(LONG + 3, 1, 32)).to(dtype).double()
    want = call(exact, x)
    state = {}
    prefill = call(half, x[:LONG].to(dtype), state=state)
    steps = [call(half, x[t:t + 1].to(dtype), state=state) for t in range(LONG, LONG + 3)]
    buffer = half._get_input_buffer(state)
    assert buffer["sum"].dtype == torch.float32 and int(buffer["count"]) == LONG + 3
    got = torch.cat([prefill] + steps)
    assert torch.isfinite(got.float()).all()
    assert relative_error(got, want) <= REL_TOL[dtype]


@pytest.mark.parametrize("dtype", [torch.float64] + HALF, ids=["fp64", "bf16", "fp16"])
@pytest.mark.parametrize("role", ["causal", "self", "cross"])
def test_fully_padded_rows_and_empty_sources_never_divide_by_zero(dtype, role):
    """``n = 0`` (a row of pads, a source of length 0): zero memory, finite values and gradients."""
    layer = module(role, dtype, dim=8, heads=2, slots=4)
    x = torch.randn(5, 3, 8, dtype=torch.float64).to(dtype).requires_grad_()
    src = torch.randn(4, 3, 8, dtype=torch.float64).to(dtype).requires_grad_()
    mask = torch.zeros(3, 5 if role != "cross" else 4, dtype=torch.bool)
    mask[0] = True  # sentence 0: only pads
    mask[1, :2] = True  # sentence 1: left padding
    out = call(layer, x, src if role == "cross" else None, mask)
    assert torch.isfinite(out.float()).all()
    assert torch.count_nonzero(out[:, 0]) == 0  # nothing was written: y = a * 0
    out.float().sum().backward()
    grads = [("x", x.grad)] + ([("src", src.grad)] if role == "cross" else [])
    grads += list((n, p.grad) for n, p in layer.named_parameters())
    assert_all_finite(grads, f"{role} {dtype} fully padded")
    if role == "cross":
        empty = src[:0].detach()  # a source of length 0
        out = call(layer, x.detach(), empty)
        assert out.shape == (5, 3, 8) and torch.count_nonzero(out) == 0
    if role == "causal":  # incremental: a first step that is a pad (count stays 0)
        state = {}
        step = call(layer, x[:1].detach(), mask=torch.tensor([[True], [False], [True]]),
                    state=state)
        assert torch.isfinite(step.float()).all() and torch.count_nonzero(step[:, 0]) == 0
        assert layer._get_input_buffer(state)["count"].tolist() == [0, 1, 0]


# -- whole fairseq models ------------------------------------------------------------------------

MODEL = [
    "--encoder-embed-dim", "32", "--decoder-embed-dim", "32", "--encoder-ffn-embed-dim", "64",
    "--decoder-ffn-embed-dim", "64", "--encoder-layers", "1", "--decoder-layers", "1",
    "--encoder-attention-heads", "4", "--decoder-attention-heads", "4",
    "--encoder-use-memsizer",  # softmax self-attention over 16k tokens would need 2 GB
    "--max-source-positions", "20000", "--max-target-positions", "20000", "--dropout", "0.1",
]


@pytest.fixture(scope="module")
def translation_model(tmp_path_factory):
    data = write_dicts(str(tmp_path_factory.mktemp("numerics_dicts")))
    model, task, _, _ = build_translation_model(data, "memsizer_transformer_tiny", MODEL)
    return model, task


@pytest.mark.parametrize("dtype", HALF, ids=["bf16", "fp16"])
@pytest.mark.parametrize("length", [1, LONG])
def test_half_precision_translation_model_trains_and_decodes(translation_model, dtype, length):
    model, task = translation_model
    model = model.to(dtype)
    vocab = task.source_dictionary
    gen = torch.Generator().manual_seed(length)
    src = torch.randint(vocab.nspecial, len(vocab), (1, length), generator=gen)
    src[0, -1] = vocab.eos()  # a 1-token source is just </s>: an empty line
    prev = torch.randint(vocab.nspecial, len(vocab), (1, length), generator=gen)
    prev[0, 0] = vocab.eos()
    lengths = torch.tensor([length])

    model.train()
    model.zero_grad()
    logits, _ = model(src, lengths, prev)
    assert logits.dtype == dtype and torch.isfinite(logits.float()).all()
    loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), prev.view(-1))
    loss.backward()
    assert torch.isfinite(loss)
    assert_all_finite([(n, p.grad) for n, p in model.named_parameters()], "translation backward")

    model.eval()
    generator = SequenceGenerator([model], task.target_dictionary, beam_size=2, max_len_b=5)
    with torch.no_grad():
        hyps = generator.forward({"net_input": {"src_tokens": src, "src_lengths": lengths}})
    scores = torch.stack([h["score"] for h in hyps[0]]).float()
    assert len(hyps[0]) == 2 and torch.isfinite(scores).all()
    for h in hyps[0]:
        assert torch.isfinite(h["positional_scores"].float()).all()


@pytest.mark.parametrize("dtype", HALF, ids=["bf16", "fp16"])
def test_half_precision_lm_decodes_from_a_one_token_prompt(dtype):
    model, dictionary = make_lm(max_positions=64, decoder_embed_dim=32, decoder_ffn_embed_dim=64)
    model = model.to(dtype).eval()

    generator = SequenceGenerator([model], dictionary, beam_size=2, max_len_b=8)
    prompt = random_tokens(dictionary, 2, 1, seed=1)  # one token per sentence
    sample = {"net_input": {"src_tokens": prompt, "src_lengths": torch.tensor([1, 1])}}
    with torch.no_grad():
        hyps = generator.forward(sample, prefix_tokens=prompt)
    for sentence in hyps:
        for h in sentence:
            assert torch.isfinite(h["positional_scores"].float()).all()


def test_fp16_lm_trains_on_16k_tokens():
    """fp16 (bf16 is in test_lm.py): forward and backward of a memsizer_lm on 16k tokens."""
    model, dictionary = make_lm(max_positions=16400, decoder_layers=2, decoder_embed_dim=64,
                                decoder_ffn_embed_dim=128, causal_proj_dim=32)
    model = model.half().train()
    tokens = random_tokens(dictionary, 1, LONG, seed=3)
    logits, _ = model(tokens)
    assert logits.dtype == torch.float16 and torch.isfinite(logits.float()).all()
    loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), tokens.view(-1))
    loss.backward()
    assert torch.isfinite(loss)
    assert_all_finite([(n, p.grad) for n, p in model.named_parameters()], "fp16 LM backward")
