"""Checks of a raw text corpus before any expensive step (sentencepiece, binarizing, training).

Every file must exist, be readable, be UTF-8 (the first bad line is named) and hold at least one
non-empty line; the two sides of a parallel split must have the same number of lines. A refused
corpus raises :class:`CorpusError` (a ``ValueError``) whose message names the file and the fault.
"""
import os
from typing import Dict, Iterable, Sequence, Tuple


class CorpusError(ValueError):
    """A raw corpus file that cannot be used; the message names it and says why."""


def count_lines(path: str) -> int:
    """Lines of a UTF-8 text file; refuses a missing, unreadable, non-UTF-8 or empty file."""
    if not os.path.isfile(path):
        raise CorpusError(f"{path}: no such file")
    lines = nonempty = 0
    try:
        with open(path, "rb") as f:
            for lines, raw in enumerate(f, start=1):
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as error:
                    raise CorpusError(
                        f"{path}: line {lines} is not UTF-8 (byte {raw[error.start]:#04x} at "
                        f"column {error.start + 1})") from None
                nonempty += bool(text.strip())
    except OSError as error:
        raise CorpusError(f"{path}: cannot be read ({error.strerror or error})") from None
    if not nonempty:
        raise CorpusError(f"{path}: no text (the file is empty or holds only blank lines)")
    return lines


def check_corpus(files: Iterable[str], pairs: Sequence[Tuple[str, str]] = ()) -> Dict[str, int]:
    """Line counts of ``files`` after checking each; each ``(a, b)`` of ``pairs`` (parallel
    files, both among ``files``) must have as many lines as the other."""
    counts = {path: count_lines(path) for path in files}
    for first, second in pairs:
        if counts[first] != counts[second]:
            raise CorpusError(
                f"{first} has {counts[first]} lines but {second} has {counts[second]}: the two "
                "sides of a parallel corpus need one line per item each")
    return counts
