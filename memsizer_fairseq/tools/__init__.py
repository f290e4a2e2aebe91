"""The project's tools, apart from the plugin: ``--user-dir memsizer_fairseq`` never imports them.

* ``python -m memsizer_fairseq.tools.compare``: Memsizer against the Transformer on real corpora;
* ``python -m memsizer_fairseq.tools.benchmark``: speed and memory, side by side;
* ``python -m memsizer_fairseq.tools.recipes``: the paper's setups, end to end;
* ``python -m memsizer_fairseq.tools.uptrain``: a trained Transformer checkpoint made Memsizer;
* :mod:`.toolkit`: what they share (one way to run fairseq's commands and read their output).

They need the ``tools`` extra (matplotlib, tqdm).
"""
