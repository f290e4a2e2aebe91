"""The recipes: the paper's fairseq-train / -generate / -eval-lm flags per data set, and what
``--tiny`` changes so that the same steps run in minutes on a CPU."""
from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional

from .. import tasks
from ..tasks import Layout, Task
from ..toolkit.flags import Args, merge_args


@dataclass(frozen=True)
class Tiny:
    """What ``--tiny`` changes: the corpus (the task's synthetic one), the vocabulary, the model
    size and the schedule."""

    train: Args
    evaluate: Args = field(default_factory=dict)
    spm_vocab: int = 400


@dataclass(frozen=True)
class Recipe:
    name: str
    task: Task  # its scripts: examples/<task.name>/
    title: str
    layout: Layout  # the raw files the user provides
    about: str  # what they hold
    spm_vocab: Optional[int]  # joined sentencepiece vocabulary; None: word level
    train: Args
    evaluate: Args  # fairseq-generate / -eval-lm flags over the task's
    tiny: Tiny
    tiny_style: Optional[str] = None  # the synthetic corpus's style (default: the task's)


# Flags every --tiny run adds (CPU, quiet, small checkpoints) or drops (GPU-only, big batches).
TINY_COMMON: Args = {
    "--fp16": None, "--fp16-init-scale": None, "--update-freq": None, "--keep-last-epochs": None,
    "--cpu": True, "--num-workers": 0, "--seed": 1, "--no-epoch-checkpoints": True,
    "--log-format": "simple", "--log-interval": 50,
}
TINY_GENERATE: Args = {"--cpu": True, "--batch-size": 50, "--num-workers": 0}

# The paper's WMT16 En-De run: Transformer-big, Memsizer in the decoder (k 4 / 32,
# init scales 8 / 8 = the arch defaults), Adam (0.9, 0.98), lr 5e-4, inverse_sqrt with 4000
# warm-up updates, dropout 0.3, label smoothing 0.1, 3584 tokens x 16, fp16, 90k updates;
# beam 4, lenpen 0.6.
_MT_TRAIN: Args = {
    "--task": "translation",
    "--arch": "memsizer_vaswani_wmt_en_de_big", "--share-all-embeddings": True,
    "--optimizer": "adam", "--adam-betas": "(0.9, 0.98)", "--clip-norm": 0.0,
    "--lr": 5e-4, "--lr-scheduler": "inverse_sqrt", "--warmup-updates": 4000,
    "--warmup-init-lr": 1e-07, "--dropout": 0.3, "--weight-decay": 0.0,
    "--criterion": "label_smoothed_cross_entropy", "--label-smoothing": 0.1,
    "--max-tokens": 3584, "--update-freq": 16, "--fp16": True, "--max-update": 90000,
}
_MT_TINY_TRAIN: Args = {
    "--arch": "memsizer_transformer_tiny", "--max-tokens": 1024, "--lr": 2e-3,
    "--warmup-updates": 100, "--dropout": 0.1, "--clip-norm": 1.0, "--max-update": 300,
}
_MT_TINY_EVALUATE: Args = {"--max-len-b": 50}

WMT16_EN_DE = Recipe(
    name="wmt16_en_de", task=tasks.TRANSLATION,
    title="WMT16 English-German (the paper's MT run)",
    layout=Layout(("en", "de")), spm_vocab=32000,
    about="WMT16 En-De training data (4.5M pairs), newstest2013 as valid, newstest2014 as "
          "test; untokenized, one sentence per line, line i of .en aligned with line i of .de",
    train=_MT_TRAIN,
    evaluate={"--beam": 4, "--lenpen": 0.6, "--max-tokens": 8000},
    tiny=Tiny(train=_MT_TINY_TRAIN, evaluate=_MT_TINY_EVALUATE),
)

IWSLT14_DE_EN = Recipe(
    name="iwslt14_de_en", task=tasks.TRANSLATION, title="IWSLT14 German-English",
    layout=Layout(("de", "en")), spm_vocab=10000,
    about="the IWSLT14 De-En TED talks split as fairseq's "
          "examples/translation/prepare-iwslt14.sh makes it (160k / 7k / 6.8k pairs), before "
          "its BPE step; one sentence per line",
    # fairseq's IWSLT14 recipe with the paper's Memsizer decoder (the paper has no IWSLT run)
    train=merge_args(_MT_TRAIN, {
        "--arch": "memsizer_transformer_iwslt_de_en", "--share-all-embeddings": None,
        "--share-decoder-input-output-embed": True, "--warmup-init-lr": None,
        "--weight-decay": 0.0001, "--max-tokens": 4096, "--update-freq": None,
        "--fp16": None, "--max-update": 50000,
    }),
    evaluate={"--beam": 5, "--max-tokens": 8000},
    tiny=Tiny(train=merge_args(_MT_TINY_TRAIN, {"--share-decoder-input-output-embed": None,
                                                "--share-all-embeddings": True}),
              evaluate=_MT_TINY_EVALUATE),
)

# The paper gives no summarization hyper-parameters: these are the MT settings above on the
# Transformer-base-sized summarization preset, with BART's decoding settings per data set.
_SUM_TRAIN: Args = {
    "--task": "summarization", "--truncate-source": "true",
    "--max-source-positions": 1024, "--max-target-positions": 1024,
    "--arch": "memsizer_transformer_summarization",
    **{flag: value for flag, value in _MT_TRAIN.items()
       if flag not in ("--task", "--arch", "--share-all-embeddings")},
    "--dropout": 0.1, "--max-tokens": 8192, "--update-freq": 8, "--max-update": 100000,
    "--skip-invalid-size-inputs-valid-test": True,
}
_SUM_TINY_TRAIN: Args = {
    "--arch": "memsizer_transformer_summarization_tiny", "--max-tokens": 1024, "--lr": 2e-3,
    "--warmup-updates": 100, "--clip-norm": 1.0, "--max-update": 500,
}
_SUM_TINY_EVALUATE: Args = {"--min-len": 5, "--max-len-b": 60, "--lenpen": 1.0}

CNN_DM = Recipe(
    name="cnn_dm", task=tasks.SUMMARIZATION,
    title="CNN/DailyMail (abstractive, multi-sentence)",
    layout=Layout(("source", "target")), spm_vocab=32000,
    about="the non-anonymized CNN/DailyMail split of See et al. (287k / 13k / 11k articles), "
          "one article (.source) or its highlights joined into one line (.target) per line",
    train=_SUM_TRAIN,
    evaluate={"--beam": 4, "--lenpen": 2.0, "--max-len-b": 140, "--min-len": 55,
              "--no-repeat-ngram-size": 3, "--max-tokens": 16384, "--rouge-use-stemmer": True},
    tiny=Tiny(train=_SUM_TINY_TRAIN, evaluate=_SUM_TINY_EVALUATE), tiny_style="cnn_dm",
)

# XSum: CNN/DailyMail's recipe with BART's XSum decoding (beam 6, short one-sentence outputs)
XSUM = replace(
    CNN_DM, name="xsum", title="XSum (abstractive, one sentence)", tiny_style="xsum",
    train=merge_args(_SUM_TRAIN, {"--max-update": 50000}),
    evaluate=merge_args(CNN_DM.evaluate, {"--beam": 6, "--lenpen": 1.0, "--max-len-b": 60,
                                          "--min-len": 10}),
    about="XSum's official split (204k / 11k / 11k BBC articles), one article or its "
          "one-sentence summary per line",
)

# The paper's Wikitext-103 run: Baevski & Auli's adaptive-input model with 32 layers and
# layerdrop 0.2 (memsizer_lm_wiki103), Memsizer in every layer (k 32, scales 32 / 1), 512 tokens
# per sample, dropout 0.2, NAG with the cosine schedule, fp16 from loss scale 8, seed 8: the
# authors' command.
WIKITEXT103 = Recipe(
    name="wikitext103", task=tasks.LANGUAGE_MODELING, title="Wikitext-103 (word level)",
    layout=Layout(("tokens",), pattern="wiki.{split}.{side}"), spm_vocab=None,
    about="Wikitext-103 v1 (word level, 103M / 218k / 246k tokens) as distributed "
          "(wikitext-103-v1.zip)",
    train={
        "--task": "language_modeling", "--arch": "memsizer_lm_wiki103",
        "--tokens-per-sample": 512, "--sample-break-mode": "none",
        "--max-tokens": 3072, "--update-freq": 3, "--max-update": 286000,
        "--optimizer": "nag", "--lr": 1.0, "--lr-scheduler": "cosine", "--t-mult": 2,
        "--lr-period-updates": 270000, "--lr-shrink": 0.75, "--warmup-updates": 16000,
        "--warmup-init-lr": 1e-07, "--stop-min-lr": 1e-09, "--min-lr": 1e-4,
        "--clip-norm": 0.1, "--criterion": "adaptive_loss", "--dropout": 0.2, "--seed": 8,
        "--fp16": True, "--fp16-init-scale": 8,
        "--ddp-backend": "legacy_ddp", "--skip-invalid-size-inputs-valid-test": True,
    },
    evaluate={"--sample-break-mode": "complete",
              "--tokens-per-sample": 512, "--context-window": 400, "--max-tokens": 3072,
              "--softmax-batch": 1024},
    tiny=Tiny(
        train={
            "--arch": "memsizer_lm", "--decoder-layers": 2, "--decoder-embed-dim": 64,
            "--decoder-ffn-embed-dim": 128, "--decoder-attention-heads": 2,
            "--tokens-per-sample": 128, "--max-tokens": 1024, "--criterion": "cross_entropy",
            "--optimizer": "adam", "--adam-betas": "(0.9, 0.98)", "--lr": 2e-3,
            "--lr-scheduler": "inverse_sqrt", "--warmup-updates": 50, "--t-mult": None,
            "--lr-period-updates": None, "--lr-shrink": None, "--stop-min-lr": None,
            "--min-lr": None, "--clip-norm": 1.0, "--max-update": 300,
            "--share-decoder-input-output-embed": True,
        },
        evaluate={"--tokens-per-sample": 128, "--context-window": 64, "--max-tokens": 1024},
    ),
)

RECIPES: Dict[str, Recipe] = {r.name: r for r in (WMT16_EN_DE, IWSLT14_DE_EN, CNN_DM, XSUM,
                                                  WIKITEXT103)}
TASK_RECIPES: Dict[str, List[str]] = {}
for _recipe in RECIPES.values():
    TASK_RECIPES.setdefault(_recipe.task.name, []).append(_recipe.name)
