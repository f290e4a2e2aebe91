"""``--task summarization`` end to end through ``--user-dir``: train with ``--eval-rouge`` and
``--best-checkpoint-metric rouge_l``, decode with ``fairseq-generate --scoring rouge``."""
import os
import re

import pytest
import torch

from memsizer_fairseq import compat
from fairseq import options, tasks
from fairseq.dataclass.utils import convert_namespace_to_omegaconf

from fairseq_helpers import generate_command
from memsizer_fairseq.tools import recipes
from memsizer_fairseq.tools.toolkit import fairseq_cli
from memsizer_fairseq.scoring.rouge import RougeF1

ROUGE_LINE = re.compile(
    r"Generate (\w+) with beam=(\d+): ROUGE-1 = ([\d.]+), ROUGE-2 = ([\d.]+), ROUGE-L = ([\d.]+)$"
)
# A constant summary scores ROUGE-L about 39 on this corpus and the lead sentence about 57
# (its validation split); the tiny model reaches about 70 in 500 updates.
ROUGE_L_FLOOR = 50.0
EVAL_ARGS = '{"beam": 2, "max_len_b": 60}'


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """The cnn_dm recipe's tiny corpus, sentencepiece and binarized data (its own steps)."""
    runner = recipes.Runner(recipes.catalog.CNN_DM, str(tmp_path_factory.mktemp("summ")), tiny=True,
                            out=open(os.devnull, "w"))
    runner.step_raw()
    runner.step_spm()
    runner.step_preprocess()
    return runner


@pytest.fixture(scope="module")
def trained(data):
    args = data.train_args() + [
        "--eval-rouge", "--eval-rouge-args", EVAL_ARGS, "--eval-rouge-remove-bpe",
        "sentencepiece", "--eval-rouge-print-samples",
        "--best-checkpoint-metric", "rouge_l", "--maximize-best-checkpoint-metric",
    ]
    assert "--task" in args and args[args.index("--task") + 1] == "summarization"
    log = fairseq_cli.run_fairseq("train", args, os.path.join(data.work_dir, "train.log"))
    return data, log


def _valid_metrics(log):
    rows = []
    for line in log.splitlines():
        if "valid on 'valid' subset" in line:
            fields = dict(re.findall(r"\| (\w+) ([\d.]+)", line))
            rows.append({k: float(v) for k, v in fields.items()})
    return rows


def test_eval_rouge_selects_the_best_checkpoint(trained):
    data, log = trained
    rows = _valid_metrics(log)
    assert len(rows) >= 2, log[-3000:]
    for i, row in enumerate(rows):
        assert {"rouge_1", "rouge_2", "rouge_l"} <= set(row), row
        if i:  # fairseq logs the best value so far from the second validation on
            assert row["best_rouge_l"] == max(r["rouge_l"] for r in rows[: i + 1])
    assert "example hypothesis:" in log and "example reference:" in log
    best = torch.load(os.path.join(data.save_dir, "checkpoint_best.pt"), map_location="cpu")
    best_value = max(r["rouge_l"] for r in rows)
    assert best["extra_state"]["val_loss"] == pytest.approx(best_value, abs=1e-6)
    best_epoch = 1 + max(range(len(rows)), key=lambda i: (rows[i]["rouge_l"], -i))
    assert best["extra_state"]["train_iterator"]["epoch"] == best_epoch
    assert best["cfg"]["task"]["_name"] == "summarization"
    assert best["cfg"]["task"]["truncate_source"] is True


def test_generate_with_rouge_scoring_learns(trained):
    data, _ = trained
    # all 100 test summaries, the last batch kept (fairseq-fixed drops it)
    with compat.fixes_installed("keep_last_batch"):
        result = generate_command(
            data.data_bin, os.path.join(data.save_dir, "checkpoint_best.pt"), beam=4,
            extra=["--task", "summarization", "--scoring", "rouge",
                   "--post-process", "sentencepiece", "--max-len-b", "60", "--cpu"],
            in_process=True)
    line = result.output.strip().splitlines()[-1]
    match = ROUGE_LINE.match(line)
    assert match, line
    rouge_l = float(match.group(5))
    assert rouge_l > ROUGE_L_FLOOR, line

    # the printed numbers are rouge-score's on the detokenized T- / D- lines
    refs = {}
    for text_line in result.output.splitlines():
        if text_line.startswith("T-"):
            ident, text = text_line.split("\t", 1)
            refs[int(ident[2:])] = text
    ids = sorted(result.hypotheses)
    assert ids == sorted(refs) and len(ids) == 100
    assert not any("\u2581" in result.hypotheses[i] for i in ids)
    means = RougeF1().corpus([refs[i] for i in ids], [result.hypotheses[i] for i in ids])
    printed = [float(match.group(g)) for g in (3, 4, 5)]
    assert printed == [round(means[t], 2) for t in ("rouge1", "rouge2", "rougeL")]


def test_eval_rouge_matches_generate_on_the_validation_set(trained):
    """The last validation ROUGE-L logged in training is fairseq-generate's on checkpoint_last."""
    data, log = trained
    last = _valid_metrics(log)[-1]
    result = generate_command(
        data.data_bin, os.path.join(data.save_dir, "checkpoint_last.pt"), beam=2,
        subset="valid", batch_size=100,
        extra=["--task", "summarization", "--scoring", "rouge", "--max-len-b", "60",
               "--post-process", "sentencepiece", "--cpu"], in_process=True)
    match = ROUGE_LINE.match(result.output.strip().splitlines()[-1])
    assert match
    assert float(match.group(5)) == pytest.approx(last["rouge_l"], abs=0.05)


def _task(data_bin, extra):
    parser = options.get_training_parser()
    args = options.parse_args_and_arch(
        parser, [data_bin, "--task", "summarization", "--arch",
                 "memsizer_transformer_summarization_tiny", *extra])
    cfg = convert_namespace_to_omegaconf(args)
    return args, tasks.setup_task(cfg.task)


def test_truncate_source_is_on_by_default(data):
    lines = open(os.path.join(data.raw_dir, "valid.source")).read().splitlines()
    args, task = _task(data.data_bin, ["--max-source-positions", "16"])
    assert args.truncate_source is True
    task.load_dataset("valid")
    dataset = task.dataset("valid")
    assert len(dataset) == len(lines)
    assert max(dataset.src_sizes) == 16
    for flag in (["--truncate-source", "false"], ["--no-truncate-source"]):
        args, task = _task(data.data_bin, ["--max-source-positions", "16", *flag])
        assert args.truncate_source is False
        task.load_dataset("valid")
        assert max(task.dataset("valid").src_sizes) > 16


def test_summarization_presets():
    import argparse

    from memsizer_fairseq.models.transformer import ARCHITECTURES

    memsizer_transformer_summarization = ARCHITECTURES["memsizer_transformer_summarization"]
    memsizer_transformer_summarization_tiny = ARCHITECTURES[
        "memsizer_transformer_summarization_tiny"]

    args = argparse.Namespace()
    memsizer_transformer_summarization(args)
    again = argparse.Namespace(**vars(args))
    memsizer_transformer_summarization(again)
    assert vars(again) == vars(args)  # idempotent
    assert (args.encoder_embed_dim, args.encoder_layers, args.decoder_layers) == (512, 6, 6)
    assert args.share_all_embeddings is True
    assert (args.causal_proj_dim, args.cross_proj_dim) == (4, 32)
    assert (args.q_init_scale, args.kv_init_scale) == (8.0, 8.0)
    assert args.decoder_use_memsizer is True and args.encoder_use_memsizer is False

    tiny = argparse.Namespace(cross_proj_dim=16, decoder_layers=3)  # flags win over presets
    memsizer_transformer_summarization_tiny(tiny)
    assert (tiny.encoder_embed_dim, tiny.cross_proj_dim, tiny.decoder_layers) == (64, 16, 3)
    default_tiny = argparse.Namespace()
    memsizer_transformer_summarization_tiny(default_tiny)
    assert default_tiny.cross_proj_dim == 8
