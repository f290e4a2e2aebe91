"""scripts/gpu_check.sh with a stand-in interpreter: without CUDA it exits 0 saying so; with one
it names the card, runs every step under its timeout, and reports a failing or timed-out step
(exit 1) instead of hiding it."""
import os
import stat
import subprocess

from memsizer_fairseq.tools.toolkit.fairseq_cli import REPO_ROOT as ROOT

SCRIPT = os.path.join(ROOT, "scripts", "gpu_check.sh")

# A stand-in for the venv's python: answers the script's -c questions, passes the CUDA tests,
# hangs in the Triton tests, writes a report for the fp16 benchmark and fails the bf16 one.
FAKE_PYTHON = r"""#!/usr/bin/env bash
if [ "$1" = "-c" ]; then
    case "$2" in
        *is_available*) exit "${FAKE_CUDA_RC:-0}" ;;
        *get_device_name*) echo "Fake GPU 141GB" ;;
        *) echo "0.0-fake" ;;
    esac
    exit 0
fi
out=""; dtype=""; prev=""
for a in "$@"; do
    [ "$prev" = "--out" ] && out="$a"
    [ "$prev" = "--dtype" ] && dtype="$a"
    prev="$a"
done
case "$2 $3" in
    *test_fla_forms*) [ -z "${TRITON_INTERPRET:-}" ] && sleep 30; echo "interpreter on"; exit 0 ;;
    pytest*) echo "7 passed in 1.00s"; exit 0 ;;
    memsizer_fairseq.tools.benchmark*)
        [ "$dtype" = bf16 ] && { echo "out of memory"; exit 3; }
        mkdir -p "$out"
        printf '### Targets\n\n| check | measured |\n' > "$out/benchmark.md"
        exit 0 ;;
esac
exit 9
"""


def _run(tmp_path, **env):
    python = tmp_path / "python"
    python.write_text(FAKE_PYTHON)
    python.chmod(python.stat().st_mode | stat.S_IEXEC)
    environ = dict(os.environ, GPU_CHECK_PYTHON=str(python), GPU_CHECK_TRITON_TESTS_S="1",
                   TRITON_INTERPRET="1", **env)
    return subprocess.run(["bash", SCRIPT, str(tmp_path / "out")], capture_output=True,
                          text=True, timeout=60, env=environ)


def test_without_cuda_there_is_nothing_to_check(tmp_path):
    proc = _run(tmp_path, FAKE_CUDA_RC="1")
    assert proc.returncode == 0, proc.stderr
    assert "no CUDA device" in proc.stdout and "nothing to check" in proc.stdout


def test_every_step_is_reported_with_the_card_and_failures_are_not_hidden(tmp_path):
    proc = _run(tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    summary = (tmp_path / "out" / "summary.txt").read_text()
    assert "gpu_check summary: Fake GPU 141GB" in summary
    assert "CUDA tests: ok" in summary
    # run without Triton's interpreter (so it hangs here) and stopped by its timeout
    assert "Triton tests (fla kernels on the GPU): TIMED OUT after 1 s" in summary
    assert "benchmark fp16: ok" in summary
    assert "benchmark bf16: FAILED (exit 3" in summary
    assert "### Targets" not in summary and "| check | measured |" in summary
    assert "benchmark bf16: no report" in summary
    assert "a step FAILED" in summary
