"""What --user-dir loads never imports the tools, nor their plotting library."""
import subprocess
import sys

from memsizer_fairseq.tools.toolkit.fairseq_cli import REPO_ROOT

PROBE = """
import sys
import memsizer_fairseq
from fairseq import models, tasks
from memsizer_fairseq import compat, config, layers, ops
from memsizer_fairseq.models import attention, lm, presets, transformer
print(sorted(m for m in sys.modules
             if m.startswith("memsizer_fairseq.tools") or m.split(".")[0] == "matplotlib"))
"""


def test_the_plugin_imports_no_tool():
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO_ROOT, check=True,
                         capture_output=True, text=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
