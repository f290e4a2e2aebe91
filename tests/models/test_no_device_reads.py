"""Beam search never waits for the device: the per-step paths of every preset's decoder (a
decoding step, ``reorder_incremental_state``, ``reorder_encoder_out``) run on tensors of PyTorch's
``meta`` device, which hold shapes but no values. Any read of a value on the host (``.item()``,
``int()`` or ``bool()`` of a tensor, ``torch.equal``, ``.tolist()``, ``nonzero``, a shape that
depends on values) raises there; fairseq's own Transformer decoder does, as the last test shows.
"""
import pytest
import torch
from fairseq.sequence_generator import EnsembleModel

from fairseq_helpers import build_translation_model
from tiny_presets import ARCHS, build_preset, task_of, write_data_dir

# fairseq's AdaptiveInput (the Wikitext-103 preset's embedding) picks the tokens of each
# frequency band by a boolean mask at every step: a shape that depends on the tokens
PRESETS = [arch for arch in ARCHS if "wiki103" not in arch]
SENTENCES, BEAM = 3, 2


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_data_dir(str(tmp_path_factory.mktemp("dicts")))


def meta(tensor_or_list):
    return [t.to("meta") for t in tensor_or_list]


def beam_search_steps(model, task):
    """Three decoding steps of fairseq's ensemble as SequenceGenerator drives it (beam size
    set, sources expanded to beams, rows moved within their sentences, a sentence finished),
    every tensor and parameter on the meta device. The encoder runs once per batch, before the
    steps: on the CPU. Returns the last step's log-probabilities."""
    ensemble = EnsembleModel([model])
    ensemble.set_decoder_beam_size(BEAM)
    encoder_outs = []
    if ensemble.has_encoder():
        vocab = task.source_dictionary
        src = torch.randint(vocab.nspecial, len(vocab), (SENTENCES, 5))
        src[0, :2] = vocab.pad()
        with torch.no_grad():
            encoder_outs = ensemble.forward_encoder(
                {"src_tokens": src, "src_lengths": torch.tensor([3, 5, 5])})
        encoder_outs = [{name: meta(values) for name, values in out.items()}
                        for out in encoder_outs]
    model.to("meta")
    tokens = torch.full((SENTENCES * BEAM, 1), task.target_dictionary.eos(), device="meta")
    states = [{}]
    orders = [torch.arange(SENTENCES).repeat_interleave(BEAM),  # the expansion to beams
              torch.tensor([1, 0, 2, 2, 5, 4]),  # within each sentence's beams
              torch.tensor([0, 1, 4, 5])]  # sentence 1 finished
    with torch.no_grad():
        encoder_outs = ensemble.reorder_encoder_out(encoder_outs, orders[0].to("meta"))
        for order in orders[1:]:
            log_probs, _ = ensemble.forward_decoder(tokens, encoder_outs, states)
            order = order.to("meta")
            ensemble.reorder_incremental_state(states, order)
            encoder_outs = ensemble.reorder_encoder_out(encoder_outs, order)
            tokens = torch.cat([tokens.index_select(0, order), tokens[: len(order), :1]], dim=1)
        log_probs, _ = ensemble.forward_decoder(tokens, encoder_outs, states)
    return log_probs


@pytest.mark.parametrize("arch", PRESETS)
def test_decoding_steps_and_reorders_read_nothing_from_the_device(data_dir, arch):
    model, task = build_preset(data_dir, arch)
    log_probs = beam_search_steps(model, task)
    assert log_probs.device.type == "meta"
    assert log_probs.shape == (4, len(task.target_dictionary))
    if task_of(arch) != "language_modeling":  # one encoder output row per sentence
        attention = model.decoder.layers[0].encoder_attn
        assert attention.beam_size == BEAM


def test_fairseqs_transformer_decoder_reads_the_device_at_every_step(data_dir):
    """The check can fail: fairseq's decoder asks the device whether the tokens hold a pad."""
    transformer, task, *_ = build_translation_model(data_dir, "transformer", [
        "--encoder-embed-dim", "16", "--decoder-embed-dim", "16", "--encoder-layers", "1",
        "--decoder-layers", "1", "--encoder-attention-heads", "2",
        "--decoder-attention-heads", "2"])
    with pytest.raises(RuntimeError, match="meta"):
        beam_search_steps(transformer.eval(), task)
