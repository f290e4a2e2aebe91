"""Every change this plugin makes to fairseq's and torch's behaviour, named and installed here.

Always installed (they change nothing that fairseq's own checkpoints need):

* ``quiet_import``: fairseq imported without its tensorboardX notice and without turning the
  root logger to DEBUG;
* safe checkpoint loading (:mod:`.checkpoint_safety`): fairseq checkpoints read with torch's safe
  loader and an allowlist of the plain types they hold, a marker naming ``--user-dir`` in this
  plugin's checkpoints, the allowlist of a distributed resume's broadcast.

The fixes of fairseq bugs, which change what fairseq does for every model trained or decoded with
``--user-dir memsizer_fairseq``, the user's own ``--arch transformer`` included:
:func:`fix_table`.
All are installed unless the environment variable ``MEMSIZER_FAIRSEQ_FIXES`` says otherwise:
``none`` installs none, a comma-separated list of names installs those, ``all`` (the default)
every one. One log line names the fixes installed.

Each patch is idempotent and wraps fairseq's function (``functools.wraps``), keeping its behaviour
where the bug does not apply. The plugin's own classes need no patch: the models explain a
checkpoint that does not fit them by overriding ``load_state_dict``.
"""
import logging
import os
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

from .quiet_import import import_fairseq_quietly

__all__ = ["ENVIRONMENT_VARIABLE", "Fix", "fix_table", "install", "installed_fixes",
           "import_fairseq_quietly", "selected_fixes"]

ENVIRONMENT_VARIABLE = "MEMSIZER_FAIRSEQ_FIXES"
logger = logging.getLogger("memsizer_fairseq")


@dataclass(frozen=True)
class Fix:
    name: str
    changes: str  # what it changes for any fairseq run (the README's table)
    install: Callable[[], None]


def fix_table() -> Dict[str, Fix]:
    """Every fix, by name, in the order they are installed (imports fairseq)."""
    from . import checkpoint_safety, fixes

    table = (
        Fix("keep_last_batch",
            "the last, smaller batch is kept (fairseq-fixed drops it when the number of examples "
            "is not a multiple of --required-batch-size-multiple): generation, validation and "
            "training see every example, as in fairseq 0.12.2; a training run's batches change",
            fixes.keep_remainder_batches),
        Fix("same_batches_after_resume",
            "a run resumed in a later epoch trains on the batches the uninterrupted run trains "
            "on (those of epoch 1, reshuffled), instead of re-cutting them",
            fixes.same_batches_after_resume),
        Fix("replace_unk_alignment",
            "--replace-unk reads the hard alignment's word pairs instead of crashing; without "
            "--print-alignment hard it is refused with a message naming that flag",
            fixes.replace_unk_from_pairs),
        Fix("diverse_beam_groups",
            "--diverse-beam-groups no longer crashes (IndexError) from the second batch on",
            fixes.diverse_beam_search_by_position),
        Fix("data_buffer_exit",
            "a finished fairseq-train stops its data buffer thread before exiting, instead of "
            "aborting with exit 134 ('terminate called without an active exception')",
            fixes.stop_data_buffers_at_exit),
        Fix("patience_resume",
            "--patience counts across a resume (the checkpoint keeps the best score and the "
            "validations since it), so a resumed run stops where the uninterrupted one stops",
            fixes.patience_survives_resume),
        Fix("atomic_checkpoint_copies",
            "checkpoint_last.pt / checkpoint_best.pt are copied to a temporary name and renamed: "
            "a run killed while copying keeps a complete checkpoint to resume from",
            checkpoint_safety.atomic_checkpoint_copies),
    )
    return {fix.name: fix for fix in table}


_installed: Optional[Tuple[str, ...]] = None


def selected_fixes(value: Optional[str] = None) -> Tuple[str, ...]:
    """The fixes that ``MEMSIZER_FAIRSEQ_FIXES`` (or ``value``) asks for, in the table's order;
    an unknown name is refused naming the variable and the known names."""
    if value is None:
        value = os.environ.get(ENVIRONMENT_VARIABLE, "all")
    known = tuple(fix_table())
    text = value.strip().lower()
    if text in ("", "all"):
        return known
    if text == "none":
        return ()
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"{ENVIRONMENT_VARIABLE}={value!r}: unknown fix {', '.join(unknown)}; "
                         f"give all, none, or a comma-separated list of {', '.join(known)}")
    return tuple(name for name in known if name in names)


def installed_fixes() -> Tuple[str, ...]:
    """The fixes :func:`install` installed in this process (empty before it ran)."""
    return _installed or ()


def install():
    """Install safe loading and the selected fixes (idempotent; the plugin's ``__init__`` calls
    it), and log once which fixes were installed. fairseq is imported quietly first."""
    global _installed
    import_fairseq_quietly()
    from . import checkpoint_safety

    checkpoint_safety.install_safe_loading()
    if _installed is not None:
        return
    names = selected_fixes()
    table = fix_table()
    for name in names:
        table[name].install()
    _installed = names
    shown = ", ".join(names) if names else "none"
    logger.info(f"safe checkpoint loading on; fairseq fixes installed: {shown} "
                f"({ENVIRONMENT_VARIABLE}=none or a comma-separated list chooses; README)")
