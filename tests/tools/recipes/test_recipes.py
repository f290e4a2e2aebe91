"""The recipes: each ``--tiny`` mode end to end, the real-data commands, the hydra configs."""
import contextlib
import io
import os
import re
import subprocess
import sys

import pytest
import torch

import memsizer_fairseq  # noqa: F401
from fairseq import options

from memsizer_fairseq.tools.toolkit.fairseq_cli import REPO_ROOT as ROOT
from memsizer_fairseq.tools import recipes
from memsizer_fairseq.tools.toolkit import fairseq_cli
from memsizer_fairseq.tools.recipes import RECIPES, TASK_RECIPES, Runner

BLEU = re.compile(r"^test: sacreBLEU = ([\d.]+)$")
ROUGE = re.compile(r"^test: ROUGE-1 = ([\d.]+), ROUGE-2 = ([\d.]+), ROUGE-L = ([\d.]+)$")
PPL = re.compile(r"^test: test perplexity = ([\d.]+)$")
_TINY_RUNS = {}


def run_tiny(name, tmp_path_factory):
    """``recipes.main(["--task", T, NAME, "--tiny", ...])``: what ``examples/T/run.sh NAME
    --tiny`` runs once the virtualenv exists, in this process (the fairseq tools still run as
    subprocesses); cached per test session."""
    if name not in _TINY_RUNS:
        recipe = RECIPES[name]
        work = str(tmp_path_factory.mktemp(name))
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            result = recipes.main(["--task", recipe.task.name, name, "--tiny", "--work-dir", work])
        assert result.tiny and result.work_dir == work
        _TINY_RUNS[name] = (work, out.getvalue())
    return _TINY_RUNS[name]


@pytest.mark.parametrize("name", list(RECIPES))
def test_tiny_recipe_runs_end_to_end_and_learns(name, tmp_path_factory):
    work, output = run_tiny(name, tmp_path_factory)
    lines = output.strip().splitlines()
    assert re.match(rf"^== {name} tiny: done in \d+s$", lines[-1]), lines[-3:]
    result = lines[-2]
    for step in ("fairseq-preprocess", "fairseq-train", RECIPES[name].task.evaluator.tool):
        assert any(line.startswith("$ ") and step in line for line in lines), step
    task = RECIPES[name].task.name
    if task == "translation":
        match = BLEU.match(result)
        assert match and float(match.group(1)) > 50.0, result
    elif task == "summarization":
        # a constant summary scores ROUGE-L ~39 (cnn_dm) / ~38 (xsum) on the synthetic corpora
        match = ROUGE.match(result)
        assert match and float(match.group(3)) > 50.0, result
    else:
        # a unigram model of the toy text has perplexity about 65
        match = PPL.match(result)
        assert match and float(match.group(1)) < 10.0, result
    if RECIPES[name].spm_vocab is not None:
        assert os.path.exists(os.path.join(work, "spm", "spm.model"))
        pieces = os.path.join(work, "spm", "train." + RECIPES[name].layout.sides[0])
        assert "\u2581" in open(pieces).read()
    assert os.path.exists(os.path.join(work, "checkpoints", "checkpoint_best.pt"))


def test_every_task_folder_has_a_runnable_script_and_readme():
    assert set(TASK_RECIPES) == {"translation", "summarization", "language_modeling"}
    for task in TASK_RECIPES:
        folder = os.path.join(ROOT, "examples", task)
        script = os.path.join(folder, "run.sh")
        assert os.access(script, os.X_OK), script
        usage = subprocess.run(["bash", script, "--help"], check=True, capture_output=True,
                               text=True, env=dict(os.environ, OMP_NUM_THREADS="1")).stdout
        assert f"usage: examples/{task}/run.sh" in usage  # the task's recipes, through .venv
        readme = open(os.path.join(folder, "README.md")).read()
        for name in TASK_RECIPES[task]:
            assert name in readme and "--tiny" in readme


def _parse(parser, argv):
    return options.parse_args_and_arch(parser, argv)


@pytest.mark.parametrize("name", list(RECIPES))
def test_real_data_commands_parse_with_fairseq(name, tmp_path):
    runner = Runner(RECIPES[name], str(tmp_path / "w"), raw_dir=str(tmp_path / "raw"),
                    dry_run=True, out=open(os.devnull, "w"))
    train = _parse(options.get_training_parser(), runner.train_args())
    assert train.user_dir == fairseq_cli.USER_DIR
    assert train.save_dir == runner.save_dir
    assert not hasattr(train, "cpu") or not train.cpu
    if RECIPES[name].task.evaluator.tool == "generate":
        evaluate = _parse(options.get_generation_parser(), runner.evaluate_args())
        assert evaluate.post_process == "sentencepiece"
    else:
        evaluate = _parse(options.get_eval_lm_parser(), runner.evaluate_args())
    assert evaluate.path.endswith("checkpoint_best.pt") and evaluate.gen_subset == "test"
    assert runner.run().result_line == "(dry run)"


def test_the_papers_settings():
    wmt = _parse(options.get_training_parser(), Runner(
        recipes.catalog.WMT16_EN_DE, "/tmp/x", raw_dir="/tmp/raw", dry_run=True).train_args())
    assert wmt.arch == "memsizer_vaswani_wmt_en_de_big" and wmt.task == "translation"
    assert (wmt.causal_proj_dim, wmt.cross_proj_dim, wmt.q_init_scale, wmt.kv_init_scale) == (
        4, 32, 8.0, 8.0)
    assert wmt.decoder_use_memsizer and not wmt.encoder_use_memsizer
    assert (wmt.adam_betas, wmt.lr, wmt.lr_scheduler, wmt.warmup_updates) == (
        "(0.9, 0.98)", [5e-4], "inverse_sqrt", 4000)
    assert (wmt.dropout, wmt.label_smoothing, wmt.max_tokens, wmt.update_freq) == (
        0.3, 0.1, 3584, [16])
    assert wmt.fp16 and wmt.max_update == 90000
    gen = recipes.catalog.WMT16_EN_DE.evaluate
    assert (gen["--beam"], gen["--lenpen"]) == (4, 0.6)

    lm = _parse(options.get_training_parser(), Runner(
        recipes.catalog.WIKITEXT103, "/tmp/x", raw_dir="/tmp/raw", dry_run=True).train_args())
    assert lm.arch == "memsizer_lm_wiki103" and lm.tokens_per_sample == 512
    assert (lm.decoder_layers, lm.decoder_layerdrop) == (32, 0.2)
    assert (lm.causal_proj_dim, lm.q_init_scale, lm.kv_init_scale) == (32, 32.0, 1.0)
    # the authors' command: dropout 0.2, NAG with the cosine schedule, fp16 from scale 8, seed 8
    assert (lm.dropout, lm.optimizer, lm.lr_scheduler, lm.seed) == (0.2, "nag", "cosine", 8)
    assert lm.fp16 and lm.fp16_init_scale == 8


def test_missing_raw_files_name_the_expected_layout(tmp_path):
    runner = Runner(recipes.catalog.CNN_DM, str(tmp_path / "w"), raw_dir=str(tmp_path),
                    out=open(os.devnull, "w"))
    with pytest.raises(FileNotFoundError, match="train.source"):
        runner.run()


def test_command_line_requires_raw_dir_or_tiny(capsys):
    with pytest.raises(SystemExit):
        recipes.main(["--task", "summarization", "cnn_dm"])
    assert "--raw-dir" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # a recipe of another task
        recipes.main(["--task", "summarization", "wmt16_en_de", "--tiny"])


@pytest.mark.parametrize("name", list(RECIPES))
def test_hydra_configs_are_the_recipes(name):
    path = os.path.join(recipes.CONFIG_DIR, f"{name}.yaml")
    assert open(path).read() == recipes.hydra_yaml(RECIPES[name]), (
        f"{path} is stale: python -m memsizer_fairseq.tools.recipes --write-configs")


def test_hydra_train_builds_the_same_model(tmp_path, tmp_path_factory):
    """fairseq-hydra-train with the tiny cnn_dm config trains the model the argparse run
    trained (same architecture, same parameters' names and shapes)."""
    work, _ = run_tiny("cnn_dm", tmp_path_factory)
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    (config_dir / "tiny_cnn_dm.yaml").write_text(
        recipes.hydra_yaml(recipes.catalog.CNN_DM, tiny=True))
    save_dir = tmp_path / "checkpoints"
    proc = subprocess.run(
        [sys.executable, "-m", "fairseq_cli.hydra_train", "--config-dir", str(config_dir),
         "--config-name", "tiny_cnn_dm", f"task.data={os.path.join(work, 'data-bin')}",
         f"common.user_dir={fairseq_cli.USER_DIR}", f"checkpoint.save_dir={save_dir}",
         "optimization.max_update=10"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=str(tmp_path),
    )
    assert proc.returncode == 0, proc.stdout[-4000:]
    hydra = torch.load(save_dir / "checkpoint_last.pt", map_location="cpu")
    argparse_run = torch.load(os.path.join(work, "checkpoints", "checkpoint_last.pt"),
                              map_location="cpu")
    assert hydra["cfg"]["model"]["_name"] == "memsizer_transformer_summarization_tiny"
    assert hydra["cfg"]["task"]["_name"] == "summarization"
    assert hydra["cfg"]["task"]["truncate_source"] is True
    shapes = lambda state: {k: tuple(v.shape) for k, v in state["model"].items()}  # noqa: E731
    assert shapes(hydra) == shapes(argparse_run)
    legacy = vars(argparse_run["cfg"]["model"])  # argparse runs store the model's Namespace
    for key in ("causal_proj_dim", "cross_proj_dim", "q_init_scale", "kv_init_scale",
                "share_all_embeddings", "encoder_embed_dim", "decoder_layers"):
        assert hydra["cfg"]["model"][key] == legacy[key], key


def test_a_second_real_run_keeps_finished_binarized_data(tmp_path):
    runner = Runner(recipes.catalog.XSUM, str(tmp_path / "w"), raw_dir=str(tmp_path / "raw"),
                    out=open(os.devnull, "w"))
    assert not runner.binarized()
    os.makedirs(runner.data_bin)
    open(os.path.join(runner.data_bin, "test.source-target.target.idx"), "w").close()
    assert runner.binarized()
    lm = Runner(recipes.catalog.WIKITEXT103, str(tmp_path / "lm"), raw_dir=str(tmp_path / "raw"))
    os.makedirs(lm.data_bin)
    open(os.path.join(lm.data_bin, "test.idx"), "w").close()
    assert lm.binarized()
