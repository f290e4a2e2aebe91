"""fairseq models of the plugin (fairseq also auto-imports this folder for ``--user-dir``)."""
from . import memsizer_transformer  # noqa: F401  (registers the models)
from . import memsizer_lm  # noqa: F401  (registers the language models)
from . import memsizer_summarization  # noqa: F401  (registers the summarization presets)
