"""Raw text -> sentencepiece pieces -> fairseq binary data, for one task of the comparison.

Raw layout (that of ``../shared/data``): ``{split}.{src}`` / ``{split}.{tgt}`` for translation and
summarization, ``{split}.txt`` for language modelling (one paragraph per line, documents
separated by a blank line), with splits ``train``, ``valid`` and ``test``.
"""
import os
from typing import Dict, List, Optional

from ..toolkit import fairseq_cli, sentencepiece
from ..toolkit.corpus_checks import check_corpus
from ..toolkit.synthetic_corpora import write_toy_summarization, write_toy_wikitext
from ..toolkit.toy_data import write_toy_translation
from .settings import TaskSettings

SPLITS = ("train", "valid", "test")
TINY_SIZES = {
    "translation": {"train": 3000, "valid": 100, "test": 100},
    "summarization": {"train": 3000, "valid": 100, "test": 100},
    "language_modeling": {"train": 300, "valid": 20, "test": 20},
}


def raw_files(task: TaskSettings, raw_dir: str) -> List[str]:
    if task.paired:
        return [os.path.join(raw_dir, f"{split}.{ext}") for split in SPLITS
                for ext in (task.src, task.tgt)]
    return [os.path.join(raw_dir, f"{split}.txt") for split in SPLITS]


def check_raw_dir(task: TaskSettings, raw_dir: str) -> Dict[str, int]:
    """Refuse a raw directory that lacks a file, or holds unusable text (see corpus_checks);
    returns each file's line count."""
    missing = [p for p in raw_files(task, raw_dir) if not os.path.isfile(p)]
    if missing:
        layout = (f"{{train,valid,test}}.{task.src} and .{task.tgt}" if task.paired
                  else "{train,valid,test}.txt")
        raise FileNotFoundError(
            f"{task.name}: the raw data directory {raw_dir} lacks {', '.join(missing)}; "
            f"it must hold {layout} (plain text, one item per line)")
    files = raw_files(task, raw_dir)
    pairs = list(zip(files[::2], files[1::2])) if task.paired else []
    return check_corpus(files, pairs)


def write_tiny_corpus(task: TaskSettings, raw_dir: str, seed: int = 1):
    """A small synthetic corpus in the raw layout of ``task`` (for the CI mode)."""
    sizes = TINY_SIZES[task.name]
    if task.name == "translation":
        write_toy_translation(raw_dir, sizes, seed=seed, src=task.src, tgt=task.tgt)
    elif task.name == "summarization":
        write_toy_summarization(raw_dir, "xsum", sizes, seed=seed, src=task.src, tgt=task.tgt)
    else:
        for split, path in write_toy_wikitext(raw_dir, sizes, seed=seed).items():
            os.replace(path, os.path.join(raw_dir, f"{split}.txt"))


def learn_and_apply_spm(task: TaskSettings, raw_dir: str, spm_dir: str, vocab: int,
                        valid_lines: Optional[int], hard_vocab_limit: bool = True,
                        workers: int = 1) -> str:
    """Learn one sentencepiece BPE model on the training text (source and target together) and
    write the pieces of every split to ``spm_dir``; returns the model's path."""
    exts = (task.src, task.tgt) if task.paired else ("txt",)
    inputs = [os.path.join(raw_dir, f"train.{ext}") for ext in exts]
    model = os.path.join(spm_dir, "spm.model")
    processor = sentencepiece.learn_bpe(inputs, model, sentencepiece.bpe_options(
        vocab, hard_vocab_limit=hard_vocab_limit, workers=workers,
        input_sentence_size=2_000_000))
    for split in SPLITS:
        for ext in exts:
            sentencepiece.encode_file(
                processor, os.path.join(raw_dir, f"{split}.{ext}"),
                os.path.join(spm_dir, f"{split}.{ext}"), workers,
                lines=valid_lines if split == "valid" and valid_lines else None)
    return model


def binarize(task: TaskSettings, spm_dir: str, data_bin: str, workers: int = 1) -> str:
    """fairseq-preprocess the pieces in ``spm_dir`` into ``data_bin``, written under a temporary
    name and renamed when complete: ``data_bin`` is either absent or whole."""
    if task.paired:
        prefix = lambda split: os.path.join(spm_dir, split)  # noqa: E731
        args = ["--source-lang", task.src, "--target-lang", task.tgt, "--joined-dictionary"]
    else:
        prefix = lambda split: os.path.join(spm_dir, f"{split}.txt")  # noqa: E731
        args = ["--only-source"]
    args += ["--trainpref", prefix("train"), "--validpref", prefix("valid"),
             "--testpref", prefix("test"), "--workers", str(workers)]
    return fairseq_cli.binarize(args, data_bin)


def corpus_stats(task: TaskSettings, spm_dir: str) -> Dict[str, int]:
    """Lines and sentencepiece tokens per split (source side for pairs), for the report."""
    stats = {}
    ext = task.src if task.paired else "txt"
    for split in SPLITS:
        lines = tokens = 0
        with open(os.path.join(spm_dir, f"{split}.{ext}"), encoding="utf-8") as f:
            for line in f:
                lines += 1
                tokens += len(line.split())
        stats[f"{split}_lines"] = lines
        stats[f"{split}_tokens"] = tokens
    return stats
