"""The causal short convolution's fast form against its definition (batch first)."""
import pytest
import torch

from memsizer_fairseq.ops.short_conv import naive_short_conv, short_conv

TOL = dict(rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("taps", [2, 4])
def test_fast_form_equals_the_definition(taps):
    x = torch.randn(3, 9, 6, dtype=torch.float64)  # batch first
    weight = torch.randn(6, taps, dtype=torch.float64)
    out, history = short_conv(x, weight)
    torch.testing.assert_close(out, naive_short_conv(x, weight), **TOL)
    torch.testing.assert_close(history, x[:, -(taps - 1):], **TOL)  # the next call's history
    # continued from a history, it equals the pass over the whole sequence
    first, kept = short_conv(x[:, :4], weight)
    rest, _ = short_conv(x[:, 4:], weight, kept)
    torch.testing.assert_close(torch.cat([first, rest], dim=1), out, **TOL)


def test_pads_are_zero_inputs():
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    weight = torch.randn(3, 3, dtype=torch.float64)
    keep = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 0]], dtype=torch.bool)
    masked = x * keep.unsqueeze(-1)
    torch.testing.assert_close(naive_short_conv(x, weight, keep), short_conv(masked, weight)[0],
                               **TOL)
