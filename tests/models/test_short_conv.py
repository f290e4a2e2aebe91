"""The causal short convolution in front of causal Memsizer attention (``--causal-short-conv``):
the fast form equals the per-position definition, the layer equals Memsizer on the convolved
input, it starts as the paper's attention, and incremental decoding (through beam reorders and
dropped sentences, with padding) equals the full pass."""
import pytest
import torch

from builders import TOL, assert_reorders_keep_the_full_pass, make, pad_mask
from memsizer_fairseq.models.attention import MemsizerAttention
from memsizer_fairseq.ops.short_conv import naive_short_conv


def reference_short_conv(x, weight, padding_mask=None):
    """The definition on fairseq's layout: x ``T x B x d``, padding_mask ``B x T``."""
    keep = None if padding_mask is None else ~padding_mask
    return naive_short_conv(x.transpose(0, 1), weight, keep).transpose(0, 1)


def make_conv(taps=3, dim=12, heads=3, slots=5, random_taps=True):
    plain = make("causal", dim=dim, heads=heads, slots=slots)
    module = MemsizerAttention(dim, heads, slots, causal_short_conv=taps, causal=True,
                               self_attention=True, q_init_scale=1.0,
                               kv_init_scale=1.0).double().eval()
    module.load_state_dict(plain.state_dict(), strict=False)
    if random_taps:
        with torch.no_grad():
            module.short_conv.uniform_(-1.0, 1.0)
    return module, plain


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
    # the last K - 1 = 3 inputs of the 4 kept rows, batch first like every state tensor
    assert module._get_input_buffer(state)["inputs"].shape == (4, 3, 12)


@pytest.mark.parametrize("kwargs, word", [
    (dict(causal_short_conv=1, causal=True, self_attention=True), "at least 2"),
    (dict(causal_short_conv=3, self_attention=True), "causal"),
])
def test_bad_settings_are_refused(kwargs, word):
    with pytest.raises(ValueError, match=word):
        MemsizerAttention(12, 3, 5, q_init_scale=1.0, kv_init_scale=1.0, **kwargs)
