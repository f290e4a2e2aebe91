"""Build the compared models through fairseq's registries (no data files needed)."""
import types

import torch
from fairseq import models as fairseq_models
from fairseq import options
from fairseq.data import Dictionary
from fairseq.dataclass.utils import convert_namespace_to_omegaconf

import memsizer_fairseq  # noqa: F401  (registers the Memsizer architectures)
from memsizer_fairseq.modules import MemsizerAttention


def make_dictionary(size: int) -> Dictionary:
    dictionary = Dictionary()
    for i in range(size - dictionary.nspecial):
        dictionary.add_symbol(f"w{i}")
    return dictionary


def build(arch: str, dictionary: Dictionary, flags=(), task_name="translation"):
    """``arch`` built as fairseq-train builds it: parse_args_and_arch, OmegaConf, build_model.

    Only the dictionary comes from here instead of a data folder.
    """
    parser = options.get_training_parser()
    args = options.parse_args_and_arch(
        parser, ["unused-data-dir", "--task", task_name, "--arch", arch, *map(str, flags)]
    )
    cfg = convert_namespace_to_omegaconf(args)
    task = types.SimpleNamespace(source_dictionary=dictionary, target_dictionary=dictionary)
    return fairseq_models.build_model(cfg.model, task)


def lm_flags(dim: int, layers: int, heads: int):
    return [
        "--decoder-embed-dim", dim, "--decoder-ffn-embed-dim", 4 * dim, "--decoder-layers", layers,
        "--decoder-attention-heads", heads, "--share-decoder-input-output-embed",
        "--dropout", 0.0,
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


def remove_self_attention(model):
    for layer in model.decoder.layers:
        layer.self_attn = NoAttention(layer.self_attn)
    return model


def set_causal_read(model, name: str):
    """Switch every causal Memsizer layer to one training formulation (for the benchmark)."""
    from memsizer_fairseq.modules.authors_causal import authors_causal_read
    from memsizer_fairseq.modules.causal_read import chunked_causal_read, quadratic_causal_read

    read = {
        "auto": None,
        "quadratic": quadratic_causal_read,
        "chunked": chunked_causal_read,
        "authors": authors_causal_read,
    }[name]
    for module in model.modules():
        if isinstance(module, MemsizerAttention) and module.causal:
            module.causal_read_fn = read
    return model
