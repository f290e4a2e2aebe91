"""The fairseq fixes are named, chosen by MEMSIZER_FAIRSEQ_FIXES (by default only the fixes of
crashes), logged when the plugin loads; safe checkpoint loading stays on whatever it says."""
import json
import logging
import os
import re
import subprocess
import sys

import pytest

from memsizer_fairseq import compat
from memsizer_fairseq.tools.toolkit.fairseq_cli import REPO_ROOT, USER_DIR

TABLE = compat.fix_table()
NAMES = tuple(TABLE)
CRASHES = ("replace_unk_alignment", "data_buffer_exit", "atomic_checkpoint_copies")
RESULTS = ("keep_last_batch", "same_batches_after_resume", "diverse_beam_groups",
           "no_repeat_ngram", "patience_resume")


def current(target):
    owner, name = compat._owner_and_name(target)
    return getattr(owner, name)


def test_only_the_fixes_of_crashes_are_on_by_default():
    assert tuple(name for name, fix in TABLE.items() if fix.default) == CRASHES
    assert set(NAMES) == set(CRASHES) | set(RESULTS)


@pytest.mark.parametrize("value, want", [
    ("", CRASHES), ("default", CRASHES), (" Default ", CRASHES), ("all", NAMES), ("none", ()),
    ("patience_resume, keep_last_batch", ("keep_last_batch", "patience_resume")),
    ("default,keep_last_batch", ("keep_last_batch", *CRASHES)),
    ("default,keep_last_batch,same_batches_after_resume,diverse_beam_groups,no_repeat_ngram,"
     "patience_resume", NAMES),
])
def test_the_variable_chooses_the_fixes(value, want):
    assert compat.selected_fixes(value) == tuple(name for name in NAMES if name in want)


def test_unset_means_default(monkeypatch):
    monkeypatch.delenv(compat.ENVIRONMENT_VARIABLE, raising=False)
    assert compat.selected_fixes() == CRASHES
    monkeypatch.setenv(compat.ENVIRONMENT_VARIABLE, "all")
    assert compat.selected_fixes() == NAMES


@pytest.mark.parametrize("value, message", [
    ("keep_last_batch,fast_beams", "MEMSIZER_FAIRSEQ_FIXES='keep_last_batch,fast_beams': "
                                   "unknown fix fast_beams; give default, all, none, or a "
                                   "comma-separated list of fix names (and default): "
                                   + ", ".join(NAMES)),
    ("none,keep_last_batch", "MEMSIZER_FAIRSEQ_FIXES='none,keep_last_batch': none stands alone"),
])
def test_a_bad_value_is_refused_naming_the_variable_before_anything_is_installed(value, message):
    before = {target: current(target) for fix in TABLE.values() for target in fix.patches}
    with pytest.raises(ValueError) as info:
        compat.install(value)
    assert str(info.value) == message
    assert before == {target: current(target) for target in before}


@pytest.mark.parametrize("name", NAMES)
def test_each_fix_replaces_only_what_it_declares_and_only_for_a_while(name):
    everything = {target for fix in TABLE.values() for target in fix.patches}
    outside = {target: current(target) for target in everything}
    already = name in compat.installed_fixes()
    with compat.fixes_installed(name) as installed:
        assert name in installed and name in compat.installed_fixes()
        changed = {target for target in everything if current(target) is not outside[target]}
        if not already:
            assert changed and changed <= set(TABLE[name].patches), changed
    assert outside == {target: current(target) for target in everything}
    assert (name in compat.installed_fixes()) == already


def test_the_log_line_names_the_fixes_installed_and_those_left_out(monkeypatch, caplog):
    monkeypatch.setattr(compat, "_installed", ())
    monkeypatch.setattr(compat, "_logged", None)
    with caplog.at_level(logging.INFO, logger="memsizer_fairseq"):
        compat.install("none")
        compat.install("none")  # nothing new: no second line
    lines = [r.getMessage() for r in caplog.records if "fairseq fixes" in r.getMessage()]
    assert lines == ["safe checkpoint loading on; fairseq fixes installed: none; not installed: "
                     f"{', '.join(NAMES)} (MEMSIZER_FAIRSEQ_FIXES=all, none, or a list of names "
                     "chooses; README)"]


# fairseq-train --user-dir ... --help in a new interpreter with nothing set; then which of
# fairseq's attributes the plugin replaced, and whether safe loading is on.
PROBE = r"""
import argparse, importlib, json, runpy, sys
targets = json.loads(sys.argv[1])

def current(target):
    module, path = target.split(":")
    owner = importlib.import_module(module)
    for part in path.split("."):
        owner = getattr(owner, part)
    return owner

before = {target: current(target) for target in targets}
sys.argv = ["fairseq-train", "--user-dir", sys.argv[2], "--help"]
try:
    runpy.run_module("fairseq_cli.train", run_name="__main__", alter_sys=True)
except SystemExit:
    pass
import torch
from memsizer_fairseq import compat
print("PROBE", json.dumps({
    "replaced": sorted(t for t in targets if current(t) is not before[t]),
    "installed": compat.installed_fixes(),
    "safe": argparse.Namespace in torch.serialization.get_safe_globals()}))
"""


def test_fairseq_commands_install_and_log_the_default_fixes():
    targets = sorted({target for fix in TABLE.values() for target in fix.patches})
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(targets), USER_DIR],
                          capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    probe = json.loads(proc.stdout.split("PROBE ", 1)[1])
    assert probe == {"replaced": sorted({t for name in CRASHES for t in TABLE[name].patches}),
                     "installed": list(CRASHES), "safe": True}
    lines = [line for line in (proc.stdout + proc.stderr).splitlines()
             if "fairseq fixes installed" in line]
    assert len(lines) == 1, lines
    assert (f"fairseq fixes installed: {', '.join(CRASHES)}; not installed: {', '.join(RESULTS)}"
            in lines[0])


def test_every_fix_says_what_it_changes():
    for fix in TABLE.values():
        assert fix.changes and callable(fix.install) and fix.patches


def test_the_readme_says_what_each_fix_changes_and_whether_it_is_on_by_default():
    """The README's table has one row per fix, in the table's order."""
    readme = open(os.path.join(REPO_ROOT, "README.md")).read()
    section = readme[readme.index("### What the plugin changes in fairseq"):]
    rows = re.findall(r"^\| `(\w+)` \| (yes|no) \| (.+) \|$", section.split("\n### ")[0],
                      re.MULTILINE)
    assert tuple(name for name, _, _ in rows) == NAMES
    assert all((on == "yes") == TABLE[name].default for name, on, _ in rows)
    assert all(len(text) > 40 for _, _, text in rows)
