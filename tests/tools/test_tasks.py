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


def test_the_evaluators_read_fairseq_output():
    generate = ("S-0\ta b\nT-0\tx y z\nH-0\t-0.1\tx y\nD-0\t-0.1\tx y\n"
                "Generate test with beam=4: BLEU4 = 12.34, 50.0/20.0/10.0/5.0 (BP=1.000)\n"
                "Translated 1 sentences (3 tokens) in 0.5s (2.00 sentences/s, 6.00 tokens/s)\n")
    scores = tasks.TRANSLATION.evaluator.read(generate)
    assert scores["sacrebleu"] == 12.34 and scores["sentences"] == 1
    assert scores["length_ratio"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        tasks.SUMMARIZATION.evaluator.read(generate)  # no ROUGE line
    lm = "Evaluated 100 tokens in 1.0s (100 tokens/s)\nLoss (base 2): 3.0000, Perplexity: 8.00\n"
    assert tasks.LANGUAGE_MODELING.evaluator.read(lm) == {"loss_base2": 3.0, "perplexity": 8.0}


def test_the_comparison_and_the_recipes_share_the_task_descriptions():
    described = sorted(map(id, TASKS.values()))
    assert sorted({id(t.task) for t in COMPARED.values()}) == described
    assert sorted({id(r.task) for r in RECIPES.values()}) == described
    for compared in COMPARED.values():  # the task's generation flags under the comparison's
        flags = compared.evaluate_flags(tiny=True)
        assert all(flags[k] == v for k, v in compared.task.generation.items())
