"""fairseq's generation options with Memsizer checkpoints: each works (checked for what it
promises) or is refused by name. The README's matrix lists the same rows.

fairseq-generate and fairseq-interactive run in this process (the same ``main`` as the
commands) on a fifth of the toy test set, so that each row takes about a second."""
import os
import re

import pytest

from fairseq_helpers import run_in_process
from memsizer_fairseq import compat
from memsizer_fairseq.models.lm import MemsizerLanguageModel
from memsizer_fairseq.models.transformer import MemsizerTransformerModel
from memsizer_fairseq.tools.toolkit.fairseq_cli import USER_DIR

SHARD = ["--num-shards", "5", "--shard-id", "0"]  # a fifth of the toy test set's batches


def _fields(output, tag):
    """``TAG-i`` lines: id -> the last tab-separated field (the text), in order of appearance
    (n-best lists keep every entry)."""
    found = {}
    for line in output.splitlines():
        match = re.match(rf"{tag}-(\d+)\t", line)
        if match:
            found.setdefault(int(match.group(1)), []).append(line.split("\t")[-1].split())
    return found


def _generate(checkpoints, *flags, path=None):
    path = path or checkpoints["memsizer"]
    return run_in_process("generate", [
        checkpoints["data"], "--user-dir", USER_DIR, "--path", path, "--beam", "4", "--cpu",
        "--batch-size", "8", *SHARD, *flags])


def _no_repeated_bigram(words):
    bigrams = list(zip(words, words[1:]))
    return len(bigrams) == len(set(bigrams))


# row -> (flags, check(sources, targets, hypotheses)); hypotheses: id -> list of n-best word lists
ROWS = {
    "sampling, --temperature": (["--sampling", "--temperature", "0.7", "--beam", "2",
                                 "--nbest", "2", "--seed", "1"],  # sampling: nbest = beam
                                lambda s, t, h: all(len(v) == 2 for v in h.values())),
    "sampling, --sampling-topk": (["--sampling", "--sampling-topk", "5", "--beam", "1",
                                   "--seed", "1"], None),
    "sampling, --sampling-topp": (["--sampling", "--sampling-topp", "0.9", "--beam", "2",
                                   "--nbest", "2", "--seed", "1"], None),
    "--diverse-beam-groups": (["--diverse-beam-groups", "2"], None),
    "--diversity-rate": (["--diversity-rate", "0.5", "--nbest", "4"],
                         lambda s, t, h: all(len(v) == 4 for v in h.values())),
    "--nbest": (["--nbest", "3"], lambda s, t, h: all(len(v) == 3 for v in h.values())),
    "--prefix-size": (["--prefix-size", "2"],
                      lambda s, t, h: all(v[0][:2] == t[i][0][:2] for i, v in h.items())),
    # as many words as source tokens (its end of sentence included)
    "--match-source-len": (["--match-source-len"],
                           lambda s, t, h: all(len(v[0]) == len(s[i][0]) + 1
                                               for i, v in h.items())),
    "--no-repeat-ngram-size": (["--no-repeat-ngram-size", "2"],
                               lambda s, t, h: all(_no_repeated_bigram(v[0]) for v in h.values())),
    "--retain-dropout": (["--retain-dropout"], None),
    "--score-reference": (["--score-reference"],
                          lambda s, t, h: all(v[0] == t[i][0] for i, v in h.items())),
    "--lenpen, --unkpen, --min-len": (["--lenpen", "0.6", "--unkpen", "1", "--min-len", "2"],
                                      lambda s, t, h: all(len(v[0]) >= 2 for v in h.values())),
    "--model-overrides with encoder/decoder_layers_to_keep": (
        ["--model-overrides", "{'encoder_layers_to_keep': '0', 'decoder_layers_to_keep': '1'}"],
        None),
}


# rows that need a fairseq fix turned on (MEMSIZER_FAIRSEQ_FIXES): fairseq's own crashes, or
# blocks nothing
FIXES = {"--diverse-beam-groups": "diverse_beam_groups",
         "--no-repeat-ngram-size": "no_repeat_ngram"}


@pytest.mark.parametrize("row", list(ROWS))
def test_generate_option(toy_checkpoints, row):
    flags, check = ROWS[row]
    with compat.fixes_installed(FIXES.get(row, "none")):
        output = _generate(toy_checkpoints, *flags)
    sources, targets, hypotheses = (_fields(output, tag) for tag in "STH")
    assert len(hypotheses) == len(sources) > 0, output[-1500:]
    if check is not None:
        assert check(sources, targets, hypotheses), output[-1500:]


def test_batching_by_tokens_or_sentences_gives_the_same_translations(toy_checkpoints):
    with compat.fixes_installed("keep_last_batch"):  # every sentence, whatever the batches
        by_sentences = _fields(_generate(toy_checkpoints, "--batch-size", "3"), "H")
        by_tokens = _fields(_generate(toy_checkpoints, "--max-tokens", "40"), "H")
        assert by_sentences == by_tokens == _fields(_generate(toy_checkpoints), "H")


@pytest.mark.parametrize("other", ["memsizer", "transformer"])
def test_ensembles_of_memsizer_and_transformer_checkpoints(toy_checkpoints, other):
    path = f"{toy_checkpoints['memsizer']}:{toy_checkpoints[other]}"
    output = _generate(toy_checkpoints, path=path)
    hypotheses = _fields(output, "H")
    assert len(hypotheses) == len(_fields(output, "S")) > 0
    if other == "memsizer":  # an ensemble of one model twice is that model
        assert hypotheses == _fields(_generate(toy_checkpoints), "H")


def test_shallow_fusion_with_a_memsizer_lm(toy_checkpoints):
    output = _generate(toy_checkpoints, "--lm-path", toy_checkpoints["lm"], "--lm-weight", "0.3")
    assert len(_fields(output, "H")) == len(_fields(output, "S")) > 0


def test_interactive_with_lexical_constraints(toy_checkpoints):
    raw = open(os.path.join(toy_checkpoints["root"], "raw", "test.src")).read().splitlines()[:4]
    wanted = open(os.path.join(toy_checkpoints["root"], "raw", "test.tgt")).read().split()[:1]
    lines = "".join(f"{source}\t{wanted[0]}\n" for source in raw)
    output = run_in_process("interactive", [
        toy_checkpoints["data"], "--user-dir", USER_DIR, "--path", toy_checkpoints["memsizer"],
        "--beam", "4", "--cpu", "-s", "src", "-t", "tgt", "--constraints"], stdin=lines)
    hypotheses = _fields(output, "H")
    assert len(hypotheses) == 4 and all(wanted[0] in v[0] for v in hypotheses.values())


def test_hub_interface_translation_model(toy_checkpoints):
    memsizer = toy_checkpoints["memsizer"]
    hub = MemsizerTransformerModel.from_pretrained(
        os.path.dirname(memsizer), checkpoint_file=os.path.basename(memsizer),
        data_name_or_path=toy_checkpoints["data"], user_dir=USER_DIR)
    source = open(os.path.join(toy_checkpoints["root"], "raw", "test.src")).readline().strip()
    target = open(os.path.join(toy_checkpoints["root"], "raw", "test.tgt")).readline().strip()
    assert hub.translate(source, beam=4) == target == hub.sample(source, beam=2)
    assert len(hub.translate([source, source], beam=2)) == 2
    # hub.generate with --score-reference style scoring of a given hypothesis
    scored = hub.generate([hub.encode(source)], beam=1, score_reference=False)[0][0]
    assert scored["positional_scores"].numel() == len(scored["tokens"])


def test_hub_interface_language_model(toy_checkpoints):
    lm = toy_checkpoints["lm"]
    hub = MemsizerLanguageModel.from_pretrained(
        os.path.dirname(lm), checkpoint_file=os.path.basename(lm),
        data_name_or_path=os.path.join(toy_checkpoints["root"], "lm-bin"), user_dir=USER_DIR)
    words = open(os.path.join(toy_checkpoints["root"], "raw", "test.tgt")).readline().split()
    prompt = " ".join(words[:2])
    sampled = hub.sample(prompt, beam=1, sampling=True, sampling_topk=5, max_len_b=8, seed=1)
    assert sampled.startswith(prompt) and len(sampled.split()) > 2
    score = hub.score(" ".join(words))
    assert score["positional_scores"].numel() == len(words)
    assert bool((score["positional_scores"] <= 0).all())
