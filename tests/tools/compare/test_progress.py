"""--status reads how far each training run has come from its JSON log records and the work
directory's state.json."""
import json

from memsizer_fairseq.tools.compare.__main__ import main
from memsizer_fairseq.tools.compare.progress import run_progress, task_status


def _write_log(path, bleus):
    lines = []
    for i, bleu in enumerate(bleus, start=1):
        lines.append("2026-01-01 00:00:00 | INFO | train_inner | " + json.dumps(
            {"epoch": i, "loss": str(9 - i), "num_updates": str(150 * i - 50)}))
        lines.append("2026-01-01 00:00:00 | INFO | valid | " + json.dumps(
            {"epoch": i, "valid_loss": "7", "valid_bleu": str(bleu),
             "valid_num_updates": str(150 * i)}))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def test_a_run_reports_its_best_last_and_validations_since_the_best(tmp_path):
    log = tmp_path / "train.seed1.log"
    _write_log(log, [1.0, 3.5, 3.0, 2.5])
    # finished before its --max-update: fairseq stopped it early
    run = run_progress(str(log), "translation", {"updates": 600, "max_update": 1200})
    assert (run["updates"], run["best"], run["best_at"], run["last"]) == (600, 3.5, 300, 2.5)
    assert run["since_best"] == 2 and run["state"] == "stopped early (patience)"
    assert run_progress(str(log), "translation", {"updates": 600, "max_update": 600}
                        )["state"] == "finished"
    # resumed with a larger --patience: its step is forgotten until it finishes again
    assert run_progress(str(log), "translation")["state"] == "training or paused"
    # perplexity: lower is better
    assert "best" not in run_progress(str(log), "language_modeling")


def test_status_tables_every_run_and_plots_the_curves(tmp_path, capsys):
    work = tmp_path / "work"
    task = work / "small" / "translation"
    _write_log(task / "logs" / "transformer" / "train.seed1.log", [2.0, 4.0, 5.0])
    _write_log(task / "logs" / "memsizer" / "train.seed1.log", [1.0, 3.0, 2.0])
    _write_log(task / "logs" / "memsizer" / "train.seed2.log", [1.0, 2.0])
    _write_log(task / "logs" / "frontier-softmax-cross" / "train.seed1.log", [1.5])
    (task / "state.json").write_text(json.dumps({"settings": {}, "stages": {
        "train:memsizer@1": {"updates": 450, "max_update": 1200}}}))
    lines = task_status("translation", str(task), str(tmp_path / "curves.png"))
    table = "\n".join(lines)
    assert "| Transformer | 1 | 450 | 5 | 450 | 5 | 0 | training or paused |" in table
    assert "| Memsizer | 1 | 450 | 3 | 300 | 2 | 1 | stopped early (patience) |" in table
    assert "| Memsizer | 2 | 300 |" in table
    assert "| Memsizer softmax-cross | 1 | 150 |" in table
    assert (tmp_path / "curves.png").stat().st_size > 0

    assert main(["--tasks", "translation", "summarization", "--work-dir", str(work),
                 "--budget", "small", "--status"]) == 0
    out = capsys.readouterr().out
    assert "| Memsizer | 1 | 450 |" in out and "no training run" in out
    assert (work / "small" / "status_translation.png").is_file()
    assert not (work / "small" / "status_summarization.png").exists()
    assert sorted(p.name for p in (work / "small").iterdir()) == ["status_translation.png",
                                                                  "translation"]
