"""Loading the plugin keeps fairseq's own TorchScript export working, whatever fixes
``MEMSIZER_FAIRSEQ_FIXES`` installs: the checks of fairseq's tests/test_export.py and of
TestJitSequenceGenerator / TestExportSearch (tests/test_sequence_generator.py), each in a fresh
process with the plugin imported. And the diverse beam search fix compiles as fairseq's method
does and keeps its behaviour there."""
import json
import os
import subprocess
import sys

import pytest
import torch
from fairseq import search
from fairseq.data import Dictionary

from memsizer_fairseq.tools.toolkit.fairseq_cli import REPO_ROOT

FAIRSEQ_EXPORT_CHECKS = r"""
import argparse, io, json, torch
import memsizer_fairseq
from memsizer_fairseq import compat
from fairseq import search
from fairseq.data.dictionary import Dictionary
from fairseq.models.transformer import TransformerModel
from fairseq.modules import multihead_attention, sinusoidal_positional_embedding
from fairseq.sequence_generator import EnsembleModel, SequenceGenerator
from fairseq.tasks.fairseq_task import LegacyFairseqTask


class DummyTask(LegacyFairseqTask):
    def __init__(self, args):
        super().__init__(args)
        self.dictionary = Dictionary()
        for i in range(100):
            self.dictionary.add_symbol(str(i), n=1000)
        self.src_dict = self.tgt_dict = self.dictionary

    @property
    def source_dictionary(self):
        return self.src_dict

    @property
    def target_dictionary(self):
        return self.dictionary


def task_and_parser():
    parser = argparse.ArgumentParser(argument_default=argparse.SUPPRESS)
    DummyTask.add_args(parser)
    return DummyTask.setup_task(parser.parse_args([])), parser


def transformer(**changes):
    task, parser = task_and_parser()
    TransformerModel.add_args(parser)
    args = parser.parse_args([])
    for name, value in changes.items():
        setattr(args, name, value)
    return TransformerModel.build_model(args, task), task


def save_and_load(scripted):
    buffer = io.BytesIO()
    torch.jit.save(scripted, buffer)
    buffer.seek(0)
    return torch.jit.load(buffer)


def incremental_state_multihead_attention():
    first = torch.jit.script(multihead_attention.MultiheadAttention(embed_dim=8, num_heads=2))
    second = torch.jit.script(multihead_attention.MultiheadAttention(embed_dim=8, num_heads=2))
    state = first.set_incremental_state({}, "key", {"a": torch.tensor([1])})
    state = second.set_incremental_state(state, "key", {"a": torch.tensor([2])})
    assert first.get_incremental_state(state, "key")["a"] == 1
    assert second.get_incremental_state(state, "key")["a"] == 2


def generator():
    model, task = transformer(encoder_layers=2, decoder_layers=1)
    save_and_load(torch.jit.script(SequenceGenerator(
        [model], task.tgt_dict, beam_size=2, no_repeat_ngram_size=2, max_len_b=10)))


CHECKS = {
    "export_multihead_attention": lambda: save_and_load(torch.jit.script(
        multihead_attention.MultiheadAttention(embed_dim=8, num_heads=2))),
    "incremental_state_multihead_attention": incremental_state_multihead_attention,
    "positional_embedding": lambda: save_and_load(torch.jit.script(
        sinusoidal_positional_embedding.SinusoidalPositionalEmbedding(
            embedding_dim=8, padding_idx=1))),
    "export_transformer": lambda: save_and_load(torch.jit.script(transformer()[0])),
    "export_transformer_no_token_pos_emb": lambda: save_and_load(torch.jit.script(
        transformer(no_token_positional_embeddings=True)[0])),
    "ensemble_sequence_generator": generator,
    "export_ensemble_model": lambda: torch.jit.script(EnsembleModel(
        [transformer(encoder_layers=2, decoder_layers=1)[0]])),
    "export_diverse_bs": lambda: torch.jit.script(search.DiverseBeamSearch(
        task_and_parser()[0].tgt_dict, num_groups=2, diversity_strength=0.0)),
    "export_sampling": lambda: torch.jit.script(search.Sampling(
        task_and_parser()[0].tgt_dict, sampling_topp=0.2)),
    "export_diverse_siblings_search": lambda: torch.jit.script(search.DiverseSiblingsSearch(
        task_and_parser()[0].tgt_dict, diversity_rate=0.5)),
}
results = {}
for name, check in CHECKS.items():
    try:
        check()
        results[name] = "ok"
    except Exception as error:
        results[name] = f"{type(error).__name__}: {str(error).strip().splitlines()[0]}"
print(json.dumps({"fixes": list(compat.installed_fixes()), "results": results}))
"""


@pytest.mark.parametrize("fixes", ["all", "none", None], ids=["all", "none", "unset"])
def test_fairseqs_export_checks_pass_with_the_plugin_loaded(fixes):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=REPO_ROOT)
    env.pop("MEMSIZER_FAIRSEQ_FIXES", None)
    if fixes is not None:
        env["MEMSIZER_FAIRSEQ_FIXES"] = fixes
    done = subprocess.run([sys.executable, "-c", FAIRSEQ_EXPORT_CHECKS], capture_output=True,
                          text=True, env=env, cwd=REPO_ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    if fixes == "all":
        assert "diverse_beam_groups" in report["fixes"]
    if fixes == "none":
        assert report["fixes"] == []
    failed = {name: result for name, result in report["results"].items() if result != "ok"}
    assert not failed and len(report["results"]) == 10, failed


def _dictionary():
    dictionary = Dictionary()
    for i in range(20):
        dictionary.add_symbol(f"w{i}")
    return dictionary


def _diverse_steps(strategy, ids):
    """Three steps of a diverse beam search over 3 sentences of 4 beams (sentence ids ``ids``),
    the sentence in the middle finished after the first: the scores, tokens and beams of each."""
    generator = torch.Generator().manual_seed(0)
    found = []
    for step, rows in enumerate(([0, 1, 2], [0, 2], [0, 2])):
        rows = torch.tensor(rows)
        lprobs = torch.randn(len(rows), 4, 24, generator=generator).log_softmax(-1)
        scores = torch.randn(len(rows), 4, step, generator=generator)
        found.append(strategy.step(step, lprobs, scores, None, ids[rows]))
    return found


def test_diverse_beam_search_reads_its_overlaps_by_batch_position(monkeypatch):
    """Sentence ids beyond the batch (a later batch of fairseq-generate) read the overlaps of
    their rows, compiled as in Python: the same steps as ids that are the rows themselves. (The
    fix installed for this test only, whatever this process's MEMSIZER_FAIRSEQ_FIXES.)"""
    from memsizer_fairseq.compat import fixes

    beam_search = search.DiverseBeamSearch
    monkeypatch.setattr(beam_search, "__init__", beam_search.__init__)
    monkeypatch.setattr(beam_search, "step", beam_search.step)
    fixes.diverse_beam_search_by_position()
    results = []
    for ids, compiled in ((torch.tensor([0, 1, 2]), False), (torch.tensor([90, 14, 3]), False),
                          (torch.tensor([90, 14, 3]), True)):
        strategy = search.DiverseBeamSearch(_dictionary(), num_groups=2, diversity_strength=0.5)
        if compiled:
            strategy = torch.jit.script(strategy)
        results.append(_diverse_steps(strategy, ids))
    for steps in results[1:]:
        for got, want in zip(steps, results[0]):
            for g, w in zip(got, want):
                assert torch.equal(g, w)
