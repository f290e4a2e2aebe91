"""What the comparison trains and measures, per task: corpus, model size, schedule, budgets.

The Transformer and the Memsizer model of a task get the same flags (width, depth, heads,
feed-forward size, optimizer, schedule, batch, seed, number of updates) except ``--arch``, so the
only difference between the two runs is the attention. Memsizer's own hyper-parameters are the
paper's (MT: decoder self k 4, cross k 32, init scales 8 / 8; LM: k 32, scales 32 / 1) unless the
user adds ``--memsizer-args``. ``frontier`` holds, per budget, the extra Memsizer configurations
that ``--frontier`` trains when given no configurations of its own (the budgets differ where the
number of decoder layers shows in a flag).

The budgets (``--budget``): ``full`` is sized for a small CPU machine (d 256; on two cores, one
thread per model, the translation and summarization models train for 40 to 90 minutes, the
language models for about 15: far too little for good models, see the README); ``small`` is
d 128 for a few hundred updates, minutes per run on one core, for trying many configurations
and seeds; ``tiny`` is the CI mode (synthetic corpora, a few minutes in all). A rerun of a
finished comparison with a larger ``--max-update`` resumes training from the last checkpoints.
"""
from dataclasses import dataclass, field
from typing import Dict, Optional

from .. import tasks
from ..tasks import Task
from ..toolkit.flags import Args, merge_args

@dataclass(frozen=True)
class Budget:
    """Everything that differs between the full and the tiny mode."""

    max_update: int
    validate_every: int  # updates between validations (and checkpoints)
    spm_vocab: int
    model: Args  # width / depth flags shared by both architectures
    train: Args = field(default_factory=dict)
    evaluate: Args = field(default_factory=dict)
    valid_lines: Optional[int] = None  # validate on the first N lines (None: all)
    timing_prompts: int = 32  # language modelling: prompts of the generation timing
    timing_new_tokens: int = 128
    # --frontier without values: configuration name -> extra fairseq-train flags for Memsizer
    frontier: Dict[str, str] = field(default_factory=dict)
    synthetic: bool = False  # the task's synthetic corpus instead of the raw data


@dataclass(frozen=True)
class TaskSettings:
    """A task of the comparison: the task (files, measures, evaluator), the corpus it reads,
    the flags both models share, the budgets."""

    task: Task
    corpus: str  # folder under ../shared/data, in the task's layout
    train: Args  # shared training flags
    evaluate: Args  # fairseq-generate / -eval-lm flags over the task's
    budgets: Dict[str, Budget]  # full, small, tiny

    @property
    def name(self) -> str:
        return self.task.name

    @property
    def archs(self) -> Dict[str, str]:
        return self.task.archs

    def evaluate_flags(self, budget: str) -> Args:
        return merge_args(merge_args(self.task.generation, self.evaluate),
                          self.budgets[budget].evaluate)


_COMMON_TRAIN: Args = {
    "--optimizer": "adam", "--adam-betas": "(0.9, 0.98)", "--clip-norm": 1.0,
    "--lr-scheduler": "inverse_sqrt", "--warmup-init-lr": 1e-07, "--weight-decay": 0.0,
    "--dropout": 0.1, "--seed": 1, "--cpu": True, "--num-workers": 0,
    "--log-format": "json", "--log-interval": 25, "--no-epoch-checkpoints": True,
    "--keep-interval-updates": 1, "--skip-invalid-size-inputs-valid-test": True,
}
_SEQ2SEQ_MODEL: Args = {
    "--encoder-layers": 3, "--decoder-layers": 3, "--encoder-embed-dim": 256,
    "--decoder-embed-dim": 256, "--encoder-ffn-embed-dim": 1024,
    "--decoder-ffn-embed-dim": 1024, "--encoder-attention-heads": 4,
    "--decoder-attention-heads": 4, "--share-all-embeddings": True,
}
_SEQ2SEQ_SMALL_MODEL: Args = dict(
    _SEQ2SEQ_MODEL, **{"--encoder-embed-dim": 128, "--decoder-embed-dim": 128,
                       "--encoder-ffn-embed-dim": 512, "--decoder-ffn-embed-dim": 512})
_SEQ2SEQ_TINY_MODEL: Args = dict(
    _SEQ2SEQ_MODEL, **{"--encoder-layers": 2, "--decoder-layers": 2, "--encoder-embed-dim": 64,
                       "--decoder-embed-dim": 64, "--encoder-ffn-embed-dim": 128,
                       "--decoder-ffn-embed-dim": 128, "--encoder-attention-heads": 2,
                       "--decoder-attention-heads": 2})
_SEQ2SEQ_TRAIN: Args = merge_args(_COMMON_TRAIN, {
    "--criterion": "label_smoothed_cross_entropy", "--label-smoothing": 0.1,
    "--max-tokens": 4096, "--lr": 1e-3, "--warmup-updates": 150,
})
# Memsizer configurations between the paper's setting and the Transformer: more slots, or
# softmax cross-attention (in every decoder layer, or only in the last one)
_SEQ2SEQ_FRONTIER = {
    "paper-slots-32-128": "--causal-proj-dim 32 --cross-proj-dim 128",
    "softmax-cross": "--cross-attention softmax",
    "softmax-cross-last": "--cross-attention memsizer,memsizer,softmax",
}
_SEQ2SEQ_TINY_FRONTIER = {
    "softmax-cross": "--cross-attention softmax",
    "softmax-cross-last": "--cross-attention memsizer,softmax",
}
# validated and saved every validate_every updates only (not also at each ~16-update epoch)
_TINY_TRAIN: Args = {"--max-tokens": 1024, "--lr": 2e-3, "--warmup-updates": 60,
                     "--log-interval": 10, "--validate-interval": 1000, "--save-interval": 1000}


def _seq2seq_budgets(full_validate_every: int) -> Dict[str, Budget]:
    return {
        "full": Budget(max_update=1200, validate_every=full_validate_every, spm_vocab=8000,
                       model=_SEQ2SEQ_MODEL, valid_lines=1000, frontier=_SEQ2SEQ_FRONTIER),
        "small": Budget(max_update=400, validate_every=100, spm_vocab=8000,
                        model=_SEQ2SEQ_SMALL_MODEL, valid_lines=500, frontier=_SEQ2SEQ_FRONTIER),
        "tiny": Budget(max_update=300, validate_every=100, spm_vocab=400,
                       model=_SEQ2SEQ_TINY_MODEL, train=_TINY_TRAIN,
                       frontier=_SEQ2SEQ_TINY_FRONTIER, synthetic=True)}


TRANSLATION = TaskSettings(
    task=tasks.TRANSLATION, corpus="mt-en-de",
    train=merge_args(_SEQ2SEQ_TRAIN, {
        "--task": "translation", "--eval-bleu": True,
        "--eval-bleu-args": '{"beam": 1, "max_len_a": 1.2, "max_len_b": 10}',
        "--eval-bleu-remove-bpe": "sentencepiece", "--best-checkpoint-metric": "bleu",
        "--maximize-best-checkpoint-metric": True,
    }),
    evaluate={"--beam": 4, "--lenpen": 0.6, "--max-len-a": 1.2, "--max-len-b": 10,
              "--max-tokens": 8000},
    budgets=_seq2seq_budgets(full_validate_every=150),
)

SUMMARIZATION = TaskSettings(
    task=tasks.SUMMARIZATION, corpus="sum-debian",
    train=merge_args(_SEQ2SEQ_TRAIN, {
        "--task": "summarization", "--truncate-source": "true",
        "--max-source-positions": 512, "--max-target-positions": 512,
        "--eval-rouge": True, "--eval-rouge-args": '{"beam": 1, "max_len_b": 40}',
        "--eval-rouge-remove-bpe": "sentencepiece", "--best-checkpoint-metric": "rouge_l",
        "--maximize-best-checkpoint-metric": True,
    }),
    evaluate={"--truncate-source": "true", "--max-source-positions": 512,
              "--max-target-positions": 512, "--beam": 4, "--lenpen": 1.0, "--max-len-b": 40,
              "--max-tokens": 8000},
    budgets=_seq2seq_budgets(full_validate_every=100),
)


def _lm_model(layers: int, width: int, ffn: int, heads: int) -> Args:
    """The LM size flags. fairseq's ``--arch transformer_lm`` takes the dataclass defaults of
    the fields a flag leaves unset (input / output dims 512, post-norm), while ``memsizer_lm``
    (like fairseq's named LM presets) runs ``base_lm_architecture`` (dims = width, pre-norm):
    the flags set them, so that both models are the same apart from the attention."""
    return {"--decoder-layers": layers, "--decoder-embed-dim": width,
            "--decoder-input-dim": width, "--decoder-output-dim": width,
            "--decoder-ffn-embed-dim": ffn, "--decoder-attention-heads": heads,
            "--decoder-normalize-before": True, "--share-decoder-input-output-embed": True}


LANGUAGE_MODELING = TaskSettings(
    task=tasks.LANGUAGE_MODELING, corpus="lm-debian",
    train=merge_args(_COMMON_TRAIN, {
        "--task": "language_modeling", "--tokens-per-sample": 256,
        "--sample-break-mode": "none", "--criterion": "cross_entropy",
        # 2e-3 for both models: on the validation split (450 updates) it beat 1e-3 for the
        # Transformer (NLL 7.995 -> 7.644) and for Memsizer (8.110 -> 7.799); see the README
        "--max-tokens": 4096, "--lr": 2e-3, "--warmup-updates": 100,
    }),
    evaluate={"--tokens-per-sample": 256, "--context-window": 128, "--max-tokens": 4096,
              "--sample-break-mode": "none"},
    budgets={
        "full": Budget(max_update=450, validate_every=50, spm_vocab=8000, valid_lines=3000,
                       model=_lm_model(layers=4, width=256, ffn=1024, heads=4),
                       frontier={"k64": "--causal-proj-dim 64"}),
        "small": Budget(max_update=300, validate_every=100, spm_vocab=8000, valid_lines=500,
                        model=_lm_model(layers=3, width=128, ffn=512, heads=4),
                        frontier={"k64": "--causal-proj-dim 64"}),
        "tiny": Budget(max_update=200, validate_every=100, spm_vocab=400,
                       model=_lm_model(layers=2, width=64, ffn=128, heads=2),
                       train=merge_args(_TINY_TRAIN, {"--tokens-per-sample": 128}),
                       evaluate={"--tokens-per-sample": 128, "--context-window": 64},
                       timing_prompts=8, timing_new_tokens=32,
                       frontier={"k8": "--causal-proj-dim 8"}, synthetic=True)},
)

TASKS: Dict[str, TaskSettings] = {t.name: t for t in (TRANSLATION, SUMMARIZATION,
                                                      LANGUAGE_MODELING)}
BUDGETS = ("full", "small", "tiny")
# the fairseq fixes every run of a comparison gets (MEMSIZER_FAIRSEQ_FIXES): every test sentence
# generated and validated (keep_last_batch); a run stopped and resumed trains and stops as the
# uninterrupted one (same_batches_after_resume, patience_resume, atomic_checkpoint_copies); a
# finished run exits cleanly (data_buffer_exit)
FIXES = ("keep_last_batch", "same_batches_after_resume", "data_buffer_exit", "patience_resume",
         "atomic_checkpoint_copies")
