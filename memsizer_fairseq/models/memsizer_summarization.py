"""Summarization presets of ``memsizer_transformer`` (for ``--task summarization``).

* ``memsizer_transformer_summarization``: Transformer-base sizes (6 + 6 layers, d 512, 8 heads,
  FFN 2048), one joined vocabulary with all embeddings shared (preprocess with
  ``--joined-dictionary``), 1024 source positions (the task truncates longer documents), Memsizer
  in the decoder (causal self-attention k = 4, cross-attention k = 32, init scales 8 and 8, as
  in the paper's MT setting) and softmax self-attention in the encoder.
* ``memsizer_transformer_summarization_tiny``: fairseq's ``tiny`` sizes (2 + 2 layers, d 64,
  2 heads, FFN 128) with cross-attention k = 8, for the recipes' ``--tiny`` modes and the tests.

Their values are the "summarization" rows of :data:`~.presets.PRESETS`; how the Memsizer settings
were chosen is in ``docs/design_notes.md``.

Every value is filled only when unset, so any flag on the command line wins (boolean presets
such as ``share_all_embeddings`` cannot be switched off from the command line, as in fairseq's
own presets: use ``--arch memsizer_transformer`` and explicit flags for that).
"""
from .presets import register_presets

ARCHITECTURES = register_presets("summarization")
memsizer_transformer_summarization = ARCHITECTURES["memsizer_transformer_summarization"]
memsizer_transformer_summarization_tiny = ARCHITECTURES["memsizer_transformer_summarization_tiny"]
