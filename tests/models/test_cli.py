"""fairseq's own command-line tools, end to end, with --user-dir: the model must learn. The
training, its resumption and one generation run as the commands a user types; the other
generation options run the same ``main`` in this process."""
import os
import shutil

import pytest

from memsizer_fairseq.tools.toolkit import fairseq_cli
from memsizer_fairseq.tools.benchmark.alignment import accuracy
from memsizer_fairseq.tools.toolkit.toy_data import read_alignments
from fairseq_helpers import (TOY_MODEL, TOY_TRAIN, generate_command, hard_alignments,
                             run_cli_in_process, run_in_process)
from memsizer_fairseq import compat

BLEU_FLOOR = 40.0


@pytest.fixture(autouse=True)
def every_test_sentence(monkeypatch):
    """fairseq-generate translates all 100 test sentences (fairseq-fixed drops the last batch
    that is not a multiple of --required-batch-size-multiple): the fix keep_last_batch, in the
    commands started here and in this process."""
    monkeypatch.setenv(compat.ENVIRONMENT_VARIABLE, "default,keep_last_batch")
    with compat.fixes_installed("keep_last_batch"):
        yield


def test_generate_beam4_learns_and_reloads_checkpoint(trained):
    data, save_dir, _ = trained
    result = generate_command(data, os.path.join(save_dir, "checkpoint_best.pt"), beam=4,
                               extra=["--cpu"])
    assert result.sentences == 100
    assert result.bleu is not None and result.bleu >= BLEU_FLOOR, result.output[-2000:]


@pytest.mark.parametrize(
    "extra, expect",
    [
        (["--nbest", "2", "--lenpen", "0.6"], "BLEU4"),
        (["--scoring", "sacrebleu"], "BLEU ="),
        (["--sampling", "--sampling-topk", "5", "--beam", "1", "--seed", "1"], "BLEU4"),
        (["--sampling", "--sampling-topp", "0.9", "--beam", "2", "--nbest", "2"], "BLEU4"),
    ],
)
def test_generate_options(trained, extra, expect):
    data, save_dir, _ = trained
    args = [data, "--user-dir", fairseq_cli.USER_DIR, "--path",
            os.path.join(save_dir, "checkpoint_best.pt"), "--beam", "4", "--cpu",
            "--batch-size", "32", *extra]
    output = run_in_process("generate", args, logs=True)
    assert expect in output
    hypotheses = [line for line in output.splitlines() if line.startswith("H-")]
    nbest = int(extra[extra.index("--nbest") + 1]) if "--nbest" in extra else 1
    assert len(hypotheses) == 100 * nbest


def test_interactive_translates_stdin(trained):
    data, save_dir, root = trained
    source = open(str(root / "raw" / "test.src")).read().splitlines()[:3]
    output = run_in_process(
        "interactive",
        [data, "--user-dir", fairseq_cli.USER_DIR, "--path",
         os.path.join(save_dir, "checkpoint_best.pt"), "--beam", "4", "--cpu",
         "-s", "src", "-t", "tgt"],
        stdin="\n".join(source) + "\n",
    )
    hypotheses = [line.split("\t")[2] for line in output.splitlines() if line.startswith("H-")]
    assert len(hypotheses) == 3 and all(hypotheses)


def test_validate_reports_a_low_loss(trained):
    data, save_dir, _ = trained
    output = run_cli_in_process(
        "validate",
        [data, "--user-dir", fairseq_cli.USER_DIR, "--path",
         os.path.join(save_dir, "checkpoint_best.pt"), "--cpu", "--task", "translation",
         "--criterion", "label_smoothed_cross_entropy", "--max-tokens", "4096"], logs=True,
    )
    nll = float(output.split("| nll_loss ")[1].split()[0])
    assert nll < 1.5, output[-1000:]


def test_training_resumes_from_its_last_checkpoint(trained, tmp_path):
    data, save_dir, _ = trained
    resumed = shutil.copytree(save_dir, tmp_path / "ckpt")  # the shared model stays as it is
    output = fairseq_cli.run_fairseq(
        "train",
        [data, "--user-dir", fairseq_cli.USER_DIR, *TOY_MODEL, *TOY_TRAIN, "--max-update", "260",
         "--save-dir", resumed],
        str(tmp_path / "resume.log"),
    )
    assert "Loaded checkpoint" in output and "num_updates 260" in output.replace("=", " ")


def _generate(data, save_dir, *extra):
    return run_in_process("generate", [
        data, "--user-dir", fairseq_cli.USER_DIR, "--path",
        os.path.join(save_dir, "checkpoint_best.pt"), "--beam", "4", "--cpu", "--batch-size",
        "32", *extra])


def _lines(output, tag):
    return {int(line.split("\t")[0][2:]): line.split("\t")[1:] for line in output.splitlines()
            if line.startswith(tag + "-")}


@pytest.mark.parametrize("kind, scoring", [("hard", []), ("soft", []),
                                           ("hard", ["--score-reference"])])
def test_generate_prints_alignments(trained, kind, scoring):
    """Beam search (incremental) and --score-reference (full pass) both print one A- line per
    hypothesis; a hard alignment names every target word once, a soft one has a row of source
    weights per target token (end of sentence included). (fairseq's scorer always extracts
    hard alignments: --score-reference with soft ones fails for every model.)"""
    data, save_dir, _ = trained
    output = _generate(data, save_dir, "--print-alignment", kind, *scoring)
    sources, hypotheses, alignments = _lines(output, "S"), _lines(output, "H"), _lines(output, "A")
    assert len(alignments) == len(hypotheses) == 100
    for i, (text,) in alignments.items():
        words, source = hypotheses[i][1].split(), sources[i][0].split()
        if kind == "hard":
            pairs = [tuple(map(int, pair.split("-"))) for pair in text.split()]
            assert sorted(t for _, t in pairs) == list(range(len(words)))
            assert all(0 <= s < len(source) for s, _ in pairs)
        else:
            rows = [row.split(",") for row in text.split()]
            assert len(rows) == len(words) + 1
            assert all(len(row) == len(source) + 1 for row in rows)


def test_hard_alignment_finds_the_source_words_of_the_toy_task(trained):
    """The toy task translates word by word (adjectives move after their noun), so the aligned
    source word of most target words is known; the trained model's weights must find it far
    above chance."""
    data, save_dir, root = trained
    output = _generate(data, save_dir, "--print-alignment", "hard", "--score-reference")
    truth = read_alignments(str(root / "raw" / "test.align"))
    assert accuracy(hard_alignments(output), truth) > 0.8


def test_replace_unk_copies_the_aligned_source_word(trained, tmp_path):
    """Raw-text test data whose last source word is unknown: with a bonus for <unk>, the
    hypotheses contain <unk>, which --replace-unk replaces by the source word aligned to it."""
    data, save_dir, root = trained
    raw = tmp_path / "raw-bin"
    raw.mkdir()
    for lang in ("src", "tgt"):
        (raw / f"dict.{lang}.txt").write_text(open(os.path.join(data, f"dict.{lang}.txt")).read())
    sources = open(str(root / "raw" / "test.src")).read().splitlines()[:16]
    (raw / "test.src-tgt.src").write_text("".join(s.rsplit(" ", 1)[0] + " zzqx\n"
                                                 for s in sources))
    (raw / "test.src-tgt.tgt").write_text(
        "".join(open(str(root / "raw" / "test.tgt")).read().splitlines(True)[:16]))
    flags = ["--dataset-impl", "raw", "-s", "src", "-t", "tgt", "--unkpen", "-5"]
    plain = _generate(str(raw), save_dir, *flags)
    assert "<unk>" in " ".join(h[1] for h in _lines(plain, "H").values())
    replaced = _generate(str(raw), save_dir, *flags, "--replace-unk", "",
                         "--print-alignment", "hard")
    hypotheses = " ".join(h[1] for h in _lines(replaced, "H").values())
    assert "<unk>" not in hypotheses and "zzqx" in hypotheses
    with pytest.raises(ValueError, match="add --print-alignment hard"):
        _generate(str(raw), save_dir, *flags, "--replace-unk", "")
