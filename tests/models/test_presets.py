"""The recommended presets (beyond the paper): each is its paper preset with the recommendation
set, builds the layers it names, and yields to a flag given on the command line."""
import os
import shutil

import pytest
from fairseq import options, tasks
from fairseq.dataclass.utils import convert_namespace_to_omegaconf
from fairseq.modules import MultiheadAttention

from fairseq_helpers import build_translation_model, write_dicts
from memsizer_fairseq.models.attention import MemsizerAttention
from memsizer_fairseq.models.presets import PRESETS
from memsizer_fairseq.tools.toolkit.fairseq_cli import USER_DIR

SMALL = [
    "--encoder-embed-dim", "16", "--decoder-embed-dim", "16", "--encoder-ffn-embed-dim", "32",
    "--decoder-ffn-embed-dim", "32", "--encoder-layers", "2", "--decoder-layers", "2",
    "--encoder-attention-heads", "2", "--decoder-attention-heads", "2",
]
LM_SMALL = ["--decoder-embed-dim", "16", "--decoder-ffn-embed-dim", "32", "--decoder-layers", "2",
            "--decoder-attention-heads", "2"]
# recommended preset -> (its paper preset, the fields the recommendation sets)
RECOMMENDED = {
    "memsizer_transformer_softmax_cross": ("memsizer_transformer", {"cross_attention": "softmax"}),
    "memsizer_transformer_summarization_softmax_cross": (
        "memsizer_transformer_summarization", {"cross_attention": "softmax"}),
    "memsizer_lm_short_conv": ("memsizer_lm", {"causal_short_conv": 4}),
    "memsizer_transformer_causal_slots_32": ("memsizer_transformer", {"causal_proj_dim": 32}),
}
TASK_FLAGS = {
    "translation": ["--task", "translation", "--source-lang", "src", "--target-lang", "tgt"],
    "summarization": ["--task", "summarization", "--source-lang", "src", "--target-lang", "tgt"],
    "language_modeling": ["--task", "language_modeling"],
}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("dicts"))
    write_dicts(directory)
    shutil.copy(os.path.join(directory, "dict.src.txt"), os.path.join(directory, "dict.txt"))
    return directory


def parse(data_dir, arch, extra=()):
    task = next(p.task for p in PRESETS if p.arch == arch)
    parser = options.get_training_parser()
    return options.parse_args_and_arch(
        parser, [data_dir, "--user-dir", USER_DIR, *TASK_FLAGS[task], "--arch", arch, *extra])


def test_every_recommended_preset_is_tested():
    named = {p.arch for p in PRESETS
             if p.arch.endswith(("_softmax_cross", "_short_conv", "_causal_slots_32"))}
    assert named == set(RECOMMENDED)


@pytest.mark.parametrize("arch", sorted(RECOMMENDED))
def test_a_recommended_preset_is_its_paper_preset_with_the_recommendation(data_dir, arch):
    paper, recommendation = RECOMMENDED[arch]
    got, want = vars(parse(data_dir, arch)), vars(parse(data_dir, paper))
    differences = {k: got.get(k) for k in set(got) | set(want) if got.get(k) != want.get(k)}
    assert differences == {"arch": arch, **recommendation}


def test_softmax_cross_builds_softmax_cross_attention_beside_memsizer_self_attention(data_dir):
    model, *_ = build_translation_model(data_dir, "memsizer_transformer_softmax_cross", SMALL)
    for layer in model.decoder.layers:
        assert isinstance(layer.self_attn, MemsizerAttention) and layer.self_attn.proj_dim == 4
        assert isinstance(layer.encoder_attn, MultiheadAttention)
        assert not isinstance(layer.encoder_attn, MemsizerAttention)
    # a flag given wins over the preset
    model, *_ = build_translation_model(data_dir, "memsizer_transformer_softmax_cross",
                                        SMALL + ["--cross-attention", "memsizer"])
    assert all(isinstance(layer.encoder_attn, MemsizerAttention)
               for layer in model.decoder.layers)


def test_short_conv_lm_builds_the_convolution_in_every_layer(data_dir):
    args = parse(data_dir, "memsizer_lm_short_conv", LM_SMALL)
    cfg = convert_namespace_to_omegaconf(args)
    model = tasks.setup_task(cfg.task).build_model(cfg.model)
    attentions = [layer.self_attn for layer in model.decoder.layers]
    assert all(isinstance(a, MemsizerAttention) and a.causal for a in attentions)
    assert [tuple(a.short_conv.shape) for a in attentions] == [(16, 4)] * 2
    assert (args.causal_proj_dim, args.q_init_scale, args.kv_init_scale) == (32, 32.0, 1.0)
