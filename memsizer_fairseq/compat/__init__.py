"""Every change this plugin makes to fairseq's and torch's behaviour, named and installed here.

Always installed (they change nothing that fairseq's own checkpoints need):

* ``quiet_import``: fairseq imported without its tensorboardX notice and without turning the
  root logger to DEBUG;
* safe checkpoint loading (:mod:`.checkpoint_safety`): fairseq checkpoints read with torch's safe
  loader and an allowlist of the plain types they hold, a marker naming ``--user-dir`` in this
  plugin's checkpoints, the allowlist of a distributed resume's broadcast.

The fixes of fairseq bugs (:func:`fix_table`) patch fairseq itself, so they apply to every model
trained or decoded with ``--user-dir memsizer_fairseq``, the user's own ``--arch transformer``
included. By default only the fixes of crashes are installed (a run that works computes exactly
what it computes without the plugin); the fixes that change what a working run computes
(its batches, a resumed run, diverse beam search's penalties, n-gram blocking) are installed
when asked for. The environment variable ``MEMSIZER_FAIRSEQ_FIXES`` chooses
(:func:`selected_fixes`): unset or ``default``: the default fixes; ``all``: every fix; ``none``:
none; or a comma-separated list of fix names, which may include ``default``
(``default,keep_last_batch``). One log line names the fixes installed and those left out.

Each patch is idempotent and wraps fairseq's function (``functools.wraps``), keeping its behaviour
where the bug does not apply. The plugin's own classes need no patch: the models explain a
checkpoint that does not fit them by overriding ``load_state_dict``.
"""
import contextlib
import importlib
import logging
import os
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, Optional, Tuple

from .quiet_import import import_fairseq_quietly

__all__ = ["ENVIRONMENT_VARIABLE", "Fix", "fix_table", "install", "installed_fixes",
           "fixes_installed", "import_fairseq_quietly", "selected_fixes"]

ENVIRONMENT_VARIABLE = "MEMSIZER_FAIRSEQ_FIXES"
logger = logging.getLogger("memsizer_fairseq")


@dataclass(frozen=True)
class Fix:
    name: str
    default: bool  # installed when nothing is asked for: it only turns a crash into a result
    changes: str  # what it changes for any fairseq run (the README's table)
    install: Callable[[], None]
    patches: Tuple[str, ...]  # what it may replace in fairseq, as "module:attribute.path"


def fix_table() -> Dict[str, Fix]:
    """Every fix, by name, in the order they are installed (imports fairseq)."""
    from . import checkpoint_safety, fixes

    table = (
        Fix("keep_last_batch", False,
            "the last, smaller batch is kept (fairseq-fixed drops it when the number of examples "
            "is not a multiple of --required-batch-size-multiple): generation, validation and "
            "training see every example, as in fairseq 0.12.2; a training run's batches change",
            fixes.keep_remainder_batches, ("fairseq.data.data_utils:batch_by_size",)),
        Fix("same_batches_after_resume", False,
            "a run resumed in a later epoch trains on the batches the uninterrupted run trains "
            "on (those of epoch 1, reshuffled), instead of re-cutting them",
            fixes.same_batches_after_resume, ("fairseq.tasks:FairseqTask.get_batch_iterator",)),
        Fix("replace_unk_alignment", True,
            "--replace-unk reads the hard alignment's word pairs instead of crashing; without "
            "--print-alignment hard it is refused with a message naming that flag",
            fixes.replace_unk_from_pairs, ("fairseq.utils:replace_unk",)),
        Fix("diverse_beam_groups", False,
            "--diverse-beam-groups no longer crashes (IndexError) from the second batch on, and "
            "each sentence reads its own groups' overlaps (fairseq reads another sentence's "
            "where the batch is not in the order of the sentence ids, and chooses other words)",
            fixes.diverse_beam_search_by_position,
            ("fairseq.search:DiverseBeamSearch.__init__", "fairseq.search:DiverseBeamSearch.step")),
        Fix("no_repeat_ngram", False,
            "--no-repeat-ngram-size blocks repeated n-grams (fairseq's form without its CUDA "
            "extension, the CPU's included, compares padding and blocks nothing), so beam "
            "search chooses other words",
            fixes.no_repeat_ngram_up_to_step,
            ("fairseq.ngram_repeat_block:NGramRepeatBlock._no_repeat_ngram",)),
        Fix("data_buffer_exit", True,
            "a finished fairseq-train stops its data buffer thread before exiting, instead of "
            "aborting with exit 134 ('terminate called without an active exception')",
            fixes.stop_data_buffers_at_exit,
            ("fairseq.data.iterators:BackgroundConsumer.__init__",)),
        Fix("patience_resume", False,
            "--patience counts across a resume (the checkpoint keeps the best score and the "
            "validations since it), so a resumed run stops where the uninterrupted one stops",
            fixes.patience_survives_resume,
            ("fairseq.trainer:Trainer.save_checkpoint", "fairseq.trainer:Trainer.load_checkpoint")),
        Fix("atomic_checkpoint_copies", True,
            "checkpoint_last.pt / checkpoint_best.pt are copied to a temporary name and renamed: "
            "a run killed while copying keeps a complete checkpoint to resume from",
            checkpoint_safety.atomic_checkpoint_copies, ("fairseq.file_io:PathManager.copy",)),
    )
    return {fix.name: fix for fix in table}


def selected_fixes(value: Optional[str] = None) -> Tuple[str, ...]:
    """The fixes that ``MEMSIZER_FAIRSEQ_FIXES`` (or ``value``) asks for, in the table's order:
    unset, empty or ``default``: the default ones; ``all``; ``none``; or a comma-separated list of
    names and ``default``. An unknown name is refused naming the variable and the known names."""
    if value is None:
        value = os.environ.get(ENVIRONMENT_VARIABLE, "default")
    table = fix_table()
    groups = {"default": {name for name, fix in table.items() if fix.default},
              "all": set(table)}
    words = [word.strip() for word in value.lower().split(",") if word.strip()] or ["default"]
    if words == ["none"]:
        return ()
    if "none" in words:
        raise ValueError(f"{ENVIRONMENT_VARIABLE}={value!r}: none stands alone")
    unknown = [word for word in words if word not in table and word not in groups]
    if unknown:
        raise ValueError(
            f"{ENVIRONMENT_VARIABLE}={value!r}: unknown fix {', '.join(unknown)}; give default, "
            f"all, none, or a comma-separated list of fix names (and default): {', '.join(table)}")
    chosen = set().union(*(groups.get(word, {word}) for word in words))
    return tuple(name for name in table if name in chosen)


_installed: Tuple[str, ...] = ()
_logged: Optional[Tuple[str, ...]] = None


def installed_fixes() -> Tuple[str, ...]:
    """The fixes installed in this process, in the table's order."""
    return _installed


def install(value: Optional[str] = None):
    """Install safe loading and the fixes ``value`` (else ``MEMSIZER_FAIRSEQ_FIXES``) asks for,
    beside those already installed. Idempotent; the plugin's ``__init__`` calls it. One log line
    names the fixes installed (again only when they change). fairseq is imported quietly first."""
    global _installed, _logged
    import_fairseq_quietly()
    from . import checkpoint_safety

    checkpoint_safety.install_safe_loading()
    table = fix_table()
    wanted = set(selected_fixes(value)) | set(_installed)
    for name in table:
        if name in wanted:
            table[name].install()
    _installed = tuple(name for name in table if name in wanted)
    if _logged != _installed:
        _logged = _installed
        left_out = [name for name in table if name not in wanted]
        logger.info(f"safe checkpoint loading on; fairseq fixes installed: "
                    f"{', '.join(_installed) or 'none'}; not installed: "
                    f"{', '.join(left_out) or 'none'} ({ENVIRONMENT_VARIABLE}=all, none, or a "
                    f"list of names chooses; README)")


def _owner_and_name(target: str):
    module, path = target.split(":")
    owner = importlib.import_module(module)
    *parents, name = path.split(".")
    for parent in parents:
        owner = getattr(owner, parent)
    return owner, name


@contextlib.contextmanager
def fixes_installed(value: str) -> Iterator[Tuple[str, ...]]:
    """Install the fixes ``value`` names (as ``MEMSIZER_FAIRSEQ_FIXES`` would) for the ``with``
    block only, then put back what fairseq had: for fairseq run in-process (tests, notebooks,
    tools) whose process loaded the plugin with other fixes. Yields the fixes then installed."""
    global _installed
    table = fix_table()
    names = selected_fixes(value)
    saved = []
    for name in names:
        for target in table[name].patches:
            owner, attribute = _owner_and_name(target)
            # from the class's own namespace, so that a staticmethod stays one
            own = vars(owner).get(attribute) if isinstance(owner, type) else None
            saved.append((owner, attribute, own if own is not None else getattr(owner, attribute)))
    before = _installed
    try:
        for name in names:
            table[name].install()
        _installed = tuple(name for name in table if name in set(names) | set(before))
        yield _installed
    finally:
        for owner, attribute, original in reversed(saved):
            setattr(owner, attribute, original)
        _installed = before
