"""fairseq scorers of the plugin (``--scoring rouge``).

fairseq auto-imports only ``models/`` and ``tasks/`` of a ``--user-dir``: the package's
``__init__`` imports this folder so that the scorers are registered as well.
"""
from . import rouge  # noqa: F401  (registers --scoring rouge)
