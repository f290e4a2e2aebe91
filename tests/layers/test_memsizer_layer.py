"""The fairseq-free Memsizer layer, batch first, against the per-position reference: each role,
each causal form, the short convolution, and its causal state carried across calls."""
import pytest
import torch

from memsizer_fairseq.layers import MemsizerLayer
from memsizer_fairseq.ops.causal import FLA_FORMS, FORM_CHOICES
from reference import reference_attention

TOL = dict(rtol=1e-8, atol=1e-8)


def layer(role, taps=0, **kw):
    torch.manual_seed(0)
    module = MemsizerLayer(12, 3, 5, role=role, q_init_scale=2.0, kv_init_scale=1.0,
                           kdim=7 if role == "cross" else None, causal_short_conv=taps,
                           **kw).double().eval()
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.1 * torch.randn_like(p))
    module.causal = role == "causal"  # what the reference reads
    return module


@pytest.mark.parametrize("role", ["causal", "self", "cross"])
def test_each_role_equals_the_reference(role):
    module = layer(role)
    x = torch.randn(2, 6, 12, dtype=torch.float64)  # batch first
    source = torch.randn(2, 4, 7, dtype=torch.float64)
    keep = torch.ones(2, 6, dtype=torch.bool)
    keep[1, :2] = False
    source_keep = torch.tensor([[True] * 4, [False, True, True, True]])
    if role == "cross":
        got = module(x, source, source_keep=source_keep)
        want = reference_attention(module, x.transpose(0, 1), source.transpose(0, 1),
                                   source_pad=~source_keep).transpose(0, 1)
    else:
        got = module(x, keep=keep)
        want = reference_attention(module, x.transpose(0, 1), query_pad=~keep,
                                   source_pad=~keep).transpose(0, 1)
        got, want = got * keep.unsqueeze(-1), want * keep.unsqueeze(-1)
    torch.testing.assert_close(got, want, **TOL)


# flash-linear-attention's forms (no float64): tests/ops/test_fla_forms.py
@pytest.mark.parametrize("form", [f for f in FORM_CHOICES if f not in FLA_FORMS])
def test_every_causal_form_gives_the_same_layer(form):
    module = layer("causal", causal_form=form, causal_block_size=4)
    x = torch.randn(2, 9, 12, dtype=torch.float64, requires_grad=True)
    want = reference_attention(module, x.transpose(0, 1)).transpose(0, 1)
    got = module(x)
    torch.testing.assert_close(got, want, **TOL)
    weights = torch.randn_like(got)
    torch.testing.assert_close(torch.autograd.grad((got * weights).sum(), x)[0],
                               torch.autograd.grad((want * weights).sum(), x)[0], **TOL)


@pytest.mark.parametrize("taps", [0, 3])
def test_the_causal_state_continues_the_sequence(taps):
    """A prefill, then steps with and without autograd: the full pass over the sequence."""
    module = layer("causal", taps=taps)
    if taps:
        with torch.no_grad():
            module.short_conv.uniform_(-1, 1)
    x = torch.randn(2, 8, 12, dtype=torch.float64)
    want = module(x)
    y, state = module.attend_causal(x[:, :3], state={})
    outs = [y]
    for t in range(3, 8):
        with torch.set_grad_enabled(t % 2 == 0):
            y, state = module.attend_causal(x[:, t:t + 1], state=state)
        outs.append(y)
    torch.testing.assert_close(torch.cat(outs, 1), want, **TOL)
    assert set(state) == ({"sum", "count", "inputs"} if taps else {"sum", "count"})
    assert state["sum"].shape == (2, 5, 12)
    if taps:
        assert state["inputs"].shape == (2, taps - 1, 12)
    assert module.state_bytes(state) == 2 * (5 * 12 + 1 + 12 * max(taps - 1, 0)) * 8


@pytest.mark.parametrize("kwargs, word", [
    (dict(role="encoder"), "role"),
    (dict(role="self", causal_short_conv=3), "causal self-attention only"),
    (dict(role="causal", causal_form="flash"), "causal_form"),
    (dict(role="causal", proj_dim=0), "proj_dim"),
])
def test_bad_arguments_are_refused_by_name(kwargs, word):
    args = dict(embed_dim=8, num_heads=2, proj_dim=4, q_init_scale=1.0, kv_init_scale=1.0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=word):
        MemsizerLayer(**args)


def test_a_memory_read_by_the_beams_of_its_sentence():
    """``read`` and ``read_weights`` of U sources by U x g consecutive rows (beam search): those
    of each row's own copy of its source."""
    module = layer("cross")
    source = torch.randn(2, 4, 7, dtype=torch.float64)
    keep = torch.tensor([[True] * 4, [False, True, True, True]])
    x = torch.randn(6, 3, 12, dtype=torch.float64)
    rows = torch.arange(2).repeat_interleave(3)
    with torch.no_grad():  # the decoding step's read, and the read with autograd
        for grad in (False, True):
            with torch.set_grad_enabled(grad):
                torch.testing.assert_close(module.read(x, module.memory(source, keep)),
                                           module(x, source[rows], source_keep=keep[rows]), **TOL)
    torch.testing.assert_close(module.read_weights(x, source, keep),
                               module.read_weights(x, source[rows], keep[rows]), **TOL)


@pytest.mark.parametrize("role, taps", [("causal", 0), ("causal", 3), ("self", 0),
                                        ("cross", 0)])
def test_the_layer_compiles_and_computes_what_it_computes_in_python(role, taps):
    module = layer(role, taps=taps)
    compiled = torch.jit.script(module)
    x = torch.randn(2, 6, 12, dtype=torch.float64)
    source = torch.randn(2, 4, 7, dtype=torch.float64)
    keep = torch.ones(2, 6, dtype=torch.bool)
    keep[1, :2] = False
    for grad in (False, True):
        with torch.set_grad_enabled(grad):
            if role == "cross":
                got, want = compiled(x, source), module(x, source)
            else:
                got, want = compiled(x, keep=keep), module(x, keep=keep)
            torch.testing.assert_close(got, want, **TOL)
    if role == "causal":  # a prefill, then steps with and without autograd
        states = [{}, {}]
        for start, end in ((0, 3), (3, 4), (4, 5), (5, 6)):
            with torch.set_grad_enabled(start == 4):
                got, states[0] = compiled.attend_causal(x[:, start:end], keep[:, start:end],
                                                        states[0])
                want, states[1] = module.attend_causal(x[:, start:end], keep[:, start:end],
                                                       states[1])
            torch.testing.assert_close(got, want, **TOL)
