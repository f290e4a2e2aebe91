"""fairseq command-line flags as ordered dicts, shared by the recipes, compare and the tests.

``{"--beam": 4, "--cpu": True}`` renders as ``--beam 4 --cpu``; an override's ``None`` drops a
flag, so a variant (a recipe's ``--tiny`` mode, one comparison's model) is its base plus a diff.
"""
from typing import Dict, List, Optional, Union

Value = Union[None, bool, int, float, str]
Args = Dict[str, Value]  # "--flag": value; True: a switch; None (in an override): drop the flag


def merge_args(base: Args, override: Optional[Args] = None) -> Args:
    """``base`` updated by ``override`` (a ``None`` value removes the flag); order is kept."""
    merged = dict(base)
    for flag, value in (override or {}).items():
        if value is None:
            merged.pop(flag, None)
        else:
            merged[flag] = value
    return merged


def render_args(args: Args) -> List[str]:
    """``{"--beam": 4, "--cpu": True}`` -> ``["--beam", "4", "--cpu"]``."""
    out: List[str] = []
    for flag, value in args.items():
        if value is None or value is False:
            continue
        if value is True:
            out.append(flag)
        else:
            out += [flag, str(value)]
    return out
