"""Raw text -> sentencepiece pieces -> fairseq binary data, for one task of the comparison.

The raw files are in the task's layout (``tools/tasks.py``, that of ``../shared/data``):
``{split}.{src}`` / ``{split}.{tgt}`` for translation and summarization, ``{split}.txt`` for
language modelling (one paragraph per line, documents separated by a blank line).
"""
import os
from typing import Dict, Optional

from ..tasks import SPLITS
from ..toolkit import fairseq_cli, sentencepiece
from ..toolkit.flags import merge_args, render_args
from .settings import TaskSettings


def check_raw_dir(task: TaskSettings, raw_dir: str) -> Dict[str, int]:
    """Refuse a raw directory that lacks a file, or holds unusable text; each file's lines."""
    return task.task.layout.check(raw_dir, f"{task.name}: the raw data directory")


def learn_and_apply_spm(task: TaskSettings, raw_dir: str, spm_dir: str, vocab: int,
                        valid_lines: Optional[int], hard_vocab_limit: bool = True,
                        workers: int = 1) -> str:
    """One sentencepiece BPE model of the training text (both sides); the pieces of every split
    in ``spm_dir``; returns the model's path."""
    return task.task.layout.encode(
        raw_dir, spm_dir, sentencepiece.bpe_options(vocab, hard_vocab_limit=hard_vocab_limit,
                                                     workers=workers,
                                                     input_sentence_size=2_000_000),
        workers, {"valid": valid_lines} if valid_lines else None)


def binarize(task: TaskSettings, spm_dir: str, data_bin: str, workers: int = 1) -> str:
    """fairseq-preprocess ``spm_dir`` into ``data_bin`` (either absent or whole)."""
    args = merge_args(task.task.layout.preprocess_args(spm_dir), {"--workers": workers})
    return fairseq_cli.binarize(render_args(args), data_bin)


def binarize_distilled(task: TaskSettings, pieces: str, spm_dir: str, data_bin: str, out: str,
                       workers: int = 1) -> str:
    """fairseq-preprocess the distilled training split in ``pieces`` with ``data_bin``'s
    dictionaries, and the valid and test splits of ``spm_dir`` unchanged, into ``out``."""
    layout = task.task.layout
    source, target = layout.sides
    args = merge_args(layout.preprocess_args(spm_dir), {
        "--joined-dictionary": None, "--trainpref": layout.prefix(pieces, "train"),
        "--srcdict": os.path.join(data_bin, f"dict.{source}.txt"),
        "--tgtdict": os.path.join(data_bin, f"dict.{target}.txt"), "--workers": workers})
    return fairseq_cli.binarize(render_args(args), out)


def corpus_stats(task: TaskSettings, spm_dir: str) -> Dict[str, int]:
    """Lines and sentencepiece tokens per split (source side for pairs), for the report."""
    stats, layout = {}, task.task.layout
    for split in SPLITS:
        with open(layout.file(spm_dir, split, layout.sides[0]), encoding="utf-8") as f:
            tokens = [len(line.split()) for line in f]
        stats.update({f"{split}_lines": len(tokens), f"{split}_tokens": sum(tokens)})
    return stats
