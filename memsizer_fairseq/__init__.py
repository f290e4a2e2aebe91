"""memsizer-fairseq: Memsizer (Zhang & Cai, EMNLP 2022) as a fairseq plugin.

Use with ``--user-dir memsizer_fairseq``. Importing the package imports fairseq quietly, installs
the patches of :mod:`.compat` (safe checkpoint loading, crash-safe checkpoint writes, fairseq
fixes) and registers the models, the summarization task and the ROUGE scorer with fairseq.
"""
__version__ = "0.1.0"

from .compat.quiet_import import import_fairseq_quietly  # noqa: E402

import_fairseq_quietly()

from . import compat  # noqa: E402

compat.install()

from . import models  # noqa: E402,F401
from . import scoring, tasks  # noqa: E402,F401  (--scoring rouge, --task summarization)
