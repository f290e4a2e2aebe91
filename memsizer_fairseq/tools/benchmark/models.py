"""Build the compared models through fairseq's registries (no data files needed)."""
import types

import torch
import torch.nn.functional as F
from fairseq import models as fairseq_models, options
from fairseq.data import Dictionary
from fairseq.dataclass.utils import convert_namespace_to_omegaconf
from fairseq.modules import MultiheadAttention

import memsizer_fairseq  # noqa: F401  (registers the Memsizer architectures)
from memsizer_fairseq.models.attention import MemsizerAttention


def make_dictionary(size: int) -> Dictionary:
    dictionary = Dictionary()
    for i in range(size - dictionary.nspecial):
        dictionary.add_symbol(f"w{i}")
    return dictionary


def build(arch: str, dictionary: Dictionary, flags=(), task_name="translation"):
    """``arch`` built as fairseq-train builds it: parse_args_and_arch, OmegaConf, build_model;
    only the dictionary comes from here instead of a data folder."""
    args = options.parse_args_and_arch(options.get_training_parser(), [
        "unused-data-dir", "--task", task_name, "--arch", arch, *map(str, flags)])
    cfg = convert_namespace_to_omegaconf(args)
    task = types.SimpleNamespace(source_dictionary=dictionary, target_dictionary=dictionary)
    return fairseq_models.build_model(cfg.model, task)


def lm_flags(dim: int, layers: int, heads: int, ffn=None, dropout: float = 0.0):
    """A language model's size; the feed-forward width ``ffn`` defaults to ``4 x dim``. The input
    and output widths are set too: fairseq's ``transformer_lm`` defaults them to 512, which would
    add projections (and a wider embedding) at any other width."""
    return [
        "--decoder-embed-dim", dim, "--decoder-input-dim", dim, "--decoder-output-dim", dim,
        "--decoder-ffn-embed-dim", ffn or 4 * dim,
        "--decoder-layers", layers, "--decoder-attention-heads", heads,
        "--share-decoder-input-output-embed", "--dropout", dropout,
    ]


def seq2seq_flags(dim: int, layers: int, heads: int, max_positions: int):
    return [
        "--encoder-embed-dim", dim, "--decoder-embed-dim", dim,
        "--encoder-ffn-embed-dim", 4 * dim, "--decoder-ffn-embed-dim", 4 * dim,
        "--encoder-layers", layers, "--decoder-layers", layers,
        "--encoder-attention-heads", heads, "--decoder-attention-heads", heads,
        "--share-all-embeddings", "--max-source-positions", max_positions,
        "--max-target-positions", max_positions, "--dropout", 0.0,
    ]


class NoAttention(torch.nn.Module):
    """Stands in for self-attention and returns zeros: the network's cost without attention."""

    def __init__(self, attention):
        super().__init__()
        self.embed_dim = attention.embed_dim
        self.num_heads = attention.num_heads
        self.head_dim = getattr(attention, "head_dim", self.embed_dim // self.num_heads)

    def forward(self, query, *args, **kwargs):
        return torch.zeros_like(query), None

    def _get_input_buffer(self, incremental_state):
        return {}

    def reorder_incremental_state(self, incremental_state, new_order):
        return incremental_state


def remove_attention(model, cross: bool = False):
    """Every decoder self-attention removed, and with ``cross`` every cross-attention too (an
    encoder-decoder model's bound; its encoder is left as it is)."""
    for layer in model.decoder.layers:
        layer.self_attn = NoAttention(layer.self_attn)
        if cross and getattr(layer, "encoder_attn", None) is not None:
            layer.encoder_attn = NoAttention(layer.encoder_attn)
    return model


class SdpaSelfAttention(MultiheadAttention):
    """fairseq's causal self-attention computed by PyTorch's fused
    ``scaled_dot_product_attention(..., is_causal=True)``: no ``T x T`` mask or score matrix is
    handed to the kernel, so it can pick its flash / memory-efficient implementations.

    The fused path serves the calls of fairseq's decoder that see the whole sequence (training,
    scoring): self-attention without incremental state, padding mask or requested weights, with
    the decoder's square future mask. Every other call (incremental decoding, padded batches,
    attention weights) is fairseq's own :class:`MultiheadAttention` forward. The decoder still
    builds (once, and keeps) its ``T x T`` future mask, which the fused path does not read.
    """

    @classmethod
    def like(cls, attention: MultiheadAttention) -> "SdpaSelfAttention":
        """A copy of the self-attention ``attention``: the same sizes, dropout and weights."""
        if not attention.self_attention or attention.bias_k is not None or attention.add_zero_attn:
            raise ValueError("SdpaSelfAttention replaces plain self-attention only")
        weight = attention.q_proj.weight
        new = cls(attention.embed_dim, attention.num_heads, dropout=attention.dropout_module.p,
                  bias=attention.q_proj.bias is not None, self_attention=True,
                  ).to(device=weight.device, dtype=weight.dtype)
        new.dropout_module.apply_during_inference = attention.dropout_module.apply_during_inference
        new.load_state_dict(attention.state_dict())
        return new.train(attention.training)

    def forward(self, query, key, value, key_padding_mask=None, incremental_state=None,
                need_weights=True, static_kv=False, attn_mask=None, before_softmax=False,
                need_head_weights=False):
        length, batch, width = query.shape
        fused = (
            incremental_state is None and key_padding_mask is None and not static_kv
            and not (need_weights or need_head_weights or before_softmax)
            and key is query and value is query
            and attn_mask is not None and tuple(attn_mask.shape) == (length, length)
        )
        if not fused:
            return super().forward(query, key, value, key_padding_mask, incremental_state,
                                   need_weights, static_kv, attn_mask, before_softmax,
                                   need_head_weights)

        def heads(projection):  # T x B x C -> B x H x T x C/H
            return projection(query).view(length, batch, self.num_heads, -1).permute(1, 2, 0, 3)

        use_dropout = self.training or self.dropout_module.apply_during_inference
        out = F.scaled_dot_product_attention(
            heads(self.q_proj), heads(self.k_proj), heads(self.v_proj),
            dropout_p=self.dropout_module.p if use_dropout else 0.0, is_causal=True,
        )
        return self.out_proj(out.permute(2, 0, 1, 3).reshape(length, batch, width)), None


def use_sdpa_attention(model):
    """Give every decoder layer of a fairseq Transformer LM :class:`SdpaSelfAttention`."""
    for layer in model.decoder.layers:
        layer.self_attn = SdpaSelfAttention.like(layer.self_attn)
    return model


def set_causal_read(model, name: str):
    """Switch every causal Memsizer layer to one form of the causal read (``auto`` or a key of
    :data:`~memsizer_fairseq.ops.causal.CAUSAL_FORMS`), for the benchmark."""
    for module in model.modules():
        if isinstance(module, MemsizerAttention) and module.causal:
            module.causal_form = name
    return model
