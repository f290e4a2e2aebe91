"""fairseq's own command-line tools, end to end, with --user-dir: the model must learn."""
import os

import pytest

from memsizer_fairseq import pipeline
from memsizer_fairseq.toy_data import write_toy_translation

MODEL = [
    "--arch", "memsizer_transformer_tiny", "--encoder-embed-dim", "64",
    "--decoder-embed-dim", "64", "--encoder-ffn-embed-dim", "128",
    "--decoder-ffn-embed-dim", "128", "--share-all-embeddings",
]
TRAIN = [
    "--optimizer", "adam", "--adam-betas", "(0.9, 0.98)", "--lr", "3e-3",
    "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "60",
    "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1",
    "--dropout", "0.1", "--max-tokens", "2048", "--seed", "3", "--cpu", "--num-workers", "0",
    "--no-epoch-checkpoints", "--log-format", "simple", "--log-interval", "50",
]
BLEU_FLOOR = 40.0


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    prefixes = write_toy_translation(
        str(root / "raw"), {"train": 4000, "valid": 100, "test": 100}, seed=5
    )
    data = str(root / "bin")
    pipeline.preprocess(data, prefixes["train"], prefixes["valid"], prefixes["test"])
    save_dir = str(root / "ckpt")
    pipeline.run_fairseq(
        "train",
        [data, "--user-dir", pipeline.USER_DIR, *MODEL, *TRAIN, "--max-update", "350",
         "--save-dir", save_dir],
        str(root / "train.log"),
    )
    return data, save_dir, root


def test_generate_beam4_learns_and_reloads_checkpoint(trained):
    data, save_dir, _ = trained
    result = pipeline.generate(data, os.path.join(save_dir, "checkpoint_best.pt"), beam=4,
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
    args = [data, "--user-dir", pipeline.USER_DIR, "--path",
            os.path.join(save_dir, "checkpoint_best.pt"), "--beam", "4", "--cpu",
            "--batch-size", "32", *extra]
    output = pipeline.run_fairseq("generate", args)
    assert expect in output
    hypotheses = [line for line in output.splitlines() if line.startswith("H-")]
    nbest = int(extra[extra.index("--nbest") + 1]) if "--nbest" in extra else 1
    assert len(hypotheses) == 100 * nbest


def test_interactive_translates_stdin(trained):
    data, save_dir, root = trained
    source = open(str(root / "raw" / "test.src")).read().splitlines()[:3]
    output = pipeline.run_fairseq(
        "interactive",
        [data, "--user-dir", pipeline.USER_DIR, "--path",
         os.path.join(save_dir, "checkpoint_best.pt"), "--beam", "4", "--cpu",
         "-s", "src", "-t", "tgt"],
        stdin="\n".join(source) + "\n",
    )
    hypotheses = [line.split("\t")[2] for line in output.splitlines() if line.startswith("H-")]
    assert len(hypotheses) == 3 and all(hypotheses)


def test_validate_reports_a_low_loss(trained):
    data, save_dir, _ = trained
    output = pipeline.run_fairseq(
        "validate",
        [data, "--user-dir", pipeline.USER_DIR, "--path",
         os.path.join(save_dir, "checkpoint_best.pt"), "--cpu", "--task", "translation",
         "--criterion", "label_smoothed_cross_entropy", "--max-tokens", "4096"],
    )
    nll = float(output.split("| nll_loss ")[1].split()[0])
    assert nll < 1.5, output[-1000:]


def test_training_resumes_from_its_last_checkpoint(trained):
    data, save_dir, root = trained
    output = pipeline.run_fairseq(
        "train",
        [data, "--user-dir", pipeline.USER_DIR, *MODEL, *TRAIN, "--max-update", "360",
         "--save-dir", save_dir],
        str(root / "resume.log"),
    )
    assert "Loaded checkpoint" in output and "num_updates 360" in output.replace("=", " ")
