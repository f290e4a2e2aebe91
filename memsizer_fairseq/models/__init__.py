"""fairseq's side of the plugin (fairseq also auto-imports this folder for ``--user-dir``):
the attention adapter, the layers, encoder and decoder, the models and their presets."""
from . import transformer  # noqa: F401  (registers memsizer_transformer and its presets)
from . import lm  # noqa: F401  (registers memsizer_lm and its presets)
