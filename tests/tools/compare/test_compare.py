"""The comparison command (``python -m memsizer_fairseq.tools.compare``) in its tiny mode, and the
Transformer -> Memsizer checkpoint converter (``python -m memsizer_fairseq.tools.uptrain``)."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from memsizer_fairseq.tools.toolkit.fairseq_cli import REPO_ROOT as ROOT
from memsizer_fairseq.tools.toolkit import fairseq_cli
from memsizer_fairseq.tools.compare.tables import setup_table, uptraining_summary
from memsizer_fairseq.tools.toolkit.fairseq_output import read_records, training_wall_seconds
from memsizer_fairseq.tools.compare.state_size import decoding_state
from memsizer_fairseq.tools.uptrain import convert_state, load_checkpoint

ENV = dict(os.environ, PYTHONUNBUFFERED="1")
# the translation run's one frontier configuration (softmax cross-attention, Memsizer
# self-attention)
FRONTIER_NAME, FRONTIER_FLAGS = "softmax-cross", "--cross-attention softmax"
MT_ARGS = ("--tasks", "translation", "--uptrain", "--frontier",
           f"{FRONTIER_NAME}={FRONTIER_FLAGS}")


def compare_command(work_dir, *args):
    return [sys.executable, "-m", "memsizer_fairseq.tools.compare", "--tiny", "--no-progress",
            "--work-dir", str(work_dir), *args]


def run_compare(work_dir, *args, timeout=900):
    return subprocess.run(compare_command(work_dir, *args), cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=timeout)


def state_of(work_dir, task):
    with open(os.path.join(work_dir, task, "state.json")) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def translation(tmp_path_factory):
    work = tmp_path_factory.mktemp("compare-mt")
    proc = run_compare(work, *MT_ARGS)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return work, proc


@pytest.fixture(scope="module")
def language_model(tmp_path_factory):
    """A tiny LM comparison stopped by SIGTERM during training, then resumed to the end."""
    work = tmp_path_factory.mktemp("compare-lm")
    args = ("--tasks", "language_modeling", "--uptrain")
    proc = subprocess.Popen(compare_command(work, *args), cwd=ROOT, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    checkpoint = os.path.join(work, "language_modeling", "checkpoints", "memsizer",
                              "checkpoint_last.pt")
    deadline = time.time() + 600
    while not os.path.exists(checkpoint) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, "the run ended before it could be stopped"
    proc.send_signal(signal.SIGTERM)
    stopped_output, _ = proc.communicate(timeout=120)
    stopped_state = state_of(work, "language_modeling")
    resumed = run_compare(work, *args)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    return work, proc.returncode, stopped_output, stopped_state, resumed


def test_translation_measures_both_models_and_reports(translation):
    work, proc = translation
    stages = state_of(work, "translation")["stages"]
    for name in ("transformer", "memsizer", "uptrained"):
        result = stages[f"evaluate:{name}"]
        assert result["sentences"] == 100
        assert result["generation_seconds"] > 0
        # the toy language is learnt exactly in 300 updates (100.0 was measured)
        assert result["sacrebleu"] > 80, (name, result)
    assert stages["train"]["transformer"]["updates"] == stages["train"]["memsizer"]["updates"]
    assert stages["train"]["memsizer"]["parameters"] < stages["train"]["transformer"]["parameters"]
    report = open(os.path.join(work, "report.md")).read()
    assert "| translation (mt-en-de) | sacreBLEU |" in report
    assert "generation (fairseq-generate, beam 4, 100 test items): time, tokens/s" in report
    assert "## Uptraining" in report and "from-scratch updates" in report
    with open(os.path.join(work, "curves_translation.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_uptraining_reaches_the_transformer_sooner(translation):
    work, _ = translation
    stages = state_of(work, "translation")["stages"]
    best = max(r["bleu"] for r in stages["train"]["transformer"]["valid"])
    first = next(r["num_updates"] for r in stages["uptrain"]["valid"] if r["bleu"] >= best - 1)
    assert first < stages["train"]["transformer"]["updates"] / 2


def test_frontier_measures_every_configuration(translation):
    work, proc = translation
    stages = state_of(work, "translation")["stages"]
    run = f"frontier-{FRONTIER_NAME}"
    assert stages[f"train:{run}"]["updates"] == stages["train"]["memsizer"]["updates"] == 300
    for name in ("transformer", "memsizer", run, "uptrained"):
        result = stages[f"evaluate:{name}"]
        assert result["sacrebleu"] > 50, (name, result)
        assert result["sentences_per_second"] > 0 and result["tokens_per_second"] > 0
        assert 0.5 < result["length_ratio"] < 2, (name, result)
        assert result["state_bytes_per_sentence"] > 0
        assert result["state_measured_at"]["sentences"] == 16
    # the frontier run has exactly the Memsizer run's flags plus its own
    logs = os.path.join(work, "translation", "logs")
    memsizer = open(os.path.join(logs, "train.memsizer.log")).readline().split()
    frontier = open(os.path.join(logs, f"train.{run}.log")).readline().split()
    assert frontier == [part.replace("checkpoints/memsizer", f"checkpoints/{run}")
                        for part in memsizer] + FRONTIER_FLAGS.split()
    report = open(os.path.join(work, "report.md")).read()
    table = report[report.index("## Efficiency against accuracy"):report.index("## Uptraining")]
    header = next(line for line in table.splitlines() if line.startswith("| configuration"))
    assert "hypothesis / reference length" in header and "tokens/s / Transformer's" in header
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    labels = [row.split(" | ")[0] for row in rows[1:]]
    assert labels == ["| Transformer", "| Memsizer", f"| Memsizer {FRONTIER_NAME}",
                      "| Memsizer uptrained from the Transformer"]
    assert f"`--arch memsizer_transformer {FRONTIER_FLAGS}`" in table
    assert all(" - |" not in row for row in rows), rows  # every cell measured
    assert "after 5 decoder steps (the average test target length)" in table
    with open(os.path.join(work, "frontier_translation.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_reused_frontier_name_with_other_flags_is_refused(translation):
    work, _ = translation
    before = state_of(work, "translation")
    proc = run_compare(work, "--tasks", "translation", "--frontier",
                       f"{FRONTIER_NAME}=--causal-proj-dim 16")
    assert proc.returncode == 2
    assert f"--frontier {FRONTIER_NAME}" in proc.stderr and FRONTIER_FLAGS in proc.stderr
    assert "another name" in proc.stderr
    assert state_of(work, "translation") == before


def test_failed_frontier_configuration_is_not_retried(translation):
    """A new configuration trains alone; one that failed before saving anything is forgotten
    unless given again."""
    work, _ = translation
    proc = run_compare(work, *MT_ARGS, "bad=--causal-proj-dim 0")
    assert proc.returncode == 2 and "fairseq-train failed" in proc.stderr
    assert f"train:frontier-{FRONTIER_NAME}: done earlier" in proc.stdout
    assert "train:frontier-bad ..." in proc.stdout
    assert "bad" in state_of(work, "translation")["settings"]["frontier"]
    log = os.path.join(work, "translation", "logs", "train.frontier-bad.log")
    assert os.path.exists(log)
    proc = run_compare(work, *MT_ARGS)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "frontier-bad" not in proc.stdout
    assert list(state_of(work, "translation")["settings"]["frontier"]) == [FRONTIER_NAME]
    assert not os.path.exists(log)


@pytest.mark.parametrize("task", ["translation", "language_modeling"])
def test_memsizer_decoding_state_does_not_grow_with_the_output(translation, language_model,
                                                                task):
    work = os.path.join((translation if task == "translation" else language_model)[0], task)
    data = os.path.join(work, "data-bin")
    lengths = (8, 24) if task == "translation" else (20, 40)
    constant = ["memsizer", "uptrained"] + (
        [f"frontier-{FRONTIER_NAME}"] if task == "translation" else [])
    for run in ("transformer", *constant):
        checkpoint = os.path.join(work, "checkpoints", run, "checkpoint_best.pt")
        short, long = (decoding_state(checkpoint, data, target_tokens=n, sentences=4)
                       for n in lengths)
        assert short["state_measured_at"]["target_tokens"] == lengths[0]
        assert long["state_measured_at"]["target_tokens"] == lengths[1]
        grew = long["state_bytes_per_sentence"] - short["state_bytes_per_sentence"]
        if run == "transformer":
            # keys and values: layers x 2 x width x 4 bytes per token
            assert grew == 2 * 2 * 64 * 4 * (lengths[1] - lengths[0]), (run, short, long)
        else:
            assert grew == 0 and short["state_bytes_per_sentence"] > 0, (run, short, long)


def test_uptraining_perplexity_target_is_within_5_percent():
    def valid(*perplexities):
        return [{"num_updates": 10 * (i + 1), "ppl": p} for i, p in enumerate(perplexities)]

    state = {"stages": {"train": {"transformer": {"valid": valid(30.0, 20.0), "updates": 200}},
                        "uptrain": {"valid": valid(21.6, 20.9, 20.5), "updates": 30}}}
    summary = uptraining_summary("language_modeling", state)
    assert summary["threshold"] == pytest.approx(21.0)
    assert summary["first_update"] == 20  # 21.6 is 8% above the Transformer's 20.0


def test_set_up_table_gives_each_run_its_updates_when_they_stopped_apart():
    def stages(t_updates, m_updates):
        run = {"parameters": 10, "wall_seconds": 60.0, "threads": 1}
        return {"stages": {
            "data": {"train_lines": 5, "valid_lines": 2, "test_lines": 2, "train_tokens": 50},
            "train": {"transformer": dict(run, updates=t_updates),
                      "memsizer": dict(run, updates=m_updates)}}}

    assert "; 50 | 1200 | 10 / 10 |" in setup_table({"translation": stages(1200, 1200)})[2]
    assert "; 50 | 7296 / 2400 | 10 / 10 |" in setup_table({"translation": stages(7296, 2400)})[2]


def test_training_time_adds_the_sessions_of_a_resumed_run():
    inner = '2026-01-01 | INFO | train_inner | {"num_updates": "%d", "wall": "%d"}\n'
    stopped = "$ fairseq-train a\n" + inner % (25, 40) + inner % (50, 80)
    # fairseq's wall meter can restart within a session: its own total is what counts
    finished = ("$ fairseq-train a\n" + inner % (75, 30) + inner % (100, 20)
                + "2026-01-01 | INFO | fairseq_cli.train | done training in 95.5 seconds\n")
    assert training_wall_seconds(stopped + finished) == 80 + 95.5


def test_rerun_skips_finished_stages(translation):
    work, _ = translation
    before = state_of(work, "translation")
    start = time.time()
    proc = run_compare(work, *MT_ARGS)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert time.time() - start < 120
    for stage in ("data", "train", "evaluate:transformer", "evaluate:memsizer", "uptrain",
                  f"train:frontier-{FRONTIER_NAME}", f"evaluate:frontier-{FRONTIER_NAME}"):
        assert f"{stage}: done earlier" in proc.stdout
    assert state_of(work, "translation") == before


def test_changed_settings_are_refused(translation):
    work, _ = translation
    proc = run_compare(work, "--tasks", "translation", "--max-update", "123")
    assert proc.returncode == 2
    assert "max_update" in proc.stderr and "--restart" in proc.stderr


def test_changed_shared_training_flags_are_refused(translation, tmp_path):
    work, _ = translation
    state = state_of(work, "translation")
    assert state["settings"]["shared_train_flags"]["--lr"] == "0.002"
    state["settings"]["shared_train_flags"]["--lr"] = "0.5"  # a run made with another schedule
    os.makedirs(tmp_path / "translation")
    with open(tmp_path / "translation" / "state.json", "w") as f:
        json.dump(state, f)
    proc = run_compare(tmp_path, "--tasks", "translation", "--uptrain")
    assert proc.returncode == 2
    assert "--lr 0.5 -> 0.002" in proc.stderr and "--work-dir" in proc.stderr


def test_stopped_comparison_resumes(language_model):
    work, returncode, stopped_output, stopped_state, resumed = language_model
    assert returncode == 130, stopped_output[-2000:]
    assert "run the same command again to resume" in stopped_output
    assert "train" not in stopped_state["stages"]
    assert "data: done earlier" in resumed.stdout
    stages = state_of(work, "language_modeling")["stages"]
    assert stages["train"]["memsizer"]["updates"] == 200
    # the resumed run continued from the saved checkpoint instead of starting over
    log = os.path.join(work, "language_modeling", "logs", "train.memsizer.log")
    text = open(log).read()
    assert text.count("$ fairseq-train") == 2
    second = text[text.rindex("$ fairseq-train"):]
    assert "Loaded checkpoint" in second
    resumed_at = json.loads(second[second.index('| train_inner | {') + 16:].split("\n")[0])
    assert int(resumed_at["num_updates"]) > 10  # not from update 0
    updates = [r["num_updates"] for r in read_records(log)["train_inner"]]
    assert updates[-1] == 200


def test_language_model_perplexity_and_generation_timing(language_model):
    work, *_ = language_model
    stages = state_of(work, "language_modeling")["stages"]
    for name in ("transformer", "memsizer", "uptrained"):
        assert 1 < stages[f"evaluate:{name}"]["perplexity"] < 60, name
        assert stages[f"evaluate:{name}"]["state_measured_at"] == {
            "sentences": 8, "prompt_tokens": 16, "target_tokens": 16 + 32}
    timing = stages["lm_generation_timing"]
    assert set(timing["seconds"]) == {"transformer", "memsizer", "uptrained"}
    assert all(seconds > 0 for seconds in timing["seconds"].values())
    assert timing["tokens_per_second"]["memsizer"] == pytest.approx(
        8 * 32 / timing["seconds"]["memsizer"])
    report = open(os.path.join(work, "report.md")).read()
    assert "| language_modeling (lm-debian) | test perplexity |" in report
    assert "greedy, 8 prompts x 32 new tokens" in report
    assert "| Memsizer uptrained from the Transformer | converted Transformer" in report
    assert "(5% above it)" in report
    assert os.path.isfile(os.path.join(work, "frontier_language_modeling.png"))


def test_summarization_reports_rouge(tmp_path):
    proc = run_compare(tmp_path, "--tasks", "summarization")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    stages = state_of(tmp_path, "summarization")["stages"]
    for name in ("transformer", "memsizer"):
        scores = stages[f"evaluate:{name}"]
        assert 20 < scores["rougeL"] <= 100 and scores["rouge1"] >= scores["rouge2"]
    assert "| summarization (sum-debian) | ROUGE-L |" in open(tmp_path / "report.md").read()


def test_missing_raw_files_are_named(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "memsizer_fairseq.tools.compare", "--tasks", "translation",
         "--raw-dir", str(tmp_path), "--work-dir", str(tmp_path / "work"), "--no-progress"],
        cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert str(tmp_path / "train.en") in proc.stderr


# --- the converter ---------------------------------------------------------------------------
def _checkpoints(work, task):
    base = os.path.join(work, task, "checkpoints")
    return os.path.join(base, "transformer", "checkpoint_best.pt"), os.path.join(base,
                                                                                  "converted.pt")


@pytest.mark.parametrize("task", ["translation", "language_modeling"])
def test_conversion_copies_every_kept_tensor_exactly(translation, language_model, task):
    work = translation[0] if task == "translation" else language_model[0]
    source, target = _checkpoints(work, task)
    old, new = load_checkpoint(source)["model"], load_checkpoint(target)
    model = new["model"]
    converted = {k.rsplit(".", 2)[0] for k in model if k.endswith(".l_proj.weight")}
    layers = 2
    expected = ({f"decoder.layers.{i}.self_attn" for i in range(layers)}
                | ({f"decoder.layers.{i}.encoder_attn" for i in range(layers)}
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


def test_svd_initialisation_is_the_best_rank_k_bilinear_form(translation):
    source, _ = _checkpoints(translation[0], "translation")
    state = load_checkpoint(source)
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


def test_converted_checkpoint_generates(translation):
    work, _ = translation
    _, converted = _checkpoints(work, "translation")
    data = os.path.join(work, "translation", "data-bin")
    result = fairseq_cli.generate(data, converted, beam=2, extra=["--cpu", "--max-len-b", "20"])
    assert len(result.hypotheses) == 100


def test_converter_errors_name_the_problem(translation, tmp_path):
    work, _ = translation
    memsizer = os.path.join(work, "translation", "checkpoints", "memsizer", "checkpoint_best.pt")
    command = [sys.executable, "-m", "memsizer_fairseq.tools.uptrain"]
    proc = subprocess.run([*command, memsizer, str(tmp_path / "x.pt")], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "--arch is 'memsizer_transformer'" in proc.stderr
    proc = subprocess.run([*command, str(tmp_path / "none.pt"), str(tmp_path / "x.pt")],
                          cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "no checkpoint at" in proc.stderr
    assert not (tmp_path / "x.pt").exists()


def test_evaluate_again_rescores_the_same_models_and_fine_tuning_resumes(translation):
    """--evaluate-again re-scores the trained models; a larger --uptrain-updates in the same call
    continues the fine-tuning from its last checkpoint."""
    work, _ = translation
    before = state_of(work, "translation")["stages"]
    proc = run_compare(work, "--tasks", "translation", "--uptrain", "--uptrain-updates", "90",
                       "--evaluate-again")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "train: done earlier" in proc.stdout
    assert "--uptrain-updates 75 -> 90: fine-tuning resumes" in proc.stdout
    after = state_of(work, "translation")["stages"]
    for model in ("transformer", "memsizer"):
        assert f"evaluate:{model} ..." in proc.stdout
        assert after[f"evaluate:{model}"]["sacrebleu"] == before[f"evaluate:{model}"]["sacrebleu"]
    assert after["train"] == before["train"]
    assert after["uptrain"]["updates"] == 90 and "evaluate:uptrained" in after
    log = open(os.path.join(work, "translation", "logs", "train.uptrained.log")).read()
    second = log[log.rindex("$ fairseq-train"):]
    assert "Loaded checkpoint" in second and "@ 75 updates" in second


def test_larger_budget_resumes_training(translation):
    """Last: it changes the module's translation run."""
    work, _ = translation
    proc = run_compare(work, "--tasks", "translation", "--max-update", "340")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "--max-update 300 -> 340: training resumes" in proc.stdout
    stages = state_of(work, "translation")["stages"]
    assert stages["train"]["memsizer"]["updates"] == 340
    # the frontier configuration, not given again, is kept and trained to the same budget
    assert stages[f"train:frontier-{FRONTIER_NAME}"]["updates"] == 340
    assert {"evaluate:transformer", "evaluate:memsizer",
            f"evaluate:frontier-{FRONTIER_NAME}"} <= set(stages)
    # the fine-tuning started from the shorter Transformer: forgotten, to start over
    assert "uptrain" not in stages and "evaluate:uptrained" not in stages
    for forgotten in ("uptrained", "converted.pt"):
        assert not os.path.exists(os.path.join(work, "translation", "checkpoints", forgotten))
    log = open(os.path.join(work, "translation", "logs", "train.memsizer.log")).read()
    second = log[log.rindex("$ fairseq-train"):]
    assert "Loaded checkpoint" in second and "(epoch" in second


def test_new_memsizer_args_keep_the_transformer(language_model):
    """Last for the LM run: tuning Memsizer retrains it alone; the baseline is kept."""
    work = language_model[0]
    before = state_of(work, "language_modeling")
    args = ("--tasks", "language_modeling", "--uptrain", "--memsizer-args", "--causal-proj-dim 8")
    proc = run_compare(work, *args)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "the Memsizer model is trained again" in proc.stdout
    assert "## Memsizer settings tried" in proc.stdout and "`--causal-proj-dim 8`" in proc.stdout
    task_dir = os.path.join(work, "language_modeling")
    after = state_of(work, "language_modeling")
    assert after["settings"]["memsizer_args"] == ["--causal-proj-dim", "8"]
    for stage in ("data", "evaluate:transformer"):
        assert after["stages"][stage] == before["stages"][stage]
    assert after["stages"]["train"]["transformer"] == before["stages"]["train"]["transformer"]
    assert after["stages"]["train"]["memsizer"]["updates"] == 200
    # the new Memsizer model and its fine-tuned conversion have 8 slots; the old run is kept
    checkpoints = os.path.join(task_dir, "checkpoints")
    for path in (os.path.join(checkpoints, "memsizer", "checkpoint_best.pt"),
                 os.path.join(checkpoints, "uptrained", "checkpoint_best.pt")):
        model = load_checkpoint(path)["model"]
        assert model["decoder.layers.0.self_attn.l_proj.weight"].shape[0] == 8
    assert after["stages"]["uptrain"]["updates"] == before["stages"]["uptrain"]["updates"]
    with open(os.path.join(task_dir, "tried", "1", "record.json")) as f:
        record = json.load(f)
    assert record["memsizer_args"] == []
    assert record["train"] == before["stages"]["train"]["memsizer"]
    assert record["lm_generation_timing"] == before["stages"]["lm_generation_timing"]
    old = load_checkpoint(os.path.join(task_dir, "tried", "1", "memsizer", "checkpoint_best.pt"))
    assert old["model"]["decoder.layers.0.self_attn.l_proj.weight"].shape[0] != 8
    assert "Loaded checkpoint" not in open(os.path.join(task_dir, "logs", "train.memsizer.log")
                                           ).read()


def test_train_args_reach_every_run_and_a_work_dir_keeps_them(tmp_path):
    from memsizer_fairseq.tools.compare.runner import Comparison
    from memsizer_fairseq.tools.compare.settings import TRANSLATION

    extra = ["--patience", "3", "--encoder-embed-dim", "32"]
    comparison = Comparison(TRANSLATION, str(tmp_path), tiny=True, train_args=extra,
                            frontier={"softmax-cross": FRONTIER_FLAGS.split()})
    for name in ("transformer", "memsizer", "frontier-softmax-cross"):
        args = comparison.training_run(name).args
        start = args.index("--patience")
        assert args[start:start + len(extra)] == extra
    comparison._save_state()
    with pytest.raises(ValueError, match="train_args"):
        Comparison(TRANSLATION, str(tmp_path), tiny=True, train_args=["--patience", "5"])


def test_a_larger_patience_resumes_training_and_redoes_the_measurements(tmp_path):
    import io

    from memsizer_fairseq.tools.compare.runner import Comparison, raised_patience
    from memsizer_fairseq.tools.compare.settings import TRANSLATION

    size = ["--encoder-embed-dim", "32"]
    first = Comparison(TRANSLATION, str(tmp_path), tiny=True, train_args=[*size, "--patience", "3"])
    first.state["stages"] = {"data": {"train_lines": 5}, "train": {"memsizer": {"updates": 40}},
                             "evaluate:memsizer": {"sacrebleu": 1.0}}
    first._save_state()
    # a smaller patience, or another change beside a larger one, is refused
    for train_args in ([*size, "--patience", "2"],
                       ["--encoder-embed-dim", "64", "--patience", "6"]):
        with pytest.raises(ValueError, match="train_args"):
            Comparison(TRANSLATION, str(tmp_path), tiny=True, train_args=train_args)
    out = io.StringIO()
    larger = Comparison(TRANSLATION, str(tmp_path), tiny=True,
                        train_args=[*size, "--patience", "6"], out=out)
    assert "--patience 3 -> 6: training resumes" in out.getvalue()
    assert set(larger.state["stages"]) == {"data"}  # trained on, then measured again
    assert larger.state["settings"]["train_args"] == [*size, "--patience", "6"]

    assert raised_patience(["--patience", "5"], ["--patience", "10"]) == (5, "10")
    assert raised_patience(["--patience", "5", "--lr", "1"], ["--lr", "1"]) == (5, "none")
    assert raised_patience(["--patience", "5"], ["--patience", "4"]) is None
    assert raised_patience(["--lr", "1"], ["--lr", "1", "--patience", "4"]) is None
