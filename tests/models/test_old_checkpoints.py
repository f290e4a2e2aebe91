"""Checkpoints saved before the redesign of the plugin (tests/fixtures/pre_redesign, made with
the code of that time) still load and give the same outputs: fairseq-generate's beam search
hypotheses and scores, and the decoder's log-probabilities."""
import os

import torch
from fairseq import checkpoint_utils

from memsizer_fairseq.tools.toolkit.fairseq_cli import USER_DIR, run_fairseq

FIXTURE = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "pre_redesign")


def _hypotheses(text):
    """{sentence id: (score, hypothesis)} from fairseq-generate's H- lines, and the P- lines."""
    hypotheses, positional = {}, {}
    for line in text.splitlines():
        fields = line.split("\t")
        if line.startswith("H-"):
            hypotheses[fields[0]] = (float(fields[1]), fields[2] if len(fields) > 2 else "")
        elif line.startswith("P-"):
            positional[fields[0]] = [float(v) for v in fields[1].split()]
    return hypotheses, positional


def test_the_translation_checkpoint_generates_what_it_generated():
    # made with the last batch kept (the fix keep_last_batch, then on by default)
    output = run_fairseq("generate", [
        FIXTURE, "--user-dir", USER_DIR, "--path", os.path.join(FIXTURE, "memsizer_transformer.pt"),
        "--beam", "3", "--cpu", "--batch-size", "5", "--gen-subset", "test"],
        env={"MEMSIZER_FAIRSEQ_FIXES": "default,keep_last_batch"})
    got, got_scores = _hypotheses(output)
    with open(os.path.join(FIXTURE, "memsizer_transformer.generate.txt")) as f:
        want, want_scores = _hypotheses(f.read())
    assert len(want) == 12 and set(got) == set(want)
    for key, (score, text) in want.items():
        assert got[key][1] == text, key
        assert abs(got[key][0] - score) < 1e-4, key
        torch.testing.assert_close(torch.tensor(got_scores["P" + key[1:]]),
                                   torch.tensor(want_scores["P" + key[1:]]), rtol=0, atol=2e-4)


def test_both_checkpoints_give_the_same_log_probabilities():
    expected = torch.load(os.path.join(FIXTURE, "expected.pt"), weights_only=True)
    tokens = expected["tokens"]
    for name, want in expected["log_probs"].items():
        models, _, _ = checkpoint_utils.load_model_ensemble_and_task(
            [os.path.join(FIXTURE, f"{name}.pt")], arg_overrides={"data": FIXTURE})
        model = models[0].eval()
        with torch.no_grad():
            if name == "memsizer_lm":
                out, _ = model(tokens)
            else:
                out, _ = model(tokens, torch.full((3,), 9), tokens[:, :7])
            got = model.get_normalized_probs((out, None), log_probs=True)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5, msg=name)
