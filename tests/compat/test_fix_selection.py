"""The fairseq fixes are named, logged when the plugin loads, and chosen by
MEMSIZER_FAIRSEQ_FIXES; safe checkpoint loading stays on whatever it says."""
import subprocess
import sys

import pytest

from memsizer_fairseq import compat
from memsizer_fairseq.tools.toolkit.fairseq_cli import REPO_ROOT, USER_DIR

NAMES = tuple(compat.fix_table())

PROBE = """
import argparse, torch
import memsizer_fairseq
from memsizer_fairseq import compat
from fairseq import search, trainer, utils
from fairseq.data import data_utils, iterators
from fairseq.file_io import PathManager
patched = {
    "keep_last_batch": getattr(data_utils.batch_by_size, "keeps_remainder", False),
    "same_batches_after_resume": getattr(
        __import__("fairseq.tasks", fromlist=["FairseqTask"]).FairseqTask.get_batch_iterator,
        "memsizer_same_batches", False),
    "replace_unk_alignment": getattr(utils.replace_unk, "takes_word_pairs", False),
    "diverse_beam_groups": getattr(search.DiverseBeamSearch.step, "by_position", False),
    "data_buffer_exit": getattr(iterators.BackgroundConsumer.__init__, "stoppable", False),
    "patience_resume": getattr(trainer.Trainer.save_checkpoint, "saves_patience", False),
    "atomic_checkpoint_copies": getattr(PathManager.copy, "memsizer_atomic", False),
}
safe = argparse.Namespace in torch.serialization.get_safe_globals()
print(sorted(n for n, p in patched.items() if p), safe, compat.installed_fixes())
"""


def probe(value):
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": REPO_ROOT}
    if value is not None:
        env["MEMSIZER_FAIRSEQ_FIXES"] = value
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env,
                          cwd=REPO_ROOT)
    return proc


@pytest.mark.parametrize("value, want", [
    (None, NAMES), ("all", NAMES), ("none", ()),
    ("patience_resume, keep_last_batch", ("keep_last_batch", "patience_resume")),
])
def test_the_variable_chooses_the_fixes_and_safe_loading_stays(value, want):
    proc = probe(value)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"{sorted(want)} True {tuple(n for n in NAMES if n in want)}"


def test_an_unknown_fix_is_refused_naming_the_variable_and_the_names():
    proc = probe("keep_last_batch,fast_beams")
    assert proc.returncode != 0
    assert ("MEMSIZER_FAIRSEQ_FIXES='keep_last_batch,fast_beams': unknown fix fast_beams"
            in proc.stderr)
    assert "keep_last_batch, same_batches_after_resume" in proc.stderr


def test_fairseq_commands_log_the_fixes_installed():
    env = {"PATH": "/usr/bin:/bin", "MEMSIZER_FAIRSEQ_FIXES": "none"}
    for value, shown in (("none", "none"), ("all", ", ".join(NAMES))):
        env["MEMSIZER_FAIRSEQ_FIXES"] = value
        proc = subprocess.run([sys.executable, "-m", "fairseq_cli.train", "--user-dir", USER_DIR,
                               "--help"], capture_output=True, text=True, env=env)
        assert proc.returncode == 0, proc.stderr
        lines = [line for line in (proc.stdout + proc.stderr).splitlines()
                 if "fairseq fixes installed" in line]
        assert len(lines) == 1 and f"fairseq fixes installed: {shown} (" in lines[0], lines


def test_every_fix_says_what_it_changes():
    for fix in compat.fix_table().values():
        assert fix.changes and callable(fix.install)


def test_the_readme_says_what_each_fix_changes():
    """The README's table has one row per fix, in the table's order."""
    import os
    import re

    readme = open(os.path.join(REPO_ROOT, "README.md")).read()
    section = readme[readme.index("### What the plugin changes in fairseq"):]
    rows = re.findall(r"^\| `(\w+)` \| (.+) \|$", section.split("\n### ")[0], re.MULTILINE)
    assert tuple(name for name, _ in rows) == NAMES
    assert all(len(text) > 40 for _, text in rows)
