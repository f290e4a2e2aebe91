"""memsizer-fairseq: Memsizer (Zhang & Cai, EMNLP 2022) as a fairseq plugin.

Use with ``--user-dir memsizer_fairseq``. Importing the package registers the models, task and
scorer with fairseq, allowlists the types of fairseq checkpoints for torch's safe loader, makes
checkpoint writes crash-safe and installs the fixes of :mod:`.fairseq_fixes`.
"""
__version__ = "0.1.0"

from .quiet_import import import_fairseq_quietly  # noqa: E402

import_fairseq_quietly()

from . import checkpoint_safety  # noqa: E402

checkpoint_safety.allow_fairseq_checkpoint_types()
checkpoint_safety.protect_checkpoint_files()

from . import fairseq_fixes  # noqa: E402

fairseq_fixes.install()

from . import models  # noqa: E402,F401
from . import scoring, tasks  # noqa: E402,F401  (--scoring rouge, --task summarization)
from . import input_checks  # noqa: E402,F401  (clear checkpoint-mismatch errors)
