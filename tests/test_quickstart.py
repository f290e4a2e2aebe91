"""The quick-start (examples/quickstart/quickstart.py): refuses bad flags by name before any
work, and runs end to end in a small setting, showing each training's progress and printing the
BLEU table and the decoding profile (the Transformer's state grows with the output length,
Memsizer's does not)."""
import importlib.util
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _quickstart():
    spec = importlib.util.spec_from_file_location(
        "quickstart", os.path.join(ROOT, "examples", "quickstart", "quickstart.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("flags, named", [
    (["--updates", "0"], "--updates"),
    (["--train-size", "ten"], "--train-size"),
    (["--test-size", "2"], "--test-size"),
])
def test_bad_flags_are_refused_by_name(flags, named, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        _quickstart().main([*flags, "--workdir", str(tmp_path / "w")])
    assert stop.value.code == 2
    assert named in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


def test_unwritable_workdir_is_refused(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SystemExit) as stop:
        _quickstart().main(["--workdir", str(blocker / "w")])
    assert stop.value.code == 2
    assert "--workdir" in capsys.readouterr().err


def test_runs_end_to_end_and_profiles_decoding(tmp_path, capsys):
    work = tmp_path / "w"
    _quickstart().main(["--workdir", str(work), "--updates", "20", "--train-size", "300",
                        "--test-size", "19"])
    captured = capsys.readouterr()
    out = captured.out
    for arch in ("memsizer_transformer", "transformer"):  # a progress bar per training
        assert re.search(rf"train: {arch}: .*\b20/20\b", captured.err), captured.err[-2000:]
    assert "19 test sentences, 20 updates each" in out
    table = {row.split("|")[1].strip(): row.split("|")[2:-1] for row in out.splitlines()
             if row.startswith("| memsizer_transformer |") or row.startswith("| transformer |")}
    assert sorted(table) == ["memsizer_transformer", "transformer"]
    assert all(0 <= float(cells[0]) <= 100 and float(cells[1]) > 0 for cells in table.values())
    rows = [line.split("|")[1:-1] for line in out.splitlines()
            if line.startswith("| ") and line.split("|")[1].strip().isdigit()]
    assert [int(row[0]) for row in rows] == [16, 32, 64, 128, 256]
    transformer_state = [float(row[4]) for row in rows]
    memsizer_state = [float(row[5]) for row in rows]
    assert transformer_state[-1] > 8 * transformer_state[0]  # grows with the output
    assert max(memsizer_state) == pytest.approx(min(memsizer_state))  # flat
    assert (work / "decoding.png").stat().st_size > 0
