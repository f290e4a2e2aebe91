"""Small Memsizer layers and language models built directly (no command line), shared by the
tests of the layer, incremental decoding, half precision and the language model."""
import argparse

import torch
from fairseq.data import Dictionary

from memsizer_fairseq.models.lm import MemsizerLanguageModel, memsizer_lm_base_architecture
from memsizer_fairseq.models.attention import MemsizerAttention

TOL = dict(rtol=1e-8, atol=1e-8)

# max |half - float64| / max(max |float64|, 1), same weights and inputs; measured over 40 seeds:
# bf16 <= 0.9 %, fp16 <= 0.1 %. (The floor of 1: with one source token y = (a . l) r, and a . l
# sums 32 terms of a zero-mean LayerNorm output that nearly cancel, so y itself can be tiny.)
REL_TOL = {torch.bfloat16: 2e-2, torch.float16: 3e-3}


def make(role, dim=12, heads=3, slots=5, kdim=None, **kw):
    kw = {"q_init_scale": 1.0, "kv_init_scale": 1.0, **kw}
    module = MemsizerAttention(
        dim,
        heads,
        slots,
        kdim=kdim,
        causal=role == "causal",
        self_attention=role != "cross",
        encoder_decoder_attention=role == "cross",
        **kw,
    ).double()
    # Non-trivial LayerNorm affine parameters, so that they are checked too.
    with torch.no_grad():
        for norm in (module.l_norm, module.r_norm):
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.5, 0.5)
        for linear in (module.q_proj, module.l_proj, module.r_proj):
            linear.bias.uniform_(-0.3, 0.3)
    return module.eval()


def pad_mask(lengths, total, left):
    mask = torch.ones(len(lengths), total, dtype=torch.bool)
    for b, n in enumerate(lengths):
        if left:
            mask[b, total - n:] = False
        else:
            mask[b, :n] = False
    return mask


def step_through(module, steps, state, source=None, source_pad=None):
    outs = []
    for x_t in steps:
        if module.causal:
            out, _ = module(x_t, x_t, x_t, incremental_state=state)
        else:
            out, _ = module(x_t, source, source, key_padding_mask=source_pad,
                            incremental_state=state, static_kv=True)
        outs.append(out)
    return torch.cat(outs)


def relative_error(got, want):
    return float((got.double() - want).abs().max() / want.abs().max().clamp(min=1.0))


def module(role, dtype=torch.float64, dim=32, heads=4, slots=32, **kw):
    torch.manual_seed(0)
    layer = MemsizerAttention(
        dim, heads, slots, causal=role == "causal", self_attention=role != "cross",
        encoder_decoder_attention=role == "cross", q_init_scale=8, kv_init_scale=8, **kw,
    )
    with torch.no_grad():  # non-trivial LayerNorm affine parameters and biases
        for norm in (layer.l_norm, layer.r_norm):
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.5, 0.5)
        for linear in (layer.q_proj, layer.l_proj, layer.r_proj):
            linear.bias.uniform_(-0.3, 0.3)
    return layer.to(dtype)


class _Task:
    def __init__(self, dictionary):
        self.source_dictionary = self.target_dictionary = dictionary


def make_dictionary(words=40):
    dictionary = Dictionary()
    for i in range(words):
        dictionary.add_symbol(f"w{i}")
    return dictionary


def make_lm(dictionary=None, max_positions=512, **overrides):
    dictionary = dictionary or make_dictionary()
    args = argparse.Namespace(
        arch="memsizer_lm", decoder_layers=2, decoder_embed_dim=32, decoder_ffn_embed_dim=64,
        decoder_attention_heads=4, causal_proj_dim=6, dropout=0.0,
        tokens_per_sample=max_positions, max_target_positions=max_positions,
        add_bos_token=False, tpu=False,
    )
    for key, value in overrides.items():
        setattr(args, key, value)
    memsizer_lm_base_architecture(args)
    return MemsizerLanguageModel.build_model(args, _Task(dictionary)), dictionary


def random_tokens(dictionary, bsz, length, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(dictionary.nspecial, len(dictionary), (bsz, length), generator=gen)


def assert_reorders_keep_the_full_pass(module, x, prefill=0):
    """Decode ``x`` (``T x 6 x d``: 3 sentences of 2 beams) step by step after a ``prefill``
    of that many positions, permute within the beams (duplicating one), drop sentence 1, decode
    3 more steps: they must equal the full pass over each kept row's history."""
    state = {}
    if prefill:
        module(x[:prefill], x[:prefill], x[:prefill], incremental_state=state)
    step_through(module, x[prefill:].split(1), state)
    within = torch.tensor([1, 1, 2, 3, 5, 4])
    module.reorder_incremental_state(state, within)
    dropped = torch.tensor([0, 1, 4, 5])
    module.reorder_incremental_state(state, dropped)
    order = within[dropped]
    more = torch.randn(3, len(order), x.size(-1), dtype=x.dtype)
    got = step_through(module, more.split(1), state)
    history = torch.cat([x[:, order], more])
    want, _ = module(history, history, history)
    torch.testing.assert_close(got, want[x.size(0):], **TOL)
    return state
