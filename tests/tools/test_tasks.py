"""The task descriptions the tools share: raw-file layouts, targets, synthetic corpora, and the
comparison and the recipes reading the same description."""
import os

import pytest

from memsizer_fairseq.tools import tasks
from memsizer_fairseq.tools.compare.settings import TASKS as COMPARED
from memsizer_fairseq.tools.recipes import RECIPES
from memsizer_fairseq.tools.tasks import TASKS, Layout, Measure


def test_a_layout_names_its_files_and_prefixes(tmp_path):
    pairs = Layout(("en", "de"))
    assert pairs.paired and pairs.files("d")[:2] == ["d/train.en", "d/train.de"]
    assert pairs.prefix("d", "test") == "d/test" and pairs.pairs("d")[2] == ("d/test.en",
                                                                          "d/test.de")
    text = Layout(("tokens",), pattern="wiki.{split}.{side}")
    assert not text.paired and text.files("d") == [f"d/wiki.{s}.tokens" for s in tasks.SPLITS]
    assert text.pairs("d") == []
    with pytest.raises(ValueError, match="prefix"):
        Layout(("txt",), pattern="{side}/{split}").prefix("d", "train")


def test_targets_absolute_and_relative():
    bleu = Measure("bleu", "BLEU", tolerance=1.0)
    assert bleu.met(9.0, 10.0) and not bleu.met(8.99, 10.0)
    assert bleu.difference(9.5, 10.0) == "-0.50"
    perplexity = Measure("ppl", "ppl", higher_is_better=False, tolerance=0.1, relative=True)
    assert perplexity.met(109.9, 100.0) and not perplexity.met(110.1, 100.0)
    assert perplexity.difference(105.0, 100.0) == "+5.0%"
    assert perplexity.describe_tolerance() == "10% above it"
    assert Measure("rouge1", "ROUGE-1").met(0.0, 50.0) is None  # no target


@pytest.mark.parametrize("name", sorted(TASKS))
def test_each_task_writes_its_synthetic_corpus_in_any_layout(name, tmp_path):
    task = TASKS[name]
    sizes = {"train": 20, "valid": 3, "test": 3}
    layout = task.layout if task.paired else Layout(("tokens",), pattern="wiki.{split}.{side}")
    for target in (task.layout, layout):
        directory = tmp_path / target.pattern.replace("{", "").replace("}", "")
        task.write_tiny_corpus(str(directory), target, sizes)
        for path in target.files(str(directory)):
            assert os.path.getsize(path) > 0, path
        for source, reference in target.pairs(str(directory)):
            assert len(open(source).readlines()) == len(open(reference).readlines())


def test_the_evaluators_score_hypotheses_as_fairseqs_scorers():
    from memsizer_fairseq.tools.toolkit.generation import Generated

    out = Generated(pieces={0: "\u2581x \u2581y"}, hypotheses={0: "x y", 1: "the cat sat"},
                    references={0: "x y z", 1: "the cat sat"}, seconds=0.5, tokens=3)
    import sacrebleu

    assert tasks.TRANSLATION.evaluator.score(out)["sacrebleu"] == pytest.approx(
        sacrebleu.corpus_bleu(["x y", "the cat sat"], [["x y z", "the cat sat"]]).score)
    assert out.length_ratio() == pytest.approx(5 / 6)
    rouge = tasks.SUMMARIZATION.evaluator.score(out)
    assert rouge["rouge1"] == pytest.approx(100 * (0.8 + 1.0) / 2)  # F1 of 2/2 and 2/3: 0.8
    stemmed = Generated({}, {0: "cats running"}, {0: "cat run"}, 1.0, 2,
                        scoring={"rouge_use_stemmer": True})
    assert tasks.SUMMARIZATION.evaluator.score(stemmed)["rouge1"] == 100.0
    assert not tasks.LANGUAGE_MODELING.evaluator.times_generation


def test_the_comparison_and_the_recipes_share_the_task_descriptions():
    described = sorted(map(id, TASKS.values()))
    assert sorted({id(t.task) for t in COMPARED.values()}) == described
    assert sorted({id(r.task) for r in RECIPES.values()}) == described
    for compared in COMPARED.values():  # the task's generation flags under the comparison's
        flags = compared.evaluate_flags("tiny")
        assert all(flags[k] == v for k, v in compared.task.generation.items())
