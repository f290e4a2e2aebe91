"""Run fairseq's own command-line tools (each in a process of its own) with this plugin.

Used by the quick-start, the recipes' tiny modes, the comparison command and the end-to-end tests,
so that they all exercise exactly what a user types: ``fairseq-preprocess``, ``fairseq-train``,
``fairseq-generate`` ... with ``--user-dir`` pointing at the plugin. fairseq-train's records are
read by :mod:`.fairseq_logs`; the tools generate and score in-process (:mod:`.generation`).

Each tool runs as ``python -m fairseq_cli.<tool>`` runs it (its arguments, environment, output
and exit status its own; one exception: with ``MEMSIZER_FAIRSEQ_FIXES=none`` fairseq-train's
abort at exit, which the default ``data_buffer_exit`` fix prevents, does not happen), in a
process forked from a server that has imported torch and fairseq once (multiprocessing's
``forkserver``): a tiny training run starts in a fraction of a second
instead of the 4 s that every new interpreter spends importing them. The plugin itself is not
preloaded: each run imports it through ``--user-dir`` with its own ``MEMSIZER_FAIRSEQ_FIXES``.
"""
import multiprocessing
import os
import shlex
import shutil
import subprocess
import sys
import threading
import types
from typing import Callable, Dict, List, Optional, Sequence

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


# What the server imports once: fairseq as a new interpreter imports it (its import configures
# the root logger) and the command-line modules.
_PRELOAD = ["fairseq", *_TOOLS.values()]

# Runs in the forked process, given ``output`` (and ``source``: stdin) pipes, ``module``, ``argv``
# and ``environ``. fairseq-train configures logging before it imports fairseq; the others find
# fairseq's import-time configuration, as in a new interpreter.
_CHILD = """
import atexit, io, logging, os, runpy, signal, sys
os.dup2(output.fileno(), 1)
os.dup2(output.fileno(), 2)
output.close()
if source is not None:
    os.dup2(source.fileno(), 0)
    source.close()
    sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding="utf-8")
sys.stdout.reconfigure(line_buffering=True, write_through=True)
os.environ.clear()
os.environ.update(environ)
signal.signal(signal.SIGINT, signal.default_int_handler)
signal.signal(signal.SIGTERM, signal.SIG_DFL)
if "OMP_NUM_THREADS" in environ:
    import torch
    torch.set_num_threads(int(environ["OMP_NUM_THREADS"]))
if module == "fairseq_cli.train":
    root = logging.getLogger()
    for handler in root.handlers[:]:
        root.removeHandler(handler)
    root.setLevel(logging.WARNING)
sys.argv = [module, *argv]
sys.modules.pop(module)  # preloaded; run again as __main__
try:
    runpy.run_module(module, run_name="__main__", alter_sys=True)
finally:
    atexit._run_exitfuncs()
"""


class _Forked:
    """A fairseq tool in a process forked from the preloaded server; what :func:`run_fairseq`
    uses of ``subprocess.Popen``."""

    def __init__(self, module: str, args: List[str], env: Dict[str, str], stdin: bool):
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(_PRELOAD)
        read, write = context.Pipe(duplex=False)
        source, feed = context.Pipe(duplex=False) if stdin else (None, None)
        self._process = context.Process(target=exec, args=(_CHILD, {
            "output": write, "source": source, "module": module, "argv": args, "environ": env}))
        # the child needs nothing of this program's main module (multiprocessing would import
        # it again in every child, as it does for "spawn"): the tool's module is its main
        main = sys.modules["__main__"]
        sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            self._process.start()
        finally:
            sys.modules["__main__"] = main
        self.stdout = open(os.dup(read.fileno()), encoding="utf-8")
        self.stdin = open(os.dup(feed.fileno()), "w", encoding="utf-8") if stdin else None
        for end in (read, write, source, feed):
            if end is not None:
                end.close()

    def wait(self) -> int:
        self._process.join()
        self.stdout.close()
        return self._process.exitcode

    def kill(self):
        self._process.kill()


def _start(command: List[str], env: Dict[str, str], stdin: bool):
    if "forkserver" in multiprocessing.get_all_start_methods():
        return _Forked(command[2], command[3:], env, stdin)
    return subprocess.Popen(command, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


_RUNNING: set = set()


def stop_running_tools():
    """Kill the fairseq tools still running (on Ctrl-C)."""
    for proc in list(_RUNNING):
        proc.kill()


def run_fairseq(
    tool: str,
    args: Sequence[str],
    log_path: Optional[str] = None,
    stdin: Optional[str] = None,
    env: Optional[Dict[str, Optional[str]]] = None,
    on_line: Optional[Callable[[str], None]] = None,
) -> str:
    """Run a fairseq tool; returns its combined output, written to ``log_path`` as it appears
    (a long run can be followed with ``tail``); ``on_line`` (when given) sees every output line,
    e.g. to drive a progress bar; ``env`` adds to this process's environment (a value of None
    removes the variable). A failure raises :class:`FairseqCommandError`."""
    command = fairseq_command(tool, args)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    if log_path:
        os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
    lines: List[str] = []
    proc = _start(command, {k: v for k, v in env.items() if v is not None}, stdin is not None)
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
