"""Runnable recipes for the paper's three tasks, with one shared runner
(``python -m memsizer_fairseq.tools.recipes RECIPE --tiny | --raw-dir DIR [--dry-run]``;
``examples/<task>/run.sh`` wrap it; docs/usage.md, "Recipes").

Every recipe runs the same steps: the raw text (``--tiny``: a small synthetic corpus in the same
layout), a joined sentencepiece model applied to every split (the language model stays word
level), then fairseq-preprocess, -train and -generate (BLEU or ROUGE) or -eval-lm (perplexity),
each command printed before it runs. Their flags are the paper's (or, where the paper says
nothing, a documented choice). ``--tiny`` changes the model size, the schedule and the batch
size, drops the GPU-only flags (``--fp16``, ``--update-freq``) and, for the language model, swaps
the adaptive softmax (whose cutoffs need Wikitext-103's vocabulary) and NAG for a plain softmax
and Adam, so that the same pipeline runs on two CPU cores in a minute; it starts afresh each
time, while on real data a second run keeps the binarized data and fairseq-train resumes.
"""
from .catalog import RECIPES, TASK_RECIPES, Recipe, Tiny
from .hydra import CONFIG_DIR, hydra_config, hydra_yaml, write_configs
from .cli import main
from .runner import RecipeResult, Runner

__all__ = ["RECIPES", "TASK_RECIPES", "Recipe", "Tiny", "CONFIG_DIR", "hydra_config",
           "hydra_yaml", "write_configs", "RecipeResult", "Runner", "main"]
