"""Memsizer against the Transformer on real corpora:
``python -m memsizer_fairseq.tools.compare``."""
