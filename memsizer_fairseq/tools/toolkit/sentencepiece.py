"""One joined sentencepiece (BPE) model learned on training text, applied line by line.

Shared by the recipes and the comparison: both learn one model on the source and target training
text together and write the pieces of every split, one line out per line in.
"""
import os
import re
from typing import List, Optional, Sequence

_VOCAB_TOO_HIGH = re.compile(
    r"Vocabulary size too high \(\d+\)\. Please set it to a value <= (\d+)")


class VocabularyTooLarge(ValueError):
    """The training text has fewer pieces than the vocabulary asked for."""

    def __init__(self, asked: int, allowed: int, inputs: Sequence[str]):
        super().__init__(f"a sentencepiece vocabulary of {asked} is more than the training text "
                         f"({', '.join(inputs)}) allows: at most {allowed}")
        self.asked, self.allowed = asked, allowed


def bpe_options(vocab: int, hard_vocab_limit: bool = True, workers: int = 1,
                input_sentence_size: int = 10_000_000, **overrides) -> dict:
    """sentencepiece trainer options of a BPE model covering every character."""
    options = dict(model_type="bpe", vocab_size=vocab, character_coverage=1.0,
                   input_sentence_size=input_sentence_size, shuffle_input_sentence=True,
                   hard_vocab_limit=hard_vocab_limit, num_threads=max(1, workers))
    options.update(overrides)
    return options


def learn_bpe(inputs: Sequence[str], model_path: str, options: dict):
    """Learn a model on the ``inputs`` files and write it to ``model_path`` (``*.model``);
    returns a processor for it. A vocabulary the text cannot fill raises
    :class:`VocabularyTooLarge`."""
    import sentencepiece as spm

    if not model_path.endswith(".model"):
        raise ValueError(f"{model_path}: a sentencepiece model path ends in .model")
    os.makedirs(os.path.dirname(os.path.abspath(model_path)), exist_ok=True)
    try:
        spm.SentencePieceTrainer.train(input=list(inputs), model_prefix=model_path[:-len(".model")],
                                       minloglevel=2, **options)
    except RuntimeError as error:
        allowed = _VOCAB_TOO_HIGH.search(str(error))
        if allowed is None:
            raise
        raise VocabularyTooLarge(options["vocab_size"], int(allowed.group(1)), inputs) from None
    return spm.SentencePieceProcessor(model_file=model_path)


def encode_file(processor, source: str, target: str, workers: int = 1, chunk: int = 10000,
                lines: Optional[int] = None):
    """Write the pieces of every line of ``source`` (of its first ``lines`` lines) to
    ``target``, one line out per line in."""
    with open(source, encoding="utf-8") as fin, open(target, "w", encoding="utf-8") as fout:
        batch: List[str] = []

        def flush():
            pieces = processor.encode(batch, out_type=str, num_threads=max(1, workers))
            fout.writelines(" ".join(p) + "\n" for p in pieces)
            batch.clear()

        for number, line in enumerate(fin):
            if lines is not None and number >= lines:
                break
            batch.append(line.strip())
            if len(batch) >= chunk:
                flush()
        if batch:
            flush()
