"""Run fairseq's own command-line tools (as subprocesses) with this plugin.

Used by the quick-start, the recipes' tiny modes, the comparison command and the end-to-end tests,
so that they all exercise exactly what a user types: ``fairseq-preprocess``, ``fairseq-train``,
``fairseq-generate`` ... with ``--user-dir`` pointing at the plugin. fairseq-train's records are
read by :mod:`.fairseq_logs`; the tools generate and score in-process (:mod:`.generation`).
"""
import os
import shlex
import shutil
import subprocess
import sys
import threading
from typing import Callable, Dict, List, Optional, Sequence, Set

TOOLS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
USER_DIR = os.path.dirname(TOOLS_DIR)  # the plugin package (what --user-dir names)
REPO_ROOT = os.path.dirname(USER_DIR)

_TOOLS = {
    "preprocess": "fairseq_cli.preprocess",
    "train": "fairseq_cli.train",
    "generate": "fairseq_cli.generate",
    "interactive": "fairseq_cli.interactive",
    "validate": "fairseq_cli.validate",
    "eval-lm": "fairseq_cli.eval_lm",
}


class FairseqCommandError(RuntimeError):
    """A fairseq tool exited non-zero; the message holds the command and the end of its log."""


def fairseq_command(tool: str, args: Sequence[str]) -> List[str]:
    """``python -m fairseq_cli.<tool> ARGS`` for the interpreter running this code."""
    if tool not in _TOOLS:
        raise ValueError(f"unknown fairseq tool {tool!r}; one of {sorted(_TOOLS)}")
    return [sys.executable, "-m", _TOOLS[tool], *map(str, args)]


_RUNNING: Set[subprocess.Popen] = set()


def stop_running_tools():
    """Kill the fairseq tools still running (on Ctrl-C)."""
    for proc in list(_RUNNING):
        proc.kill()


def run_fairseq(
    tool: str,
    args: Sequence[str],
    log_path: Optional[str] = None,
    stdin: Optional[str] = None,
    env: Optional[Dict[str, str]] = None,
    on_line: Optional[Callable[[str], None]] = None,
) -> str:
    """Run a fairseq tool; returns its combined output, written to ``log_path`` as it appears
    (a long run can be followed with ``tail``); ``on_line`` (when given) sees every output line,
    e.g. to drive a progress bar. A failure raises :class:`FairseqCommandError`."""
    command = fairseq_command(tool, args)
    if log_path:
        os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
    lines: List[str] = []
    proc = subprocess.Popen(
        command, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1", **(env or {})))
    _RUNNING.add(proc)
    try:
        if stdin is not None:  # written beside the reading: neither side waits on a full pipe
            threading.Thread(target=lambda: (proc.stdin.write(stdin), proc.stdin.close()),
                             daemon=True).start()
        with open(log_path or os.devnull, "w") as log:
            for line in proc.stdout:
                lines.append(line)
                log.write(line)
                log.flush()
                if on_line:
                    on_line(line.rstrip("\n"))
        returncode = proc.wait()
    except BaseException:  # Ctrl-C or an error in on_line: do not leave the tool running
        proc.kill()
        proc.wait()
        raise
    finally:
        _RUNNING.discard(proc)
    if returncode != 0:
        tail = "".join(lines[-40:])
        raise FairseqCommandError(
            f"fairseq-{tool} failed (exit {returncode}): {' '.join(command)}\n{tail}")
    return "".join(lines)


def binarize(args: Sequence[str], dest: str, log_path: Optional[str] = None) -> str:
    """``fairseq-preprocess ARGS --destdir DEST`` in this process, written under a temporary name
    and renamed when complete, so that ``dest`` is either absent or whole; an earlier ``dest`` is
    replaced. Returns the log's path (fairseq's ``preprocess.log`` in ``dest``)."""
    import logging

    from fairseq import options
    from fairseq_cli import preprocess as fairseq_preprocess

    partial = dest.rstrip(os.sep) + ".partial"
    for path in (partial, dest):
        if os.path.isdir(path):
            shutil.rmtree(path)
    logger = logging.getLogger("fairseq_cli.preprocess")
    handlers = logger.handlers[:]
    from .generation import fairseq_logs

    try:
        parsed = options.get_preprocessing_parser().parse_args(
            [*map(str, args), "--destdir", partial])
        with fairseq_logs(os.devnull):  # main() writes them to DEST/preprocess.log
            fairseq_preprocess.main(parsed)
    except (Exception, SystemExit) as error:
        shutil.rmtree(partial, ignore_errors=True)
        raise FairseqCommandError(f"fairseq-preprocess {shlex.join(map(str, args))} failed: "
                                  f"{error}") from None
    finally:
        for handler in logger.handlers[len(handlers):]:  # the log file main() opened
            handler.close()
        logger.handlers = handlers
    os.replace(partial, dest)
    log = os.path.join(dest, "preprocess.log")
    if log_path:
        os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
        shutil.copyfile(log, log_path)
    return log


def preprocess(
    dest: str, trainpref: str, validpref: str, testpref: Optional[str] = None,
    src: str = "src", tgt: str = "tgt", joined: bool = True, workers: int = 1,
    extra: Sequence[str] = (),
) -> str:
    """Binarize a parallel corpus (``PREFIX.src`` / ``PREFIX.tgt`` files) into ``dest``."""
    args = [
        "--source-lang", src, "--target-lang", tgt, "--trainpref", trainpref,
        "--validpref", validpref, "--workers", workers,
    ]
    if testpref:
        args += ["--testpref", testpref]
    if joined:
        args.append("--joined-dictionary")
    return binarize(args + list(extra), dest)
