"""The causal short convolution in front of causal Memsizer attention (``--causal-short-conv``):
the fast form equals the per-position definition, the layer equals Memsizer on the convolved
input, it starts as the paper's attention, and incremental decoding (through beam reorders and
dropped sentences, with padding) equals the full pass."""
import pytest
import torch

from builders import TOL, assert_reorders_keep_the_full_pass, make, pad_mask
from memsizer_fairseq.modules.short_conv import (
    ShortConvMemsizerAttention,
    reference_short_conv,
    short_conv,
)


def make_conv(taps=3, dim=12, heads=3, slots=5, random_taps=True):
    plain = make("causal", dim=dim, heads=heads, slots=slots)
    module = ShortConvMemsizerAttention(dim, heads, slots, taps=taps, causal=True,
                                        self_attention=True).double().eval()
    module.load_state_dict(plain.state_dict(), strict=False)
    if random_taps:
        with torch.no_grad():
            module.short_conv.uniform_(-1.0, 1.0)
    return module, plain


@pytest.mark.parametrize("taps", [2, 4])
def test_fast_form_equals_the_definition(taps):
    x = torch.randn(9, 3, 6, dtype=torch.float64)
    weight = torch.randn(6, taps, dtype=torch.float64)
    out, history = short_conv(x, weight)
    torch.testing.assert_close(out, reference_short_conv(x, weight), **TOL)
    torch.testing.assert_close(history, x[-(taps - 1):], **TOL)  # the next call's history


@pytest.mark.parametrize("left", [False, True])
def test_layer_is_memsizer_on_the_convolved_input_with_padding(left):
    module, plain = make_conv()
    x = torch.randn(7, 3, 12, dtype=torch.float64)
    pad = pad_mask([7, 4, 2], 7, left)
    got, _ = module(x, x, x, key_padding_mask=pad)
    mixed = reference_short_conv(x, module.short_conv, pad)
    want, _ = plain(mixed, mixed, mixed, key_padding_mask=pad)
    keep = ~pad.transpose(0, 1).unsqueeze(-1)
    torch.testing.assert_close(got * keep, want * keep, **TOL)


def test_starts_as_the_papers_attention():
    module, plain = make_conv(random_taps=False)
    x = torch.randn(6, 2, 12, dtype=torch.float64)
    torch.testing.assert_close(module(x, x, x)[0], plain(x, x, x)[0], **TOL)


def test_prefill_then_steps_through_reorders_equal_the_full_pass():
    module, _ = make_conv(taps=4)
    x = torch.randn(5, 6, 12, dtype=torch.float64)
    state = assert_reorders_keep_the_full_pass(module, x, prefill=2)  # prefill < taps
    assert module.short_conv_state(state).shape == (3, 4, 12)


@pytest.mark.parametrize("kwargs, word", [
    (dict(taps=1, causal=True, self_attention=True), "at least 2"),
    (dict(taps=3, self_attention=True), "causal"),
])
def test_bad_settings_are_refused(kwargs, word):
    with pytest.raises(ValueError, match=word):
        ShortConvMemsizerAttention(12, 3, 5, **kwargs)
