"""--status reads how far each training run has come from its fairseq-train log."""
import json

from memsizer_fairseq.tools.compare.__main__ import main
from memsizer_fairseq.tools.compare.progress import run_progress, task_status


def _write_log(path, bleus, early_stop=False):
    lines = []
    for i, bleu in enumerate(bleus, start=1):
        lines.append("2026-01-01 00:00:00 | INFO | train_inner | " + json.dumps(
            {"epoch": i, "loss": str(9 - i), "num_updates": str(150 * i - 50)}))
        lines.append("2026-01-01 00:00:00 | INFO | valid | " + json.dumps(
            {"epoch": i, "valid_loss": "7", "valid_bleu": str(bleu),
             "valid_num_updates": str(150 * i)}))
    if early_stop:
        lines.append("2026-01-01 00:00:00 | INFO | fairseq_cli.train | early stop since valid "
                     "performance hasn't improved for last 2 runs")
        lines.append("2026-01-01 00:00:00 | INFO | fairseq_cli.train | done training in 9.0 "
                     "seconds")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def test_a_run_reports_its_best_last_and_validations_since_the_best(tmp_path):
    log = tmp_path / "train.memsizer.log"
    _write_log(log, [1.0, 3.5, 3.0, 2.5], early_stop=True)
    run = run_progress(str(log), "translation")
    assert (run["updates"], run["best"], run["best_at"], run["last"]) == (600, 3.5, 300, 2.5)
    assert run["since_best"] == 2 and run["early_stop"] and run["finished"]
    # resumed with a larger --patience: the latest session counts
    log.write_text(log.read_text() + "$ fairseq-train data --patience 5\n")
    run = run_progress(str(log), "translation")
    assert not run["early_stop"] and not run["finished"]
    # perplexity: lower is better
    run = run_progress(str(log), "language_modeling")
    assert "best" not in run  # no perplexity in these records


def test_status_tables_every_run_and_plots_the_curves(tmp_path, capsys):
    work = tmp_path / "work"
    _write_log(work / "translation" / "logs" / "train.transformer.log", [2.0, 4.0, 5.0])
    _write_log(work / "translation" / "logs" / "train.memsizer.log", [1.0, 3.0, 2.0],
               early_stop=True)
    _write_log(work / "translation" / "logs" / "train.frontier-softmax-cross.log", [1.5])
    lines = task_status("translation", str(work / "translation"), str(tmp_path / "curves.png"))
    table = "\n".join(lines)
    assert "| Transformer | 450 | 5 | 450 | 5 | 0 | training or paused |" in table
    assert "| Memsizer | 450 | 3 | 300 | 2 | 1 | stopped early (patience) |" in table
    assert "| Memsizer softmax-cross | 150 |" in table
    assert (tmp_path / "curves.png").stat().st_size > 0

    assert main(["--tasks", "translation", "summarization", "--work-dir", str(work),
                 "--status"]) == 0
    out = capsys.readouterr().out
    assert "| Memsizer | 450 |" in out and "no training run" in out
    assert (work / "status_translation.png").is_file()
    assert not (work / "status_summarization.png").exists()
    assert sorted(p.name for p in work.iterdir()) == ["status_translation.png", "translation"]
