"""Run fairseq's own command-line tools (as subprocesses) with this plugin.

Used by the quick-start, the recipes' tiny modes, the comparison command and the end-to-end tests,
so that they all exercise exactly what a user types: ``fairseq-preprocess``, ``fairseq-train``,
``fairseq-generate`` ... with ``--user-dir`` pointing at the plugin. fairseq-train's records are
read by :mod:`.fairseq_logs`; the tools generate and score in-process (:mod:`.generation`).
"""
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Set, Tuple

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


def run_fairseq(
    tool: str,
    args: Sequence[str],
    log_path: Optional[str] = None,
    stdin: Optional[str] = None,
    env: Optional[Dict[str, str]] = None,
    timeout: Optional[float] = None,
    on_line: Optional[Callable[[str], None]] = None,
) -> str:
    """Run a fairseq tool; returns its combined output (also written to ``log_path``).

    ``on_line`` (when given) sees every output line as it appears, e.g. to drive a progress bar;
    the log file is then written as the tool runs, so a long run can be followed with ``tail``.
    """
    command = fairseq_command(tool, args)
    full_env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    if on_line is None:
        proc = subprocess.run(
            command, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env=full_env, timeout=timeout,
        )
        output, returncode = proc.stdout, proc.returncode
        if log_path:
            os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
            with open(log_path, "w") as f:
                f.write(output)
    else:
        output, returncode = _stream(command, full_env, log_path, on_line, stdin)
    if returncode != 0:
        tail = "\n".join(output.splitlines()[-40:])
        raise FairseqCommandError(
            f"fairseq-{tool} failed (exit {returncode}): {' '.join(command)}\n{tail}"
        )
    return output


_RUNNING: Set[subprocess.Popen] = set()


def stop_running_tools():
    """Kill the fairseq tools started with ``on_line`` that are still running (on Ctrl-C)."""
    for proc in list(_RUNNING):
        proc.kill()


def _stream(command, env, log_path, on_line, stdin) -> Tuple[str, int]:
    lines: List[str] = []
    log = None
    if log_path:
        os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
        log = open(log_path, "w")
    proc = subprocess.Popen(
        command, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    _RUNNING.add(proc)
    try:
        if stdin is not None:
            proc.stdin.write(stdin)
            proc.stdin.close()
        for line in proc.stdout:
            lines.append(line)
            if log:
                log.write(line)
                log.flush()
            on_line(line.rstrip("\n"))
        returncode = proc.wait()
    except BaseException:  # Ctrl-C or an error in on_line: do not leave the tool running
        proc.kill()
        proc.wait()
        raise
    finally:
        _RUNNING.discard(proc)
        if log:
            log.close()
    return "".join(lines), returncode


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


@dataclass
class GenerationResult:
    """What fairseq-generate printed: its score line's BLEU, its timing, its D- lines."""

    bleu: Optional[float]
    sentences: int
    tokens: int
    seconds: float
    hypotheses: Dict[int, str]
    output: str

    @property
    def sentences_per_second(self) -> float:
        return self.sentences / self.seconds if self.seconds > 0 else float("inf")


_BLEU = re.compile(r"Generate \S+ with beam=\d+: BLEU4? = ([\d.]+)")
_TIMING = re.compile(r"Translated ([\d,]+) sentences \(([\d,]+) tokens\) in ([\d.]+)s")


def generate(
    data: str, checkpoint: str, beam: int = 4, batch_size: int = 64, subset: str = "test",
    extra: Sequence[str] = (), log_path: Optional[str] = None,
) -> GenerationResult:
    """The ``fairseq-generate`` command a user types, its console output read back (for
    end-to-end tests of the command; the tools generate in-process: :mod:`.generation`)."""
    args = [
        data, "--user-dir", USER_DIR, "--path", checkpoint, "--gen-subset", subset,
        "--beam", beam, "--batch-size", batch_size, *extra,
    ]
    output = run_fairseq("generate", args, log_path)
    bleu, timing = _BLEU.search(output), _TIMING.search(output)
    hypotheses: Dict[int, str] = {}
    for line in output.splitlines():
        if line.startswith("D-"):
            ident, _score, text = (line.split("\t") + ["", ""])[:3]
            hypotheses.setdefault(int(ident[2:]), text)
    number = lambda text: int(text.replace(",", ""))  # noqa: E731
    return GenerationResult(
        bleu=float(bleu.group(1)) if bleu else None,
        sentences=number(timing.group(1)) if timing else len(hypotheses),
        tokens=number(timing.group(2)) if timing else 0,
        seconds=float(timing.group(3)) if timing else 0.0, hypotheses=hypotheses, output=output)
