"""Raw corpora are checked before anything expensive: compare and the recipes refuse missing,
non-UTF-8, empty or misaligned files in one line naming the file, and leave nothing behind; a
corpus too small for the vocabulary is refused (asked for) or gets the largest it allows."""
import os
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memsizer_fairseq.tools import recipes
from memsizer_fairseq.tools.compare import data
from memsizer_fairseq.tools.compare.__main__ import main as compare_main
from memsizer_fairseq.tools.compare.runner import Comparison
from memsizer_fairseq.tools.compare.settings import TRANSLATION
from memsizer_fairseq.tools.toolkit.corpus_checks import CorpusError, check_corpus, count_lines
from memsizer_fairseq.tools.toolkit import fairseq_cli
from memsizer_fairseq.tools.toolkit.toy_data import write_toy_translation


def _pairs(root, lines_en, lines_de=None):
    root.mkdir(exist_ok=True)
    for split in ("train", "valid", "test"):
        (root / f"{split}.en").write_bytes(lines_en)
        (root / f"{split}.de").write_bytes(lines_de if lines_de is not None else lines_en)
    return root


@pytest.mark.parametrize("content, message", [
    (b"", "no text"),
    (b"\n  \n", "no text"),
    (b"ok\nbad \xff byte\n", "line 2 is not UTF-8 (byte 0xff at column 5)"),
])
def test_unusable_files_are_named(tmp_path, content, message):
    path = tmp_path / "train.en"
    path.write_bytes(content)
    with pytest.raises(CorpusError, match=re.escape(message)) as info:
        count_lines(str(path))
    assert str(path) in str(info.value)
    with pytest.raises(CorpusError, match="no such file"):
        count_lines(str(tmp_path / "missing.en"))


def test_parallel_sides_must_have_equal_lines(tmp_path):
    (tmp_path / "a.en").write_text("one\ntwo\n")
    (tmp_path / "a.de").write_text("eins\n")
    with pytest.raises(CorpusError, match=r"a\.en has 2 lines but .*a\.de has 1"):
        check_corpus([str(tmp_path / "a.en"), str(tmp_path / "a.de")],
                     [(str(tmp_path / "a.en"), str(tmp_path / "a.de"))])


@pytest.mark.parametrize("corpus, message", [
    (None, "lacks"),
    ((b"one\ntwo\n", b"eins\n"), "has 2 lines but"),
    ((b"one\ntwo\n", b"eins\nzw\xc3ei\n"), "line 2 is not UTF-8"),
])
def test_compare_refuses_bad_raw_data_and_leaves_nothing(tmp_path, capsys, corpus, message):
    raw = tmp_path / "raw" if corpus is None else _pairs(tmp_path / "raw", *corpus)
    work = tmp_path / "work"
    code = compare_main(["--tasks", "translation", "--raw-dir", str(raw), "--work-dir",
                         str(work), "--no-progress"])
    captured = capsys.readouterr()
    assert code == 2 and message in captured.err and "Traceback" not in captured.err
    assert not work.exists() and "report:" not in captured.out


def test_recipe_refuses_bad_raw_data_before_writing(tmp_path, capsys):
    raw = _pairs(tmp_path / "raw", b"one\n", b"\xff\n")
    with pytest.raises(SystemExit) as exit_info:
        recipes.main(["--task", "translation", "iwslt14_de_en", "--raw-dir", str(raw),
                      "--work-dir", str(tmp_path / "work")])
    assert exit_info.value.code == 2
    assert "line 1 is not UTF-8" in capsys.readouterr().err
    assert not (tmp_path / "work").exists()


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("small")
    write_toy_translation(str(root), {"train": 200, "valid": 20, "test": 20}, seed=3,
                          src="en", tgt="de")
    return root


def test_a_vocabulary_the_corpus_cannot_fill_is_refused_when_asked(small_corpus, tmp_path,
                                                                    capsys):
    work = tmp_path / "work"
    code = compare_main(["--tasks", "translation", "--raw-dir", str(small_corpus),
                         "--work-dir", str(work), "--vocab-size", "8000", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "--vocab-size: a sentencepiece vocabulary of 8000" in err
    assert "allows: at most" in err and not work.exists()


def test_the_default_vocabulary_shrinks_to_what_the_corpus_allows(small_corpus, tmp_path):
    comparison = Comparison(TRANSLATION, str(tmp_path / "work"), raw_dir=str(small_corpus),
                            out=open(os.devnull, "w"))
    stats = comparison.prepare_data()
    assert 0 < stats["spm_vocab"] < TRANSLATION.budgets["full"].spm_vocab
    assert stats["train_lines"] == 200
    assert os.path.isfile(os.path.join(comparison.data_bin, "dict.en.txt"))


_LINES = st.lists(st.one_of(st.text(max_size=30), st.just(""), st.just("x " * 2000),
                            st.binary(max_size=12).map(lambda b: b.decode("latin-1"))),
                  max_size=8)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(en=_LINES, de=_LINES, bad_bytes=st.booleans())
def test_random_corpora_are_processed_or_refused_cleanly(tmp_path_factory, en, de, bad_bytes):
    """Empty lines, very long lines, invalid bytes, mismatched counts: check_raw_dir returns the
    line counts or raises CorpusError; nothing else escapes."""
    root = tmp_path_factory.mktemp("random")

    def encode(lines):
        text = "".join(line.replace("\n", " ").replace("\r", " ") + "\n" for line in lines)
        return text.encode("utf-8") + (b"\xfe\n" if bad_bytes else b"")

    _pairs(root, encode(en), encode(de))
    try:
        counts = data.check_raw_dir(TRANSLATION, str(root))
    except CorpusError as error:
        assert str(root) in str(error)
        blank = not any(s.strip() for s in en) or not any(s.strip() for s in de)
        assert bad_bytes or len(en) != len(de) or blank, error
    else:
        assert not bad_bytes and len(en) == len(de) and any(s.strip() for s in en)
        assert set(counts.values()) == {len(en)}


def test_a_failed_binarization_leaves_no_data_folder(tmp_path):
    """fairseq-preprocess writes under a temporary name renamed when complete: a failed run
    leaves neither the data folder nor the temporary one, and an earlier data folder is
    replaced only by a complete one."""
    dest = tmp_path / "data-bin"
    with pytest.raises(fairseq_cli.FairseqCommandError):
        fairseq_cli.preprocess(str(dest), str(tmp_path / "missing"), str(tmp_path / "missing"))
    assert not dest.exists()
    prefixes = write_toy_translation(str(tmp_path / "raw"), {"train": 50, "valid": 5,
                                                             "test": 5})
    fairseq_cli.preprocess(str(dest), prefixes["train"], prefixes["valid"], prefixes["test"])
    assert (dest / "test.src-tgt.tgt.idx").exists()
    assert not (tmp_path / "data-bin.partial").exists()
