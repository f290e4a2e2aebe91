"""``--scoring rouge`` against the rouge-score package on the same strings (exact)."""
import re

import pytest

import memsizer_fairseq  # noqa: F401  (registers the scorer)
from fairseq import options, scoring
from fairseq.data import data_utils
from fairseq.dataclass.utils import convert_namespace_to_omegaconf
from rouge_score import rouge_scorer

from memsizer_fairseq.scoring.rouge import FairseqRougeScorer, RougeScorerConfig

REFERENCES = [
    "The cat sat on the mat.",
    "Police said the suspect fled in a blue car on Monday.",
    "Stocks rallied; the index closed 2% higher.",
    "A short one",
    "",  # empty reference
    "Running runners ran quickly",
]
HYPOTHESES = [
    "the cat was sitting on a mat",
    "",  # empty hypothesis
    "The index closed higher as stocks rallied.",
    "A short one",
    "something",
    "the runner runs quick",
]
LINE = re.compile(r"^ROUGE-1 = (\d+\.\d\d), ROUGE-2 = (\d+\.\d\d), ROUGE-L = (\d+\.\d\d)$")


def scorer(**overrides):
    return FairseqRougeScorer(RougeScorerConfig(**overrides))


def reference_means(refs, hyps, types=("rouge1", "rouge2", "rougeL"), use_stemmer=False):
    direct = rouge_scorer.RougeScorer(list(types), use_stemmer=use_stemmer)
    totals = {t: 0.0 for t in types}
    for ref, hyp in zip(refs, hyps):
        scores = direct.score(ref, hyp)  # rouge-score's order: (target, prediction)
        for t in types:
            totals[t] += scores[t].fmeasure
    return {t: 100.0 * totals[t] / len(refs) for t in types}


def fill(s, refs, hyps):
    for ref, hyp in zip(refs, hyps):
        s.add_string(ref, hyp)
    return s


@pytest.mark.parametrize("use_stemmer", [False, True])
def test_scores_equal_rouge_score(use_stemmer):
    s = fill(scorer(rouge_use_stemmer=use_stemmer), REFERENCES, HYPOTHESES)
    expected = reference_means(REFERENCES, HYPOTHESES, use_stemmer=use_stemmer)
    assert s.scores() == expected  # exact: the same package, the same arithmetic
    assert s.score() == expected["rougeL"]
    match = LINE.match(s.result_string())
    assert match, s.result_string()
    assert [float(x) for x in match.groups()] == [
        round(expected[t], 2) for t in ("rouge1", "rouge2", "rougeL")
    ]


def test_stemming_changes_the_score():
    plain = fill(scorer(), REFERENCES, HYPOTHESES).scores()
    stemmed = fill(scorer(rouge_use_stemmer=True), REFERENCES, HYPOTHESES).scores()
    assert stemmed["rouge1"] > plain["rouge1"]  # "runner"/"runners", "runs"/"ran" ...


def test_empty_hypotheses_and_empty_corpus():
    s = fill(scorer(), ["a b c", "d e"], ["", ""])
    assert s.scores() == {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    assert s.result_string() == "ROUGE-1 = 0.00, ROUGE-2 = 0.00, ROUGE-L = 0.00"
    assert scorer().result_string() == "ROUGE-1 = 0.00, ROUGE-2 = 0.00, ROUGE-L = 0.00"


def test_identical_strings_score_100():
    same = ["the cat sat", "a dog barked loudly"]
    s = fill(scorer(), same, same)
    assert s.result_string() == "ROUGE-1 = 100.00, ROUGE-2 = 100.00, ROUGE-L = 100.00"


def test_rouge_lsum_with_a_sentence_separator():
    refs = ["the cat sat on the mat <q> it was happy", "police arrived <q> the man left"]
    hyps = ["it was happy <q> the cat sat", "the man left quickly"]
    s = fill(scorer(rouge_lsum=True, rouge_sentence_separator="<q>"), refs, hyps)
    newline = lambda text: "\n".join(part.strip() for part in text.split("<q>"))  # noqa: E731
    expected = reference_means([newline(r) for r in refs], [newline(h) for h in hyps],
                               types=("rouge1", "rouge2", "rougeL", "rougeLsum"))
    assert s.scores() == expected
    assert expected["rougeLsum"] > expected["rougeL"]  # sentence order no longer matters
    assert s.result_string().endswith(f"ROUGE-Lsum = {expected['rougeLsum']:.2f}")


def test_sentencepiece_post_processing(tmp_path):
    """fairseq-generate turns pieces back into text (``--post-process sentencepiece``) before
    it calls the scorer: the score is that of the detokenized strings."""
    import sentencepiece as spm

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(REFERENCES + HYPOTHESES) * 20 + "\n")
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(tmp_path / "m"),
                                   vocab_size=60, model_type="bpe", minloglevel=2,
                                   hard_vocab_limit=False)
    sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "m.model"))
    pieces = lambda text: " ".join(sp.encode(text, out_type=str))  # noqa: E731
    assert any("\u2581" in pieces(r) for r in REFERENCES)

    on_pieces = fill(scorer(), [pieces(r) for r in REFERENCES], [pieces(h) for h in HYPOTHESES])
    undo = lambda text: data_utils.post_process(pieces(text), "sentencepiece")  # noqa: E731
    detok = fill(scorer(), [undo(r) for r in REFERENCES], [undo(h) for h in HYPOTHESES])
    expected = reference_means(REFERENCES, HYPOTHESES)
    assert detok.scores() == expected
    assert on_pieces.scores() != expected  # what scoring without --post-process would give


def test_registered_and_built_from_the_command_line():
    assert "rouge" in scoring.SCORER_REGISTRY
    parser = options.get_generation_parser()
    args = options.parse_args_and_arch(
        parser, ["data", "--scoring", "rouge", "--rouge-use-stemmer", "--rouge-lsum",
                 "--rouge-sentence-separator", "<q>"])
    cfg = convert_namespace_to_omegaconf(args)
    built = scoring.build_scorer(cfg.scoring, None)
    assert isinstance(built, FairseqRougeScorer)
    assert built.rouge.types == ["rouge1", "rouge2", "rougeL", "rougeLsum"]
    assert built.rouge.separator == "<q>"
    built.add_string("the cat sat", "the cat sat")
    assert built.result_string() == (
        "ROUGE-1 = 100.00, ROUGE-2 = 100.00, ROUGE-L = 100.00, ROUGE-Lsum = 100.00"
    )
