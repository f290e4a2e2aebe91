"""memsizer-fairseq: Memsizer (Zhang & Cai, EMNLP 2022) as a fairseq plugin.

Use with ``--user-dir memsizer_fairseq``. Importing the package imports fairseq quietly, installs
safe checkpoint loading and the fairseq fixes of :mod:`.compat` (``MEMSIZER_FAIRSEQ_FIXES``
chooses them; one log line names them) and registers the models, the summarization task and the
ROUGE scorer with fairseq.

* :mod:`.ops`: Memsizer's math by form (plain PyTorch); :mod:`.layers`: the Memsizer layer;
  :mod:`.config`: its options (the flags);
* :mod:`.models`: the fairseq adapters and the ``--arch`` presets; :mod:`.tasks`, :mod:`.scoring`;
* :mod:`.compat`: every change to fairseq's behaviour, named.

The tools (``memsizer_fairseq.tools``) are not imported here.
"""
__version__ = "0.1.0"

from .compat.quiet_import import import_fairseq_quietly  # noqa: E402

import_fairseq_quietly()

from . import compat  # noqa: E402

compat.install()

from . import models  # noqa: E402,F401
from . import scoring, tasks  # noqa: E402,F401  (--scoring rouge, --task summarization)
