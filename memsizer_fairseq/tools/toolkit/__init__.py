"""What the project's commands (compare, recipes, benchmark, uptrain, quick-start) share:

* ``fairseq_cli``: run fairseq's command-line tools with the plugin (one runner);
* ``fairseq_output``: read their scores, timings, hypotheses and training logs (one parser);
* ``flags``: fairseq flags as ordered dicts, merged and rendered (one flag renderer);
* ``sentencepiece``: learn a joined BPE model and encode a corpus (one sentencepiece path);
* ``corpus_checks``: refuse unusable raw text before anything expensive;
* ``toy_data``, ``synthetic_corpora``: small built-in corpora for the quick-start, the ``--tiny``
  modes and the tests.
"""
