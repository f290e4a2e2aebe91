"""``--scoring rouge``: ROUGE-1/2/L F1 of fairseq-generate's output, computed by rouge-score.

fairseq-generate applies ``--post-process`` (``sentencepiece``, ``subword_nmt`` ...) and the
``--tokenizer`` / ``--bpe`` decoders before it hands each reference / hypothesis pair to the
scorer, so the scores are on detokenized text. The result line reads::

    Generate test with beam=4: ROUGE-1 = 41.20, ROUGE-2 = 18.70, ROUGE-L = 38.10

Each number is the mean over sentences of rouge-score's F1, times 100 (ROUGE-L is rouge-score's
``rougeL``, the sentence-level LCS). ``--rouge-lsum`` adds ``ROUGE-Lsum`` (summary-level LCS
over the sentences of a summary); ``--rouge-sentence-separator`` names the token that separates
sentences on a line (for example ``<q>``): it is replaced by a newline before scoring, as
rouge-score's ``rougeLsum`` expects, and is therefore never counted as a word.
``--rouge-use-stemmer`` turns on rouge-score's Porter stemmer.

Note that rouge-score's tokenizer lower-cases and keeps only ``[a-z0-9]`` runs: text in other
scripts scores as empty.
"""
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

from fairseq.dataclass import FairseqDataclass
from fairseq.scoring import BaseScorer, register_scorer

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")
_LABELS = {"rouge1": "ROUGE-1", "rouge2": "ROUGE-2", "rougeL": "ROUGE-L", "rougeLsum": "ROUGE-Lsum"}


def rouge_types(lsum: bool = False) -> List[str]:
    return list(ROUGE_TYPES) + (["rougeLsum"] if lsum else [])


def split_sentences(text: str, separator: Optional[str]) -> str:
    """Put each sentence on its own line (rouge-score's convention for ``rougeLsum``)."""
    if not separator:
        return text
    return "\n".join(part.strip() for part in text.split(separator))


class RougeF1:
    """Sentence-level rouge-score F1 values, summed, for corpus means (and distributed sums)."""

    def __init__(self, use_stemmer: bool = False, lsum: bool = False,
                 sentence_separator: Optional[str] = None):
        from rouge_score import rouge_scorer

        self.types = rouge_types(lsum)
        self.separator = sentence_separator
        self._scorer = rouge_scorer.RougeScorer(self.types, use_stemmer=use_stemmer)

    def sentence(self, reference: str, hypothesis: str) -> Dict[str, float]:
        """rouge-score's F1 of one pair (0..1), keyed by rouge type."""
        scores = self._scorer.score(
            split_sentences(reference, self.separator), split_sentences(hypothesis, self.separator)
        )
        return {name: scores[name].fmeasure for name in self.types}

    def sums(self, references: Sequence[str], hypotheses: Sequence[str]) -> Dict[str, float]:
        if len(references) != len(hypotheses):
            raise ValueError(
                f"{len(references)} references but {len(hypotheses)} hypotheses"
            )
        totals = {name: 0.0 for name in self.types}
        for reference, hypothesis in zip(references, hypotheses):
            for name, value in self.sentence(reference, hypothesis).items():
                totals[name] += value
        return totals

    def corpus(self, references: Sequence[str], hypotheses: Sequence[str]) -> Dict[str, float]:
        """Mean F1 x 100 per rouge type (0 for an empty corpus)."""
        totals = self.sums(references, hypotheses)
        count = len(references)
        return {name: (100.0 * value / count if count else 0.0) for name, value in totals.items()}


def format_rouge(scores: Dict[str, float]) -> str:
    return ", ".join(f"{_LABELS[name]} = {value:.2f}" for name, value in scores.items())


@dataclass
class RougeScorerConfig(FairseqDataclass):
    rouge_use_stemmer: bool = field(
        default=False, metadata={"help": "ROUGE: apply rouge-score's Porter stemmer"}
    )
    rouge_lsum: bool = field(
        default=False, metadata={"help": "ROUGE: also report ROUGE-Lsum (summary-level LCS)"}
    )
    rouge_sentence_separator: Optional[str] = field(
        default=None,
        metadata={
            "help": "ROUGE: token that separates the sentences of a summary on one line "
            "(e.g. '<q>'); replaced by a newline before scoring"
        },
    )


@register_scorer("rouge", dataclass=RougeScorerConfig)
class FairseqRougeScorer(BaseScorer):
    """ROUGE F1 (x 100) of the detokenized hypotheses against the references."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self.rouge = RougeF1(
            use_stemmer=cfg.rouge_use_stemmer,
            lsum=cfg.rouge_lsum,
            sentence_separator=cfg.rouge_sentence_separator,
        )

    def add_string(self, ref, pred):
        self.ref.append(ref)
        self.pred.append(pred)

    def scores(self) -> Dict[str, float]:
        return self.rouge.corpus(self.ref, self.pred)

    def score(self) -> float:
        """ROUGE-L F1 x 100."""
        return self.scores()["rougeL"]

    def result_string(self) -> str:
        return format_rouge(self.scores())
