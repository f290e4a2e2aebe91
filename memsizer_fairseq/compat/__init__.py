"""Every change this plugin makes to fairseq's and torch's behaviour, installed from one place.

* ``quiet_import``: fairseq imported without its tensorboardX notice and without turning the
  root logger to DEBUG;
* ``checkpoint_safety``: fairseq checkpoints read with torch's safe loader (an allowlist of the
  plain types they hold), a marker naming ``--user-dir`` in this plugin's checkpoints, crash-safe
  copies to ``checkpoint_last.pt`` / ``checkpoint_best.pt``, safe loading in distributed resumes;
* ``fixes``: fairseq bugs that lose or reorder data or crash for every model (dropped last batch,
  other batches after a resume, ``--replace-unk``, ``--diverse-beam-groups``, an abort at exit
  while fairseq's data buffer thread is collating).

Each patch is idempotent and wraps fairseq's function (``functools.wraps``), keeping its behaviour
where the bug does not apply. The plugin's own classes need no patch: the models explain a
checkpoint that does not fit them by overriding ``load_state_dict``
(:mod:`memsizer_fairseq.models.checkpoint_mismatch`).
"""
from .quiet_import import import_fairseq_quietly

__all__ = ["install", "import_fairseq_quietly"]


def install():
    """Install every patch (idempotent; the plugin's ``__init__`` calls it). fairseq is imported
    quietly first: ``fixes`` imports it."""
    import_fairseq_quietly()
    from . import checkpoint_safety, fixes

    checkpoint_safety.allow_fairseq_checkpoint_types()
    checkpoint_safety.protect_checkpoint_files()
    fixes.install()
