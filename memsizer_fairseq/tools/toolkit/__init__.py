"""What the project's commands (compare, recipes, benchmark, uptrain, quick-start) share:

* ``fairseq_cli``: run fairseq's command-line tools with the plugin (one runner);
* ``fairseq_logs``: fairseq-train's JSON records and its checkpoints' training state;
* ``generation``: fairseq-generate / -eval-lm in-process, scored with sacreBLEU / rouge-score;
* ``flags``: fairseq flags as ordered dicts, merged and rendered (one flag renderer);
* ``sentencepiece``: learn a joined BPE model and encode a corpus (one sentencepiece path);
* ``corpus_checks``: refuse unusable raw text before anything expensive;
* ``toy_data``, ``synthetic_corpora``: small built-in corpora for the quick-start, the ``--tiny``
  modes and the tests.
"""
