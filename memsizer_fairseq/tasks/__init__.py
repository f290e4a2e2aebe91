"""fairseq tasks of the plugin (fairseq also auto-imports this folder for ``--user-dir``)."""
from . import summarization  # noqa: F401  (registers --task summarization)
