"""Argument types and checks shared by the benchmark commands.

Bad input ends a command with a two-line error -- what is wrong, naming the flag, and where the
options are listed -- and exit status 2, before any model is built or anything is measured: the
``type=`` functions refuse values that do not parse, the ``check_*`` functions the combinations
and paths that do not work (call them right after ``parse_args``).
"""
import argparse
import functools
import os
import re
import tempfile
from typing import Callable, List, Sequence

from ...config import positive_float, positive_int  # noqa: F401  (types of the commands)


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser; its errors are two lines instead of the whole usage and the error."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n{self.prog} --help lists the options\n")


def _expecting(what: str):
    """A ``type=`` made of ``parse``: a value it cannot parse (``ValueError``, ``TypeError`` or
    argparse's type error) is refused with ``expected <what>, got <value>``."""

    def decorate(parse):
        @functools.wraps(parse)
        def typed(value):
            try:
                return parse(value)
            except (argparse.ArgumentTypeError, TypeError, ValueError):
                raise argparse.ArgumentTypeError(f"expected {what}, got {value!r}") from None

        return typed

    return decorate


@_expecting("comma-separated positive integers")
def positive_int_list(value) -> List[int]:
    """Comma-separated positive integers, e.g. ``512,1024,2048``."""
    return [positive_int(part.strip()) for part in str(value).split(",")]


@_expecting("comma-separated source:target pairs of positive integers")
def length_pairs(value) -> List[List[int]]:
    """Comma-separated ``source:target`` pairs of positive lengths, e.g. ``30:30,400:60``."""
    pairs = [part.strip().split(":") for part in str(value).split(",")]
    return [[positive_int(source.strip()), positive_int(target.strip())]
            for source, target in pairs]


@_expecting("an integer >= 0")
def non_negative_int(value) -> int:
    return 0 if str(value).strip() == "0" else positive_int(value)


def vocabulary_size(value) -> int:
    """A dictionary size: fairseq's 4 special symbols and at least one word."""
    number = positive_int(value)
    if number < 5:
        raise argparse.ArgumentTypeError(
            f"expected at least 5 (4 special symbols and a word), got {value!r}"
        )
    return number


@_expecting("a number in [0, 1)")
def dropout(value) -> float:
    """A probability in [0, 1)."""
    number = float(value)
    if not 0.0 <= number < 1.0:
        raise ValueError(number)
    return number


@_expecting("cpu, cuda or cuda:N")
def device(value) -> str:
    """``cpu``, ``cuda`` or ``cuda:N``."""
    text = str(value).strip()
    if not re.fullmatch(r"cpu|cuda(:[0-9]+)?", text):
        raise ValueError(text)
    return text


def names(allowed: Sequence[str]) -> Callable[[str], List[str]]:
    """A ``type=`` for a comma-separated, non-empty list of names out of ``allowed``."""

    @_expecting(f"a comma list of {', '.join(allowed)}")
    def parse(value) -> List[str]:
        chosen = [name.strip() for name in str(value).split(",") if name.strip()]
        if not chosen or not set(chosen) <= set(allowed):
            raise ValueError(value)
        return chosen

    return parse


def cuda_device_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def check_heads(parser, dim: int, heads: int, note: str = ""):
    """Softmax attention splits the width into equal heads: ``--heads`` must divide ``--dim``."""
    if dim % heads:
        parser.error(f"argument --heads: {heads} does not divide --dim {dim}{note}")


def check_device(parser, name: str, cuda_device_count: Callable[[], int]):
    """``--device cuda[:N]`` needs that CUDA device; ``cuda_device_count`` is asked only then."""
    if not name.startswith("cuda"):
        return
    count = cuda_device_count()
    index = int(name.partition(":")[2] or 0)
    if count == 0:
        parser.error(f"argument --device: {name}, but no CUDA device is available")
    if index >= count:
        parser.error(f"argument --device: {name}, but there are only {count} CUDA device(s)")


def check_output(parser, flag: str, path: str, folder: bool = False):
    """A file the command writes (its folder exists) or, with ``folder``, a folder it writes
    into, created with its missing parents (the nearest existing one on the way is a folder);
    either way that folder takes a new file."""
    if folder:
        existing = os.path.abspath(path)
        while not os.path.exists(existing):
            existing = os.path.dirname(existing)
        missing = f"{existing} is not a folder"
    else:
        if os.path.isdir(path):
            parser.error(f"argument {flag}: {path} is a folder, expected a file name")
        existing = os.path.dirname(os.path.abspath(path))
        missing = f"the folder {existing} does not exist"
    if not os.path.isdir(existing):
        parser.error(f"argument {flag}: {missing}")
    try:
        tempfile.NamedTemporaryFile(dir=existing).close()
    except OSError:
        parser.error(f"argument {flag}: the folder {existing} is not writable")
