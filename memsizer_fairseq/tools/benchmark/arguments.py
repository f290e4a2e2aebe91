"""Argument types and checks shared by the benchmark commands.

Bad input ends a command with a two-line error -- what is wrong, naming the flag, and where the
options are listed -- and exit status 2, before any model is built or anything is measured: the
``type=`` functions refuse values that do not parse, the ``check_*`` functions the combinations
and paths that do not work (call them right after ``parse_args``).
"""
import argparse
import os
import re
import tempfile
from typing import Callable, List, Sequence

from ...config import positive_float, positive_int

__all__ = [
    "ArgumentParser",
    "check_device",
    "check_heads",
    "check_output_file",
    "check_output_folder",
    "dropout",
    "device",
    "length_pairs",
    "names",
    "non_negative_int",
    "positive_float",
    "positive_int",
    "positive_int_list",
    "vocabulary_size",
]


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser; its errors are two lines instead of the whole usage and the error."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n{self.prog} --help lists the options\n")


def positive_int_list(value) -> List[int]:
    """Comma-separated positive integers, e.g. ``512,1024,2048``."""
    try:
        return [positive_int(part.strip()) for part in str(value).split(",")]
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive integers, got {value!r}"
        ) from None


def length_pairs(value) -> List[List[int]]:
    """Comma-separated ``source:target`` pairs of positive lengths, e.g. ``30:30,400:60``."""
    try:
        pairs = []
        for part in str(value).split(","):
            source, target = part.strip().split(":")
            pairs.append([positive_int(source.strip()), positive_int(target.strip())])
        return pairs
    except (argparse.ArgumentTypeError, ValueError):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated source:target pairs of positive integers, got {value!r}"
        ) from None


def non_negative_int(value) -> int:
    if str(value).strip() == "0":
        return 0
    try:
        return positive_int(value)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value!r}") from None


def vocabulary_size(value) -> int:
    """A dictionary size: fairseq's 4 special symbols and at least one word."""
    number = positive_int(value)
    if number < 5:
        raise argparse.ArgumentTypeError(
            f"expected at least 5 (4 special symbols and a word), got {value!r}"
        )
    return number


def dropout(value) -> float:
    """A probability in [0, 1)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not 0.0 <= number < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {value!r}")
    return number


def device(value) -> str:
    """``cpu``, ``cuda`` or ``cuda:N``."""
    text = str(value).strip()
    if not re.fullmatch(r"cpu|cuda(:[0-9]+)?", text):
        raise argparse.ArgumentTypeError(f"expected cpu, cuda or cuda:N, got {value!r}")
    return text


def names(allowed: Sequence[str]) -> Callable[[str], List[str]]:
    """A ``type=`` for a comma-separated, non-empty list of names out of ``allowed``."""

    def parse(value) -> List[str]:
        chosen = [name.strip() for name in str(value).split(",") if name.strip()]
        unknown = [name for name in chosen if name not in allowed]
        if not chosen or unknown:
            raise argparse.ArgumentTypeError(
                f"expected a comma list of {', '.join(allowed)}, got {value!r}"
            )
        return chosen

    return parse


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


def _check_folder(parser, flag: str, folder: str, missing: str):
    """``folder`` exists (else the error ``missing``) and takes a new file."""
    if not os.path.isdir(folder):
        parser.error(f"argument {flag}: {missing}")
    try:
        tempfile.NamedTemporaryFile(dir=folder).close()
    except OSError:
        parser.error(f"argument {flag}: the folder {folder} is not writable")


def check_output_file(parser, flag: str, path: str):
    """A file the command writes: its folder exists and takes a new file."""
    if os.path.isdir(path):
        parser.error(f"argument {flag}: {path} is a folder, expected a file name")
    folder = os.path.dirname(os.path.abspath(path))
    _check_folder(parser, flag, folder, f"the folder {folder} does not exist")


def check_output_folder(parser, flag: str, path: str):
    """A folder the command writes into, created with its missing parents: the nearest existing
    one on the way is a folder that takes new files."""
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    _check_folder(parser, flag, existing, f"{existing} is not a folder")
