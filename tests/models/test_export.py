"""Every preset deploys as fairseq's Transformer does (fairseq's tests/test_export.py and
TestJitSequenceGenerator): ``torch.jit.script`` of the model, of fairseq's ``EnsembleModel`` and
of its ``SequenceGenerator`` (saved and loaded back), and the compiled generator finds the eager
one's hypotheses with its scores. A language model compiles alone (fairseq's generator and
ensemble do not compile for any decoder-only model) and decodes incrementally through beam
reorders as the eager one does. A model on flash-linear-attention's forms compiles to the
PyTorch forms.

The models are in float64: at initialisation a Memsizer decoder's output moves by about 1e-3 for
a change of 1e-7 in the encoder output, which is what the compiled encoder's softmax attention
(fairseq's own code, not its fused kernel) changes in float32."""
import io
from typing import Dict, List, Optional

import pytest
import torch
from fairseq.sequence_generator import EnsembleModel, SequenceGenerator
from torch import Tensor

from fairseq_helpers import build_translation_model
from tiny_presets import ARCHS, build_preset, task_of, write_data_dir

SEQ2SEQ = [arch for arch in ARCHS if task_of(arch) != "language_modeling"]
# the Wikitext-103 preset's adaptive input is fairseq's AdaptiveInput, which does not compile
LM = [arch for arch in ARCHS if task_of(arch) == "language_modeling" and "wiki103" not in arch]


# The compiled programs run as TorchScript interprets them, without the graph executor's
# profiling and optimisation passes (2-3 s on the first calls of these tiny models, most of a
# test's time), except those of the paper's two default presets, which run as deployed.
OPTIMISED = {"memsizer_transformer", "memsizer_lm"}


@pytest.fixture(autouse=True)
def graph_executor(request):
    callspec = getattr(request.node, "callspec", None)
    optimised = callspec is not None and callspec.params.get("arch") in OPTIMISED
    with torch.jit.optimized_execution(optimised):
        yield optimised


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_data_dir(str(tmp_path_factory.mktemp("dicts")))


def saved_and_loaded(scripted):
    buffer = io.BytesIO()
    torch.jit.save(scripted, buffer)
    buffer.seek(0)
    return torch.jit.load(buffer)


def sources(task, bsz=4, src_len=7, seed=0):
    """Left-padded sources of different lengths, as fairseq's translation task batches them."""
    vocab = task.source_dictionary
    generator = torch.Generator().manual_seed(seed)
    src = torch.randint(vocab.nspecial, len(vocab), (bsz, src_len), generator=generator)
    lengths = torch.tensor([src_len, src_len - 2, src_len - 4, 2][:bsz])
    for row, length in enumerate(lengths):
        src[row, : src_len - length] = vocab.pad()
    src[:, -1] = vocab.eos()
    return {"net_input": {"src_tokens": src, "src_lengths": lengths}}


def assert_same_hypotheses(got, want):
    assert len(got) == len(want)
    for hypotheses, wanted in zip(got, want):
        assert len(hypotheses) == len(wanted)
        for hypothesis, expected in zip(hypotheses, wanted):
            assert torch.equal(hypothesis["tokens"], expected["tokens"])
            torch.testing.assert_close(hypothesis["positional_scores"],
                                       expected["positional_scores"], rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(hypothesis["score"], expected["score"], rtol=1e-5,
                                       atol=1e-5)


def compiled_generator_matches(models, dictionary, sample, **options):
    """fairseq's generator over ``models``, compiled, saved and loaded: its hypotheses equal the
    eager generator's."""
    generator = SequenceGenerator(models, dictionary, beam_size=3, max_len_b=8, **options)
    compiled = saved_and_loaded(torch.jit.script(generator))
    with torch.no_grad():
        assert_same_hypotheses(compiled(sample), generator.forward(sample))


@pytest.mark.parametrize("arch", SEQ2SEQ)
def test_a_translation_model_compiles_alone_in_an_ensemble_and_in_the_generator(data_dir, arch):
    model, task = build_preset(data_dir, arch)
    model = model.double()
    compiled = saved_and_loaded(torch.jit.script(model))
    sample = sources(task)
    src, lengths = sample["net_input"]["src_tokens"], sample["net_input"]["src_lengths"]
    prev = torch.cat([torch.full((4, 1), task.target_dictionary.eos()), src[:, 2:]], dim=1)
    with torch.no_grad():
        encoder_out = model.encoder(src, lengths)
        torch.testing.assert_close(compiled.decoder(prev, encoder_out)[0],
                                   model.decoder(prev, encoder_out)[0], rtol=1e-9, atol=1e-9)
        # the compiled encoder's softmax attention (fairseq's code) takes its softmax in float32
        torch.testing.assert_close(compiled(src, lengths, prev)[0], model(src, lengths, prev)[0],
                                   rtol=1e-6, atol=1e-6)
    torch.jit.script(EnsembleModel([model]))
    compiled_generator_matches([model], task.target_dictionary, sample, no_repeat_ngram_size=2)


def test_an_ensemble_with_a_transformer_compiles_in_the_generator(data_dir):
    memsizer, task = build_preset(data_dir, "memsizer_transformer_softmax_cross")
    transformer, *_ = build_translation_model(data_dir, "transformer", [
        "--encoder-embed-dim", "16", "--decoder-embed-dim", "16", "--encoder-ffn-embed-dim",
        "32", "--decoder-ffn-embed-dim", "32", "--encoder-layers", "1", "--decoder-layers", "1",
        "--encoder-attention-heads", "2", "--decoder-attention-heads", "2", "--dropout", "0"])
    compiled_generator_matches([memsizer.double(), transformer.double().eval()],
                               task.target_dictionary, sources(task))


class StepByStep(torch.nn.Module):
    """Incremental decoding of given tokens (``B x T``) by ``decoder``, the rows reordered by
    ``first_order`` after step ``first`` and by ``second_order`` after step ``second``: the
    log-probabilities of every step. Compiled, the state lives in compiled code as in fairseq's
    compiled generator (a Python dict handed to compiled code is copied, not updated)."""

    def __init__(self, decoder):
        super().__init__()
        self.decoder = decoder

    def forward(self, tokens: Tensor, first: int, first_order: Tensor, second: int,
                second_order: Tensor) -> Tensor:
        state: Dict[str, Dict[str, Optional[Tensor]]] = {}
        steps: List[Tensor] = []
        prefix = tokens[:, :0]
        for t in range(tokens.size(1)):
            prefix = torch.cat([prefix, tokens[: prefix.size(0), t:t + 1]], dim=1)
            steps.append(self.decoder.forward(prefix, None, state)[0])
            if t == first or t == second:
                order = first_order if t == first else second_order
                self.decoder.reorder_incremental_state_scripting(state, order)
                prefix, tokens = prefix.index_select(0, order), tokens.index_select(0, order)
                steps = [step.index_select(0, order) for step in steps]
        return torch.cat(steps, dim=1)


def assert_compiled_decoding_equals_eager(model, tokens, *reorders):
    decoding = StepByStep(model.decoder)
    compiled = saved_and_loaded(torch.jit.script(decoding))
    with torch.no_grad():
        torch.testing.assert_close(compiled(tokens, *reorders), decoding(tokens, *reorders),
                                   rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("arch", LM)
def test_a_language_model_compiles_and_decodes_as_the_eager_one(data_dir, arch):
    model, task = build_preset(data_dir, arch)
    model = model.double()
    compiled = saved_and_loaded(torch.jit.script(model))
    vocab = task.source_dictionary
    tokens = torch.randint(vocab.nspecial, len(vocab), (6, 9),
                           generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(compiled(tokens)[0], model(tokens)[0], rtol=1e-9, atol=1e-9)
    # beams moved within their sentences, then a sentence finished
    assert_compiled_decoding_equals_eager(model, tokens, 2, torch.tensor([1, 1, 2, 3, 5, 4]),
                                          5, torch.tensor([0, 1, 4, 5]))


def test_fairseqs_generator_and_ensemble_do_not_compile_for_a_language_model(data_dir):
    """fairseq's EnsembleModel compiles ``model.encoder`` whether the model has one or not (so
    neither it nor the generator compile for fairseq's own language models either)."""
    model, task = build_preset(data_dir, "memsizer_lm")
    with pytest.raises(RuntimeError, match="has no attribute 'encoder'"):
        torch.jit.script(EnsembleModel([model]))


def test_the_wikitext_preset_stops_at_fairseqs_adaptive_input(data_dir):
    model, _ = build_preset(data_dir, "memsizer_lm_wiki103")
    with pytest.raises(RuntimeError, match="adaptive_input"):
        torch.jit.script(model)


@pytest.mark.parametrize("form, torch_form", [("fla_chunk", "chunk"),
                                              ("fla_recurrent", "recurrent")])
def test_flash_linear_attention_forms_compile_to_the_pytorch_forms(data_dir, form, torch_form):
    """TorchScript cannot compile fla-core's Triton kernels: the compiled model runs the PyTorch
    form that computes the same numbers (also without fla-core)."""
    model, task = build_preset(data_dir, "memsizer_lm", ["--causal-form", form])
    model = model.double()
    compiled = torch.jit.script(model)
    for layer in model.decoder.layers:
        layer.self_attn.causal_form = torch_form
    vocab = task.source_dictionary
    tokens = torch.randint(vocab.nspecial, len(vocab), (2, 12))
    with torch.no_grad():
        torch.testing.assert_close(compiled(tokens)[0], model(tokens)[0], rtol=1e-9, atol=1e-9)
    assert_compiled_decoding_equals_eager(model, tokens, 3, torch.tensor([1, 1]), -1,
                                          torch.tensor([0, 1]))
