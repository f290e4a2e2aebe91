"""Runnable recipes for the paper's three tasks, with one shared runner.

    python -m memsizer_fairseq.tools.recipes RECIPE --tiny            # minutes, built-in corpus
    python -m memsizer_fairseq.tools.recipes RECIPE --raw-dir DIR     # the user's real data
    python -m memsizer_fairseq.tools.recipes RECIPE --raw-dir DIR --dry-run  # the commands only

``RECIPE`` is one of ``wmt16_en_de``, ``iwslt14_de_en`` (translation), ``cnn_dm``, ``xsum``
(summarization) and ``wikitext103`` (language modelling); ``examples/<task>/run.sh`` wrap this.

Every recipe runs the same steps:

1. ``raw``: the raw text files (``--raw-dir``), or in ``--tiny`` mode a small synthetic corpus in
   the same layout (:mod:`memsizer_fairseq.tools.toolkit.synthetic_corpora`);
2. ``spm``: a joined sentencepiece (BPE) model learned on the source and target training text,
   applied to every split (the language model stays word-level: see ``wikitext103``);
3. ``fairseq-preprocess``, 4. ``fairseq-train``, 5. ``fairseq-generate`` (BLEU or ROUGE on
   detokenized text) or ``fairseq-eval-lm`` (perplexity).

The commands of steps 3-5 are the paper's (or, where the paper says nothing, a documented
choice). ``--tiny`` changes the model size, the schedule and the batch size, drops the GPU-only
flags (``--fp16``, ``--update-freq``) and, for the language model, swaps the adaptive softmax
(whose cutoffs need Wikitext-103's vocabulary) and NAG for a plain softmax and Adam, so that the
same pipeline runs end to end on two CPU cores in under a minute. Every command is printed
before it runs, so the output holds the exact command lines. In ``--tiny`` mode the recipe
starts afresh each time; on real data a second run keeps the binarized data and fairseq-train
resumes from ``checkpoint_last.pt``.
"""
from .catalog import RECIPES, TASK_RECIPES, Recipe, Tiny
from .hydra import CONFIG_DIR, hydra_config, hydra_yaml, write_configs
from .cli import main
from .runner import RecipeResult, Runner

__all__ = ["RECIPES", "TASK_RECIPES", "Recipe", "Tiny", "CONFIG_DIR", "hydra_config",
           "hydra_yaml", "write_configs", "RecipeResult", "Runner", "main"]
