"""The comparison command (``python -m memsizer_fairseq.tools.compare``) in its tiny budget, and
the Transformer -> Memsizer checkpoint converter it uses (``python -m
memsizer_fairseq.tools.uptrain``). Each module fixture trains once and its tests share it."""
import io
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from compare_helpers import checkpoint, log_of, run_compare, state_of
from fairseq_helpers import printed_generation, run_in_process
from memsizer_fairseq.tools.compare import __main__ as cli
from memsizer_fairseq.tools.compare.report import load_states, setup_lines
from memsizer_fairseq.tools.compare.runner import Comparison, memsizer_flags
from memsizer_fairseq.tools.compare.run_state import raised_patience
from memsizer_fairseq.tools.compare.settings import FIXES, LANGUAGE_MODELING, TRANSLATION
from memsizer_fairseq.tools.compare.state_size import decoding_state
from memsizer_fairseq.tools.compare.tables import runs_frame
from memsizer_fairseq.tools.toolkit import fairseq_logs, generation
from memsizer_fairseq.tools.toolkit.fairseq_cli import REPO_ROOT as ROOT
from memsizer_fairseq.tools.toolkit.fairseq_cli import USER_DIR
from memsizer_fairseq.tools.toolkit.plugin import fixes_on
from memsizer_fairseq.tools.uptrain import convert_state, load_checkpoint

ENV = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
MT_UPDATES, UPTRAIN_UPDATES = 300, 75
MT_ARGS = ("--tasks", "translation", "--max-update", MT_UPDATES, "--uptrain",
           "--uptrain-configs", "plain=", "--uptrain-updates", UPTRAIN_UPDATES, "--distill")
SUM_UPDATES = 150
FRONTIER_NAME, FRONTIER_FLAGS = "softmax-cross", "--cross-attention softmax"
SUM_ARGS = ("--tasks", "summarization", "--max-update", SUM_UPDATES, "--frontier",
            f"{FRONTIER_NAME}={FRONTIER_FLAGS}")
LM_ARGS = ("--tasks", "language_modeling", "--uptrain", "--seeds", "1", "2")
STAGES = ("data", "train:transformer@1", "train:memsizer@1", "evaluate:transformer@1",
          "evaluate:memsizer@1", "convert:uptrained-plain@1", "train:uptrained-plain@1",
          "distill@1", "train:distill-memsizer@1", "evaluate:distill-memsizer@1")


@pytest.fixture(scope="module")
def translation(tmp_path_factory):
    """Transformer, Memsizer, the converted Transformer fine-tuned, and both Memsizer models
    trained again on the Transformer's translations."""
    work = tmp_path_factory.mktemp("compare-mt")
    finished = run_compare(work, *MT_ARGS)
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    return work, finished


@pytest.fixture(scope="module")
def summarization(tmp_path_factory):
    work = tmp_path_factory.mktemp("compare-sum")
    finished = run_compare(work, *SUM_ARGS)
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    return work, finished


@pytest.fixture(scope="module")
def language_model(tmp_path_factory):
    """A tiny LM comparison of two seeds stopped by SIGTERM during training (the command a user
    types), then resumed to the end."""
    work = tmp_path_factory.mktemp("compare-lm")
    command = [sys.executable, "-m", "memsizer_fairseq.tools.compare", "--budget", "tiny",
               "--no-progress", "--work-dir", str(work), *LM_ARGS]
    proc = subprocess.Popen(command, cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    last = checkpoint(work, "language_modeling", "memsizer", which="last")
    deadline = time.time() + 600
    while not os.path.exists(last) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, "the run ended before it could be stopped"
    proc.send_signal(signal.SIGTERM)
    stopped_output, _ = proc.communicate(timeout=120)
    stopped = (state_of(work, "language_modeling"), fairseq_logs.training_state(last))
    resumed = run_compare(work, *LM_ARGS)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    return work, proc.returncode, stopped_output, stopped, resumed


# --- translation: both models, uptraining, distillation ---------------------------------------
def test_translation_measures_both_models_and_reports(translation):
    work, finished = translation
    stages = state_of(work, "translation")["stages"]
    assert set(STAGES) <= set(stages)
    for name in ("transformer", "memsizer", "uptrained-plain"):
        result = stages[f"evaluate:{name}@1"]
        assert result["sentences"] == 100
        assert result["generation_seconds"] > 0
        # the toy language is learnt in MT_UPDATES updates (measured: 100.0)
        assert result["sacrebleu"] > 80, (name, result)
        assert 0.5 < result["length_ratio"] < 2, (name, result)
        assert result["state_measured_at"]["sentences"] == 16
    assert stages["train:transformer@1"]["updates"] == stages["train:memsizer@1"]["updates"] \
        == MT_UPDATES
    assert (stages["evaluate:memsizer@1"]["parameters"]
            < stages["evaluate:transformer@1"]["parameters"])
    report = open(os.path.join(work, "report.md")).read()
    assert "| translation (mt-en-de) | sacreBLEU |" in report
    assert "| translation (mt-en-de) | generation, sentences/s |" in report
    assert "## Budget `tiny`" in report and "### Uptraining" in report
    with open(os.path.join(work, "tiny", "curves_translation.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_scores_are_fairseq_generates(translation, tmp_path):
    """The in-process scores equal those fairseq-generate's main prints for the same checkpoint,
    both with the comparison's fixes (without keep_last_batch fairseq-fixed drops the last 4 of
    the 100 test sentences)."""
    work, _ = translation
    data = os.path.join(work, "tiny", "translation", "data-bin")
    flags = ["--beam", "4", "--lenpen", "0.6", "--max-len-a", "1.2", "--max-len-b", "10",
             "--max-tokens", "8000", "--task", "translation", "--post-process", "sentencepiece",
             "--cpu"]
    args = [data, "--user-dir", USER_DIR, "--path", checkpoint(work, "translation", "memsizer"),
            *flags, "--batch-size", "64"]
    log = tmp_path / "generate.log"
    with fixes_on(FIXES):
        with generation.fairseq_logs(str(log)):  # its "Translated N sentences" line
            output = run_in_process("generate", [*args, "--scoring", "sacrebleu"])
        printed = printed_generation(output + log.read_text())
        ours = generation.generate(args)
    assert ours.hypotheses == printed.hypotheses and ours.sentences == printed.sentences == 100
    assert round(generation.bleu(ours)["sacrebleu"], 2) == printed.bleu
    assert ours.tokens == printed.tokens


def test_uptraining_reaches_the_transformer_sooner(translation):
    work, _ = translation
    stages = state_of(work, "translation")["stages"]
    best = max(r["bleu"] for r in stages["train:transformer@1"]["valid"])
    first = next(r["num_updates"] for r in stages["train:uptrained-plain@1"]["valid"]
                 if r["bleu"] >= best - 1)
    assert first < stages["train:transformer@1"]["updates"] / 2
    # its training time is its own (fairseq carries the Transformer's on in the checkpoint)
    assert 0 < stages["train:uptrained-plain@1"]["wall_seconds"] < \
        stages["train:transformer@1"]["wall_seconds"]
    report = open(os.path.join(work, "report.md")).read()
    assert "(the target: the Transformer's best valid BLEU (greedy) of the same seed, 1.0 " \
           "below it)" in report


def test_distillation_trains_on_the_transformers_translations(translation):
    work, _ = translation
    task_dir = os.path.join(work, "tiny", "translation")
    stages = state_of(work, "translation")["stages"]
    distill = stages["distill@1"]
    assert distill["sentences"] == 3000 and distill["gold_kept"] == 0 and distill["seconds"] > 0
    gold = open(os.path.join(task_dir, "spm", "train.de")).read().splitlines()
    taught = open(os.path.join(task_dir, "distill", "seed1", "pieces", "train.de")
                  ).read().splitlines()
    assert len(taught) == len(gold) and "\u2581" in taught[0]
    assert open(os.path.join(task_dir, "distill", "seed1", "pieces", "train.en")).read() == \
        open(os.path.join(task_dir, "spm", "train.en")).read()
    distilled = os.path.join(task_dir, "distill", "seed1", "data-bin")
    for name in ("dict.en.txt", "dict.de.txt", "valid.en-de.de.bin", "test.en-de.de.bin"):
        assert open(os.path.join(distilled, name), "rb").read() == \
            open(os.path.join(task_dir, "data-bin", name), "rb").read(), name
    assert distilled in open(log_of(work, "translation", "distill-memsizer")).readline()
    for name in ("distill-memsizer", "distill-uptrained-plain"):
        assert stages[f"evaluate:{name}@1"]["sacrebleu"] > 50, name
    frame = runs_frame("translation", state_of(work, "translation")).set_index("config")
    teacher = stages["train:transformer@1"]
    assert frame.loc["distill-memsizer", "cost_updates"] == teacher["updates"] + MT_UPDATES
    assert frame.loc["distill-memsizer", "cost_minutes"] == pytest.approx(
        (teacher["wall_seconds"] + distill["seconds"]
         + stages["train:distill-memsizer@1"]["wall_seconds"]) / 60)
    report = open(os.path.join(work, "report.md")).read()
    assert "### Distillation" in report and "| Memsizer, distilled | 1 |" in report


def test_every_run_gets_the_comparisons_fairseq_fixes(translation):
    work, _ = translation
    assert state_of(work, "translation")["settings"]["fixes"] == list(FIXES)
    log = open(log_of(work, "translation", "memsizer")).read()
    installed = log.split("fairseq fixes installed: ", 1)[1].split(";")[0].split(", ")
    assert set(FIXES) <= set(installed)
    assert f"(MEMSIZER_FAIRSEQ_FIXES): {', '.join(FIXES)}." in \
        open(os.path.join(work, "report.md")).read()


def test_rerun_skips_finished_stages(translation):
    work, _ = translation
    before = state_of(work, "translation")
    start = time.time()
    finished = run_compare(work, *MT_ARGS)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert time.time() - start < 120
    for stage in STAGES:
        assert f"{stage}: done earlier" in finished.stdout
    assert state_of(work, "translation") == before


def test_changed_settings_are_refused(translation):
    work, _ = translation
    finished = run_compare(work, "--tasks", "translation", "--max-update", "123")
    assert finished.returncode == 2
    assert "max_update" in finished.stderr and "--restart" in finished.stderr


def test_changed_shared_training_flags_are_refused(translation, tmp_path):
    work, _ = translation
    state = state_of(work, "translation")
    assert state["settings"]["shared_train_flags"]["--lr"] == "0.002"
    state["settings"]["shared_train_flags"]["--lr"] = "0.5"  # a run made with another schedule
    os.makedirs(tmp_path / "tiny" / "translation")
    with open(tmp_path / "tiny" / "translation" / "state.json", "w") as f:
        json.dump(state, f)
    finished = run_compare(tmp_path, *MT_ARGS)
    assert finished.returncode == 2
    assert "--lr 0.5 -> 0.002" in finished.stderr and "--work-dir" in finished.stderr


def test_converted_checkpoint_generates(translation):
    work, _ = translation
    converted = os.path.join(work, "tiny", "translation", "checkpoints", "uptrained-plain",
                             "seed1", "converted.pt")
    data = os.path.join(work, "tiny", "translation", "data-bin")
    with fixes_on(FIXES):
        result = generation.generate([data, "--user-dir", USER_DIR, "--path", converted,
                                      "--beam", "2", "--cpu", "--max-len-b", "20"])
    assert result.sentences == 100


def test_converter_errors_name_the_problem(translation, tmp_path, capsys):
    from memsizer_fairseq.tools.uptrain import main as uptrain

    work, _ = translation
    assert uptrain([checkpoint(work, "translation", "memsizer"), str(tmp_path / "x.pt")]) == 2
    assert "--arch is 'memsizer_transformer'" in capsys.readouterr().err
    assert uptrain([str(tmp_path / "none.pt"), str(tmp_path / "x.pt")]) == 2
    assert "no checkpoint at" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()


def test_svd_initialisation_is_the_best_rank_k_bilinear_form(translation):
    state = load_checkpoint(checkpoint(translation[0], "translation", "transformer"))
    svd, _ = convert_state(state, attention_init="svd", seed=3)
    paper, _ = convert_state(state, attention_init="paper", seed=3)
    again, _ = convert_state(state, attention_init="svd", seed=3)
    prefix = "decoder.layers.0.encoder_attn."
    old = state["model"]
    heads = 2
    w_q, w_k = old[prefix + "q_proj.weight"].double(), old[prefix + "k_proj.weight"].double()
    bilinear = w_q.t() @ w_k / (w_q.shape[0] // heads) ** 0.5
    k = svd["model"][prefix + "l_proj.weight"].shape[0]
    phi_svd = svd["model"][prefix + "q_proj.weight"] - paper["model"][prefix + "q_proj.weight"]
    phi_head = phi_svd[:k].double()
    torch.testing.assert_close(phi_svd, phi_head.float().repeat(heads, 1))
    approx = phi_head.t() @ svd["model"][prefix + "l_proj.weight"].double()
    u, s, vh = torch.linalg.svd(bilinear)
    best = (u[:, :k] * s[:k]) @ vh[:k]
    torch.testing.assert_close(approx, best, rtol=1e-4, atol=1e-5)
    assert all(torch.equal(svd["model"][key], again["model"][key]) for key in svd["model"])
    torch.testing.assert_close(svd["model"][prefix + "r_proj.weight"],
                               paper["model"][prefix + "r_proj.weight"])


def test_evaluate_again_rescores_the_same_models_and_fine_tuning_resumes(translation):
    """--evaluate-again re-scores the trained models; a larger --uptrain-updates in the same call
    continues the fine-tuning from its last checkpoint."""
    work, _ = translation
    before = state_of(work, "translation")["stages"]
    more = UPTRAIN_UPDATES + 10
    args = [*MT_ARGS[:MT_ARGS.index("--uptrain-updates")], "--uptrain-updates", more,
            "--distill", "--evaluate-again"]
    finished = run_compare(work, *args)
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    assert "train:transformer@1: done earlier" in finished.stdout
    assert f"--uptrain-updates {UPTRAIN_UPDATES} -> {more}: fine-tuning resumes" in \
        finished.stdout
    after = state_of(work, "translation")["stages"]
    for model in ("transformer", "memsizer", "distill-memsizer"):
        assert f"evaluate:{model}@1 ..." in finished.stdout
        assert after[f"evaluate:{model}@1"]["sacrebleu"] == \
            before[f"evaluate:{model}@1"]["sacrebleu"]
        assert after[f"train:{model}@1"] == before[f"train:{model}@1"]
    assert after["train:uptrained-plain@1"]["updates"] == more
    log = open(log_of(work, "translation", "uptrained-plain")).read()
    second = log[log.rindex("$ fairseq-train"):]
    assert "Loaded checkpoint" in second and f"@ {UPTRAIN_UPDATES} updates" in second


# --- summarization: ROUGE and a frontier configuration ----------------------------------------
def test_summarization_reports_rouge(summarization):
    work, _ = summarization
    stages = state_of(work, "summarization")["stages"]
    for name in ("transformer", "memsizer"):
        scores = stages[f"evaluate:{name}@1"]
        assert 20 < scores["rougeL"] <= 100 and scores["rouge1"] >= scores["rouge2"]
    assert "| summarization (sum-debian) | ROUGE-L |" in open(work / "report.md").read()


def test_frontier_measures_every_configuration(summarization):
    work, _ = summarization
    stages = state_of(work, "summarization")["stages"]
    run = f"frontier-{FRONTIER_NAME}"
    assert stages[f"train:{run}@1"]["updates"] == stages["train:memsizer@1"]["updates"] \
        == SUM_UPDATES
    for name in ("transformer", "memsizer", run):
        result = stages[f"evaluate:{name}@1"]
        assert result["rougeL"] > 20, (name, result)
        assert result["sentences_per_second"] > 0 and result["tokens_per_second"] > 0
        assert 0.3 < result["length_ratio"] < 3, (name, result)
        assert result["state_bytes_per_sentence"] > 0
    # the frontier run has exactly the Memsizer run's flags plus its own
    memsizer = open(log_of(work, "summarization", "memsizer")).readline().split()
    frontier = open(log_of(work, "summarization", run)).readline().split()
    assert frontier == [part.replace("checkpoints/memsizer/", f"checkpoints/{run}/")
                        for part in memsizer] + FRONTIER_FLAGS.split()
    report = open(os.path.join(work, "report.md")).read()
    table = report[report.index("### Every configuration"):]
    header = next(line for line in table.splitlines() if line.startswith("| configuration"))
    assert "hypothesis / reference length" in header and "sentences/s / Transformer's" in header
    rows = [line for line in table.splitlines()[:12] if line.startswith("| ")
            and "---" not in line]
    assert [row.split(" | ")[0] for row in rows[1:]] == [
        "| Transformer", "| Memsizer", f"| Memsizer {FRONTIER_NAME}"]
    assert f"`--arch memsizer_transformer {FRONTIER_FLAGS}`" in table
    assert all(" - |" not in row for row in rows), rows  # every cell measured
    assert "decoder steps (the average test target length)" in table
    with open(os.path.join(work, "tiny", "frontier_summarization.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_reused_frontier_name_with_other_flags_is_refused(summarization):
    work, _ = summarization
    before = state_of(work, "summarization")
    finished = run_compare(work, *SUM_ARGS[:-1], f"{FRONTIER_NAME}=--causal-proj-dim 16")
    assert finished.returncode == 2
    assert f"--frontier {FRONTIER_NAME}" in finished.stderr
    assert FRONTIER_FLAGS in finished.stderr and "another name" in finished.stderr
    assert state_of(work, "summarization") == before


def test_failed_frontier_configuration_is_not_retried(summarization):
    """A new configuration trains alone; one that failed before saving anything is forgotten
    unless given again."""
    work, _ = summarization
    finished = run_compare(work, *SUM_ARGS, "bad=--causal-proj-dim 0")
    assert finished.returncode == 2 and "fairseq-train failed" in finished.stderr
    assert f"train:frontier-{FRONTIER_NAME}@1: done earlier" in finished.stdout
    assert "train:frontier-bad@1 ..." in finished.stdout
    assert "bad" in state_of(work, "summarization")["settings"]["frontier"]
    log = log_of(work, "summarization", "frontier-bad")
    assert os.path.exists(log)
    finished = run_compare(work, *SUM_ARGS)
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    assert "frontier-bad" not in finished.stdout
    assert list(state_of(work, "summarization")["settings"]["frontier"]) == [FRONTIER_NAME]
    assert not os.path.exists(log)


# --- the language model: stopped and resumed, two seeds ---------------------------------------
def test_stopped_comparison_resumes(language_model):
    work, returncode, stopped_output, (stopped_state, stopped_at), resumed = language_model
    assert returncode == 130, stopped_output[-2000:]
    assert "run the same command again to resume" in stopped_output
    assert "train:memsizer@1" not in stopped_state["stages"]
    assert "data: done earlier" in resumed.stdout
    stages = state_of(work, "language_modeling")["stages"]
    assert stages["train:memsizer@1"]["updates"] == 200
    # the resumed run continued from the saved checkpoint instead of starting over; its
    # training time adds the sessions (fairseq keeps it in the checkpoint)
    log = log_of(work, "language_modeling", "memsizer")
    text = open(log).read()
    assert text.count("$ fairseq-train") == 2
    second = text[text.rindex("$ fairseq-train"):]
    assert "Loaded checkpoint" in second
    resumed_at = json.loads(second[second.index("| train_inner | {") + 16:].split("\n")[0])
    assert int(resumed_at["num_updates"]) > 10  # not from update 0
    assert stopped_at["updates"] == 100  # saved at its first validation
    assert stages["train:memsizer@1"]["wall_seconds"] > stopped_at["wall_seconds"]
    assert [r["num_updates"] for r in fairseq_logs.read_records(log)["train_inner"]][-1] == 200


def test_seeds_train_every_configuration_on_the_same_data(language_model):
    work, *_ = language_model
    stages = state_of(work, "language_modeling")["stages"]
    for config in ("transformer", "memsizer", "uptrained-plain"):
        assert f"evaluate:{config}@1" in stages and f"evaluate:{config}@2" in stages
        assert "--seed 2" in open(log_of(work, "language_modeling", config, seed=2)).readline()
    assert stages["train:memsizer@1"]["train_inner"] != stages["train:memsizer@2"]["train_inner"]
    assert "evaluate:transformer@3" not in stages
    report = open(os.path.join(work, "report.md")).read()
    assert "| Memsizer | 1 |" in report and "| Memsizer | 2 |" in report
    assert "| Memsizer | mean |" in report
    frame = runs_frame("language_modeling", state_of(work, "language_modeling"))
    perplexities = frame[frame["config"] == "memsizer"]["perplexity"]
    assert f"| Memsizer | mean | `--arch memsizer_lm` | {perplexities.mean():.2f} |" in report


def test_language_model_perplexity_and_generation_timing(language_model):
    work, *_ = language_model
    stages = state_of(work, "language_modeling")["stages"]
    for name in ("transformer", "memsizer", "uptrained-plain"):
        assert 1 < stages[f"evaluate:{name}@1"]["perplexity"] < 60, name
        assert stages[f"evaluate:{name}@1"]["state_measured_at"] == {
            "sentences": 8, "prompt_tokens": 16, "target_tokens": 16 + 32}
    timing = stages["lm_generation_timing@1"]
    assert set(timing["seconds"]) == {"transformer", "memsizer", "uptrained-plain"}
    assert all(seconds > 0 for seconds in timing["seconds"].values())
    assert timing["tokens_per_second"]["memsizer"] == pytest.approx(
        8 * 32 / timing["seconds"]["memsizer"])
    report = open(os.path.join(work, "report.md")).read()
    assert "| language_modeling (lm-debian) | test perplexity |" in report
    assert "greedy, 8 prompts x 32 new tokens" in report
    assert "| Memsizer uptrained (plain) | 1 | uptrain, fine-tuned as `--arch memsizer_lm`" \
        in report
    assert "5% above it)" in report
    assert os.path.isfile(os.path.join(work, "tiny", "frontier_language_modeling.png"))


@pytest.mark.parametrize("task", ["translation", "summarization", "language_modeling"])
def test_memsizer_decoding_state_does_not_grow_with_the_output(translation, summarization,
                                                                language_model, task):
    work = {"translation": translation, "summarization": summarization,
            "language_modeling": language_model}[task][0]
    data = os.path.join(work, "tiny", task, "data-bin")
    lengths = (8, 24) if task != "language_modeling" else (20, 40)
    constant = {"translation": ["memsizer", "uptrained-plain"],
                "summarization": ["memsizer", f"frontier-{FRONTIER_NAME}"],
                "language_modeling": ["memsizer", "uptrained-plain"]}[task]
    for run in ("transformer", *constant):
        short, long = (decoding_state(checkpoint(work, task, run), data, target_tokens=n,
                                      sentences=4) for n in lengths)
        assert short["state_measured_at"]["target_tokens"] == lengths[0]
        assert long["state_measured_at"]["target_tokens"] == lengths[1]
        grew = long["state_bytes_per_sentence"] - short["state_bytes_per_sentence"]
        if run == "transformer":
            # keys and values: layers x 2 x width x 4 bytes per token
            assert grew == 2 * 2 * 64 * 4 * (lengths[1] - lengths[0]), (run, short, long)
        else:
            assert grew == 0 and short["state_bytes_per_sentence"] > 0, (run, short, long)


@pytest.mark.parametrize("task", ["translation", "language_modeling"])
def test_conversion_copies_every_kept_tensor_exactly(translation, language_model, task):
    work = translation[0] if task == "translation" else language_model[0]
    old = load_checkpoint(checkpoint(work, task, "transformer"))["model"]
    new = load_checkpoint(os.path.join(work, "tiny", task, "checkpoints", "uptrained-plain",
                                       "seed1", "converted.pt"))
    model = new["model"]
    converted = {k.rsplit(".", 2)[0] for k in model if k.endswith(".l_proj.weight")}
    expected = ({f"decoder.layers.{i}.self_attn" for i in range(2)}
                | ({f"decoder.layers.{i}.encoder_attn" for i in range(2)}
                   if task == "translation" else set()))
    assert converted == expected
    copied = [k for k in model if k.rsplit(".", 2)[0] not in converted]
    assert copied and all(torch.equal(model[k], old[k]) for k in copied)
    if task == "translation":
        assert [k for k in old if k.startswith("encoder.")] == \
            [k for k in model if k.startswith("encoder.")]
    for prefix in converted:  # the values: W_r = W_o W_v, b_r = W_o b_v + b_o
        w_o, w_v = old[prefix + ".out_proj.weight"], old[prefix + ".v_proj.weight"]
        b_o, b_v = old[prefix + ".out_proj.bias"], old[prefix + ".v_proj.bias"]
        torch.testing.assert_close(model[prefix + ".r_proj.weight"], w_o @ w_v)
        torch.testing.assert_close(model[prefix + ".r_proj.bias"], w_o @ b_v + b_o)
        assert prefix + ".k_proj.weight" not in model
    arch = new["cfg"]["model"].arch
    assert arch == ("memsizer_transformer" if task == "translation" else "memsizer_lm")


def test_new_memsizer_args_keep_the_transformer(language_model):
    """Last for the LM run: tuning Memsizer retrains its runs alone (of the seeds asked for);
    the baseline is kept."""
    work = language_model[0]
    before = state_of(work, "language_modeling")
    finished = run_compare(work, "--tasks", "language_modeling", "--uptrain", "--seeds", "1",
                           "--memsizer-args", "--causal-proj-dim 8")
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    assert "the Memsizer model is trained again" in finished.stdout
    assert "### Memsizer settings tried" in finished.stdout
    assert "`--causal-proj-dim 8` (reported above)" in finished.stdout
    task_dir = os.path.join(work, "tiny", "language_modeling")
    after = state_of(work, "language_modeling")
    assert after["settings"]["memsizer_args"] == ["--causal-proj-dim", "8"]
    for stage in ("data", "evaluate:transformer@1", "train:transformer@2"):
        assert after["stages"][stage] == before["stages"][stage]
    assert after["stages"]["train:memsizer@1"]["updates"] == 200
    assert "train:memsizer@2" not in after["stages"]  # set aside; seed 2 was not asked for
    # the new Memsizer models and their fine-tuned conversions have 8 slots; the old are kept
    for config in ("memsizer", "uptrained-plain"):
        model = load_checkpoint(checkpoint(work, "language_modeling", config, seed=1))["model"]
        assert model["decoder.layers.0.self_attn.l_proj.weight"].shape[0] == 8
    with open(os.path.join(task_dir, "tried", "1", "record.json")) as f:
        record = json.load(f)
    assert record["memsizer_args"] == []
    assert record["stages"]["train:memsizer@1"] == before["stages"]["train:memsizer@1"]
    assert record["stages"]["lm_generation_timing@2"] == \
        before["stages"]["lm_generation_timing@2"]
    old = load_checkpoint(os.path.join(task_dir, "tried", "1", "checkpoints", "memsizer",
                                       "seed1", "checkpoint_best.pt"))
    assert old["model"]["decoder.layers.0.self_attn.l_proj.weight"].shape[0] != 8
    assert "Loaded checkpoint" not in open(log_of(work, "language_modeling", "memsizer")).read()


# --- without training -------------------------------------------------------------------------
def test_missing_raw_files_are_named(tmp_path):
    finished = run_compare(tmp_path / "work", "--budget", "full", "--tasks", "translation",
                           "--raw-dir", tmp_path)
    assert finished.returncode == 2
    assert str(tmp_path / "train.en") in finished.stderr
    assert not (tmp_path / "work").exists()


def test_budgets_seeds_and_named_configurations_on_the_command_line():
    args = cli.parse_args(["--tiny", "--seeds", "2", "1", "2"])
    assert args.budget == "tiny" and args.seeds == [1, 2]
    args = cli.parse_args(["--budget", "small", "--uptrain", "--uptrain-configs",
                           "transfer-k32=--transfer-updates 200 --causal-proj-dim 32", "plain="])
    assert args.uptrain_configs == [
        ("transfer-k32", ["--transfer-updates", "200", "--causal-proj-dim", "32"]),
        ("plain", [])]
    for wrong in (["--uptrain-configs", "a="], ["--uptrain", "--uptrain-configs", "a=", "a=-x"],
                  ["--uptrain", "--uptrain-configs", "bad name=x"], ["--seeds", "-1"]):
        with pytest.raises(SystemExit):
            cli.parse_args(wrong)
    small = TRANSLATION.budgets["small"]
    assert (small.model["--encoder-embed-dim"], small.model["--encoder-layers"],
            small.model["--encoder-attention-heads"], small.model["--decoder-ffn-embed-dim"]
            ) == (128, 3, 4, 512)
    assert (small.max_update, small.validate_every, small.valid_lines) == (400, 100, 500)
    lm = LANGUAGE_MODELING.budgets["small"]
    assert (lm.model["--decoder-layers"], lm.model["--decoder-embed-dim"], lm.max_update) == \
        (3, 128, 300)


def test_uptraining_configurations_reach_the_uptrain_command_and_the_fine_tuning(tmp_path,
                                                                                monkeypatch):
    """An uptraining configuration's flags go to the uptrain command (with --data and --summary
    for attention transfer, whose summary becomes the step's result); its Memsizer flags also
    to the fine-tuning."""
    from memsizer_fairseq.tools import uptrain

    configs = {"transfer": ["--transfer-updates", "20", "--cross-proj-dim", "16"], "plain": []}
    comparison = Comparison(TRANSLATION, str(tmp_path), budget="tiny", uptrain=True,
                            uptrain_configs=configs, memsizer_args=["--q-init-scale", "4"],
                            seeds=[3], out=io.StringIO())
    calls = []

    def fake(argv):
        calls.append(argv)
        transfer = "--data" in argv
        with open(argv[argv.index("--summary") + 1], "w") as f:
            json.dump({"arch": "memsizer_transformer", "transfer_updates": 20 if transfer else 0,
                       "seconds": 1.5 if transfer else 0.0,
                       "layers": {"decoder.layers.0.self_attn": {"before": 0.9, "after": 0.2}}
                       if transfer else {}}, f)
        return 0

    monkeypatch.setattr(uptrain, "main", fake)
    summary = comparison.convert("uptrained-transfer", 3)
    assert summary["layers"] and summary["transfer_updates"] == 20
    assert summary["convert_seconds"] >= 0
    assert comparison.convert("uptrained-plain", 3)["transfer_updates"] == 0
    transfer, plain = calls
    assert transfer[:2] == [comparison.checkpoint("transformer", 3),
                            comparison.converted("uptrained-transfer", 3)]
    assert transfer[2:] == ["--q-init-scale", "4", *configs["transfer"], "--attention-init",
                            "svd", "--seed", "3", "--data", comparison.data_bin, "--summary",
                            os.path.join(comparison.save_dir("uptrained-transfer", 3),
                                         "uptrain.json")]
    assert "--data" not in plain and "--summary" in plain
    args = comparison.training_run("uptrained-transfer", 3).args
    assert args[-4:] == ["--q-init-scale", "4", "--cross-proj-dim", "16"]
    assert "--transfer-updates" not in args
    assert args[args.index("--finetune-from-model") + 1] == \
        comparison.converted("uptrained-transfer", 3)
    assert args[args.index("--seed") + 1] == "3"
    assert memsizer_flags(["--lr", "1", "--causal-proj-dim", "8", "--encoder-use-memsizer"]) \
        == ["--causal-proj-dim", "8", "--encoder-use-memsizer"]


def test_uptraining_perplexity_target_is_within_5_percent(tmp_path):
    from memsizer_fairseq.tools.compare.report import uptraining_lines

    def valid(*perplexities):
        return [{"num_updates": 10 * (i + 1), "ppl": p} for i, p in enumerate(perplexities)]

    state = {"settings": {}, "stages": {
        "train:transformer@1": {"valid": valid(30.0, 20.0), "updates": 200},
        "train:uptrained-plain@1": {"valid": valid(21.6, 20.9, 20.5), "updates": 30,
                                    "wall_seconds": 6.0}}}
    row = next(line for line in uptraining_lines("language_modeling", state)
               if line.startswith("| Memsizer uptrained"))
    # 21.6 is 8% above the Transformer's 20.0
    assert "| 21.00 | 20 (10% of the Transformer's 200) | 20.50 |" in row


def test_set_up_table_gives_each_run_its_updates_when_they_stopped_apart():
    def state(t_updates, m_updates):
        def run(updates):
            return {"updates": updates, "wall_seconds": 60.0, "threads": 1, "valid": []}

        evaluated = {"sacrebleu": 1.0, "parameters": 10, "generation_seconds": 1.0,
                     "sentences": 2, "tokens": 4}
        return {"settings": {}, "stages": {
            "data": {"train_lines": 5, "valid_lines": 2, "test_lines": 2, "train_tokens": 50},
            "train:transformer@1": run(t_updates), "train:memsizer@1": run(m_updates),
            "evaluate:transformer@1": evaluated, "evaluate:memsizer@1": evaluated}}

    for updates, shown in (((1200, 1200), "1200 / 1200"), ((7296, 2400), "7296 / 2400")):
        states = {"translation": state(*updates)}
        lines = setup_lines(states, {"translation": runs_frame("translation",
                                                               states["translation"])})
        assert f"; 50 | 1 | {shown} | 10 / 10 | 1.0 / 1.0 min (1) |" in lines[2]


def test_a_checkpoint_keeps_the_updates_and_the_training_time_of_every_session(tmp_path):
    path = str(tmp_path / "checkpoint_last.pt")
    torch.save({"optimizer_history": [{"num_updates": 50}, {"num_updates": 100}],
                "extra_state": {"previous_training_time": 95.54}}, path)
    assert fairseq_logs.training_state(path) == {"updates": 100, "wall_seconds": 95.5}
    assert fairseq_logs.training_state(str(tmp_path / "none.pt")) is None
    inner = '2026-01-01 | INFO | train_inner | {"num_updates": "%d", "loss": "%s"}\n'
    log = tmp_path / "train.log"
    # a resumed run repeats updates after its last checkpoint: the record written last counts
    log.write_text(inner % (25, "9") + inner % (50, "8") + "$ fairseq-train again\n"
                   + inner % (50, "7.5") + inner % (75, "7")
                   + '2026-01-01 | INFO | valid | {"valid_bleu": "3", "valid_num_updates": "75"}\n')
    records = fairseq_logs.read_records(str(log))
    assert [(r["num_updates"], r["loss"]) for r in records["train_inner"]] == [
        (25, 9), (50, 7.5), (75, 7)]
    assert records["valid"] == [{"bleu": 3.0, "num_updates": 75.0}]


def test_train_args_reach_every_run_and_a_work_dir_keeps_them(tmp_path):
    extra = ["--patience", "3", "--encoder-embed-dim", "32"]
    comparison = Comparison(TRANSLATION, str(tmp_path), budget="tiny", train_args=extra,
                            frontier={"softmax-cross": FRONTIER_FLAGS.split()}, out=io.StringIO())
    for name in ("transformer", "memsizer", "frontier-softmax-cross"):
        args = comparison.training_run(name, 1).args
        start = args.index("--patience")
        assert args[start:start + len(extra)] == extra
    comparison.run_state.save()
    with pytest.raises(ValueError, match="train_args"):
        Comparison(TRANSLATION, str(tmp_path), budget="tiny", train_args=["--patience", "5"])


def test_a_larger_patience_resumes_training_and_redoes_the_measurements(tmp_path):
    size = ["--encoder-embed-dim", "32"]
    first = Comparison(TRANSLATION, str(tmp_path), budget="tiny",
                       train_args=[*size, "--patience", "3"], out=io.StringIO())
    first.state["stages"] = {"data": {"train_lines": 5}, "train:memsizer@1": {"updates": 40},
                             "evaluate:memsizer@1": {"sacrebleu": 1.0}}
    first.run_state.save()
    # a smaller patience, or another change beside a larger one, is refused
    for train_args in ([*size, "--patience", "2"],
                       ["--encoder-embed-dim", "64", "--patience", "6"]):
        with pytest.raises(ValueError, match="train_args"):
            Comparison(TRANSLATION, str(tmp_path), budget="tiny", train_args=train_args)
    out = io.StringIO()
    larger = Comparison(TRANSLATION, str(tmp_path), budget="tiny",
                        train_args=[*size, "--patience", "6"], out=out)
    assert "--patience 3 -> 6: training resumes" in out.getvalue()
    assert set(larger.state["stages"]) == {"data"}  # trained on, then measured again
    assert larger.state["settings"]["train_args"] == [*size, "--patience", "6"]

    assert raised_patience(["--patience", "5"], ["--patience", "10"]) == (5, "10")
    assert raised_patience(["--patience", "5", "--lr", "1"], ["--lr", "1"]) == (5, "none")
    assert raised_patience(["--patience", "5"], ["--patience", "4"]) is None
    assert raised_patience(["--lr", "1"], ["--lr", "1", "--patience", "4"]) is None


def test_the_report_covers_every_budget_in_the_work_directory(tmp_path):
    """Each budget keeps its own tree; load_states finds them all."""
    for budget in ("small", "tiny"):
        folder = tmp_path / budget / "translation"
        folder.mkdir(parents=True)
        (folder / "state.json").write_text(json.dumps({"settings": {}, "stages": {}}))
    assert sorted(load_states(str(tmp_path))) == [("small", "translation"),
                                                  ("tiny", "translation")]


def test_larger_budget_resumes_training(translation):
    """Last in the module: it changes the translation run."""
    work, _ = translation
    more = MT_UPDATES + 30
    finished = run_compare(work, "--tasks", "translation", "--max-update", more,
                           "--uptrain-updates", UPTRAIN_UPDATES + 10)
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    assert f"--max-update {MT_UPDATES} -> {more}: training resumes" in finished.stdout
    stages = state_of(work, "translation")["stages"]
    assert stages["train:memsizer@1"]["updates"] == more
    assert {"evaluate:transformer@1", "evaluate:memsizer@1"} <= set(stages)
    # what was made from the shorter Transformer is forgotten, to start over when asked for
    assert not any("uptrained" in stage or "distill" in stage for stage in stages)
    task_dir = os.path.join(work, "tiny", "translation")
    for forgotten in ("checkpoints/uptrained-plain", "checkpoints/distill-memsizer", "distill"):
        assert not os.path.exists(os.path.join(task_dir, forgotten))
    log = open(log_of(work, "translation", "memsizer")).read()
    second = log[log.rindex("$ fairseq-train"):]
    assert "Loaded checkpoint" in second and "(epoch" in second
