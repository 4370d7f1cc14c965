"""Readers on the real files in ../shared/data and on small files written in the official formats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import shared_file

from xstilts.data.examples import BitextExample, QAExample, SentencePairExample, TaggingExample
from xstilts.data.readers import available, find_file, find_files, read_examples, read_path
from xstilts.errors import ConfigError, MissingDataError

# ------------------------------------------------------------------------------------------
# Real data
# ------------------------------------------------------------------------------------------


def test_find_file_locates_every_layout_below_the_data_root(shared_data: Path) -> None:
    expect = {
        ("udpos", "test", "af"): "udpos/xtreme-format/download/udpos/test-af.tsv",
        ("panx", "dev", "de"): "panx/download/panx/dev-de.tsv",
        ("xquad", "test", "de"): "xquad/xquad.de.json",
        ("tatoeba", "test", "de"): "tatoeba/v1/tatoeba.deu-eng.deu",
        ("mlqa", "test", "de"): "mlqa/xtreme-mock/mock_test_data/labels/mlqa/test-de.json",
        ("tydiqa", "test", "sw"): "tydiqa/xtreme-mock/mock_test_data/labels/tydiqa/test-sw.json",
        # no XTREME-format test-de here, so the raw UD treebank is used
        ("udpos", "test", "de"): "udpos/raw-conllu/UD_German-GSD/de_gsd-ud-test.conllu",
    }
    for (task, split, lang), relative in expect.items():
        if not (shared_data / relative).exists():
            pytest.skip(f"real data file not present: {relative}")
        assert find_file(task, shared_data, split, lang) == shared_data / relative
    assert find_file("xquad", shared_data, "test", "hi") is None or (
        shared_data / "xquad/xquad.hi.json"
    ).exists()
    assert find_file("xnli", shared_data, "test", "de") is None


def test_available_lists_present_languages(shared_data: Path) -> None:
    shared_file("xquad/xquad.de.json")
    xquad = available("xquad", shared_data)
    assert set(xquad) == {"test"}
    assert {"de", "en", "zh"} <= set(xquad["test"])
    assert "ro" not in xquad["test"]  # present on disk, but not an XTREME XQuAD language
    assert available("xnli", shared_data) == {}
    tydiqa = available("tydiqa", shared_data)
    assert tydiqa["test"] == ["ar", "bn", "en", "fi", "id", "ko", "ru", "sw", "te"]


def test_udpos_xtreme_format(shared_data: Path) -> None:
    shared_file("udpos/xtreme-format/download/udpos/train-en.tsv")
    train = read_examples("udpos", shared_data, "train", "en")
    assert len(train) == 1000  # MANIFEST: first 1000 sentences
    assert sum(len(e.tokens) for e in train) == 21856  # token lines in the slice
    first = train[0]
    assert isinstance(first, TaggingExample)
    assert first.tokens[:5] == ["Al", "-", "Zaman", ":", "American"]
    assert first.tags[:5] == ["PROPN", "PUNCT", "PROPN", "PUNCT", "ADJ"]
    assert len(first.tokens) == len(first.tags) == 29
    test_tl = read_examples("udpos", shared_data, "test", "tl")
    # the whole file: 54 blank-line-terminated sentences and a last one with no blank line after it
    assert len(test_tl) == 55


def test_udpos_raw_conllu_matches_xtreme_tokens(shared_data: Path) -> None:
    raw = read_path(
        "udpos", shared_file("udpos/raw-conllu/UD_English-EWT/en_ewt-ud-dev.conllu"), "dev", "en"
    )
    xtreme = read_path(
        "udpos", shared_file("udpos/xtreme-format/download/udpos/dev-en.tsv"), "dev", "en"
    )
    assert len(raw) == len(xtreme) == 200
    # 4007 word lines; 346 multiword-token ranges and 416 empty nodes are skipped
    assert sum(len(e.tokens) for e in raw) == 4007
    # XTREME's dev-en starts with the same EWT dev sentences: the same words
    assert [e.tokens for e in raw] == [e.tokens for e in xtreme]


def test_udpos_raw_conllu_french(shared_data: Path) -> None:
    path = shared_file("udpos/raw-conllu/UD_French-GSD/fr_gsd-ud-test.conllu")
    sentences = read_path("udpos", path, "test", "fr")
    assert len(sentences) == 100
    assert sum(len(e.tokens) for e in sentences) == 2584
    assert sentences[0].tokens[:4] == ["Je", "sens", "qu'", "entre"]
    assert sentences[0].tags[:4] == ["PRON", "VERB", "SCONJ", "ADP"]


def test_panx_dev(shared_data: Path) -> None:
    shared_file("panx/download/panx/dev-de.tsv")
    dev = read_examples("panx", shared_data, "dev", "de")
    assert len(dev) == 200
    assert sum(len(e.tokens) for e in dev) == 1889
    assert dev[0].tokens == ["Anton", "Wilhelm", "von", "Zuccalmaglio", "."]
    assert dev[0].tags == ["B-PER", "I-PER", "I-PER", "I-PER", "O"]
    # jv: the whole file, its last sentence not followed by a blank line
    assert len(read_examples("panx", shared_data, "dev", "jv")) == 100


def test_xquad(shared_data: Path) -> None:
    shared_file("xquad/xquad.de.json")
    for lang in ("de", "en", "zh"):
        questions = read_examples("xquad", shared_data, "test", lang)
        assert len(questions) == 225
        assert all(isinstance(q, QAExample) and q.answers for q in questions)
        for q in questions:
            for a in q.answers:
                assert q.context[a.answer_start : a.answer_start + len(a.text)] == a.text
    en = read_examples("xquad", shared_data, "test", "en")
    de = read_examples("xquad", shared_data, "test", "de")
    assert [q.id for q in en] == [q.id for q in de]  # parallel


def test_mlqa_and_tydiqa_mock_labels(shared_data: Path) -> None:
    shared_file("mlqa/xtreme-mock/mock_test_data/labels/mlqa/test-de.json")
    counts = {lang: len(read_examples("mlqa", shared_data, "test", lang)) for lang in ("ar", "de", "vi")}
    assert counts == {"ar": 2, "de": 1, "vi": 2}
    de = read_examples("mlqa", shared_data, "test", "de")[0]
    assert de.id.startswith("c076d4b0")
    shared_file("tydiqa/xtreme-mock/mock_test_data/labels/tydiqa/test-en.json")
    en = read_examples("tydiqa", shared_data, "test", "en")
    assert len(en) == 1
    assert en[0].id == "english--3215621880858840488-2"
    assert [(a.text, a.answer_start) for a in en[0].answers] == [("Wound care", 0)]


def test_tatoeba_laser_files(shared_data: Path) -> None:
    shared_file("tatoeba/v1/tatoeba.deu-eng.deu")
    (bitext,) = read_examples("tatoeba", shared_data, "test", "de")
    assert isinstance(bitext, BitextExample)
    assert len(bitext.source) == len(bitext.target) == len(bitext.gold) == 1000
    assert bitext.source["0"] == "Maria sagte, sie wisse nicht, wo Tom sei."
    assert bitext.target["0"] == "Mary said she didn't know where Tom was."
    assert ("999", "999") in bitext.gold
    shared_file("tatoeba/v1/tatoeba.jav-eng.jav")
    (jv,) = read_examples("tatoeba", shared_data, "test", "jv")
    assert len(jv.source) == len(jv.gold) == 205  # pairs may have fewer than 1000 lines


def test_missing_file_and_unknown_split(shared_data: Path) -> None:
    with pytest.raises(MissingDataError, match="xnli/test-de.tsv"):
        read_examples("xnli", shared_data, "test", "de")
    with pytest.raises(ConfigError, match="no split"):
        read_examples("tatoeba", shared_data, "train", "de")
    with pytest.raises(MissingDataError):
        available("xquad", shared_data / "does-not-exist")


# ------------------------------------------------------------------------------------------
# Small files in the official formats, for the tasks whose data is not here
# ------------------------------------------------------------------------------------------


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _squad(paragraphs: list[tuple[str, list[tuple[str, str, list[tuple[str, int]]]]]]) -> str:
    data = {
        "version": "1.0",
        "data": [
            {
                "title": "t",
                "paragraphs": [
                    {
                        "context": context,
                        "qas": [
                            {
                                "id": qid,
                                "question": question,
                                "answers": [{"text": t, "answer_start": s} for t, s in answers],
                            }
                            for qid, question, answers in qas
                        ],
                    }
                    for context, qas in paragraphs
                ],
            }
        ],
    }
    return json.dumps(data, indent=2)


@pytest.fixture()
def xtreme_tree(tmp_path: Path) -> Path:
    """A miniature of what XTREME's download_data.sh leaves in download/."""
    root = tmp_path / "download"
    # XNLI / PAWS-X: csv.writer with a tab delimiter quotes fields holding '"'
    _write(
        root / "xnli/train-en.tsv",
        'He said "hi".\tHe greeted.\tentailment\n'
        '"""Go"", she said."\tShe stayed.\tcontradiction\n'
        "A man sleeps.\tA man is awake.\tcontradiction\n",
    )
    _write(root / "xnli/dev-de.tsv", "Ein Mann schläft.\tEin Mann ist wach.\tcontradiction\n")
    _write(root / "xnli/test-de.tsv", "Ein Hund bellt.\tEin Tier macht Lärm.\nEr geht.\tEr läuft.\n")
    _write(root / "pawsx/train-en.tsv", "a b c\tc b a\t0\nx y\tx y\t1\n")
    _write(root / "pawsx/test-fr.tsv", "un deux\tdeux un\n")
    # PAN-X test in XTREME: tokens only (labels withheld)
    _write(root / "panx/test-de.tsv", "Berlin\nist\nschön\n\nJa\n")
    # BUCC 2018 after XTREME's renaming: sample -> dev (with gold), training -> test (gold removed)
    _write(root / "bucc2018/de-en.dev.de", "de-000000001\tHallo Welt.\nde-000000002\tGuten Tag.\n")
    _write(
        root / "bucc2018/de-en.dev.en",
        "en-000000001\tGood day.\nen-000000002\tHello world.\nen-000000003\tNoise.\n",
    )
    _write(root / "bucc2018/de-en.dev.gold", "de-000000001\ten-000000002\nde-000000002\ten-000000001\n")
    _write(root / "bucc2018/de-en.test.de", "de-000000007\tEins.\n")
    _write(root / "bucc2018/de-en.test.en", "en-000000009\tOne.\n")
    # MLQA: the MLQA_V1 archive as unzipped by download_mlqa
    mlqa = _squad([("Der Berg ist 2549 m hoch.", [("q1", "Wie hoch?", [("2549 m", 13)])])])
    _write(root / "mlqa/MLQA_V1/test/test-context-de-question-de.json", mlqa)
    _write(root / "mlqa/MLQA_V1/dev/dev-context-de-question-de.json", mlqa)
    # TyDiQA-GoldP as utils_preprocess.py renames it; XTREME blanks the test answers
    _write(
        root / "tydiqa/tydiqa-goldp-v1.1-dev/tydiqa.goldp.sw.dev.json",
        _squad([("Nairobi ni mji mkuu.", [("swahili-1-0", "Mji mkuu?", [("", 0)])])]),
    )
    _write(
        root / "tydiqa/tydiqa-goldp-v1.1-train/tydiqa.goldp.en.train.json",
        _squad([("Paris is big.", [("english-1-1", "What is big?", [("Paris", 0)])])]),
    )
    # Tatoeba in XTREME's layout: the English side sorted; gold indices kept apart
    _write(root / "tatoeba/de-en.de", "Ich bin hier.\nDanke.\n")
    _write(root / "tatoeba/de-en.en", "I am here.\nThank you.\n")
    _write(tmp_path / "download/labels/tatoeba/test-de.tsv", "0\n1\n")
    return root


def test_xnli_and_pawsx(xtreme_tree: Path) -> None:
    train = read_examples("xnli", xtreme_tree, "train", "en")
    assert [e.label for e in train] == ["entailment", "contradiction", "contradiction"]
    assert train[0].text_a == 'He said "hi".'  # a quote not at the start stays as is
    assert train[1].text_a == '"Go", she said.'  # csv quoting undone
    assert isinstance(train[0], SentencePairExample) and train[0].id == "train-en-0"
    test = read_examples("xnli", xtreme_tree, "test", "de")
    assert [(e.text_a, e.label) for e in test] == [("Ein Hund bellt.", None), ("Er geht.", None)]
    assert read_examples("xnli", xtreme_tree, "dev", "de")[0].label == "contradiction"
    assert [e.label for e in read_examples("pawsx", xtreme_tree, "train", "en")] == ["0", "1"]
    assert read_examples("pawsx", xtreme_tree, "test", "fr")[0].label is None
    assert available("xnli", xtreme_tree) == {"train": ["en"], "dev": ["de"], "test": ["de"]}


def test_unlabelled_panx_test(xtreme_tree: Path) -> None:
    test = read_examples("panx", xtreme_tree, "test", "de")
    assert [(e.tokens, e.tags) for e in test] == [(["Berlin", "ist", "schön"], None), (["Ja"], None)]


def test_bucc(xtreme_tree: Path) -> None:
    (dev,) = read_examples("bucc2018", xtreme_tree, "dev", "de")
    assert dev.source == {"de-000000001": "Hallo Welt.", "de-000000002": "Guten Tag."}
    assert len(dev.target) == 3
    assert dev.gold == {("de-000000001", "en-000000002"), ("de-000000002", "en-000000001")}
    (test,) = read_examples("bucc2018", xtreme_tree, "test", "de")
    assert test.source == {"de-000000007": "Eins."} and test.gold == set()
    assert available("bucc2018", xtreme_tree) == {"dev": ["de"], "test": ["de"]}


def test_bucc_original_archive_names(tmp_path: Path) -> None:
    _write(tmp_path / "bucc2018/fr-en/fr-en.sample.fr", "fr-000000001\tBonjour.\n")
    _write(tmp_path / "bucc2018/fr-en/fr-en.sample.en", "en-000000004\tHello.\n")
    _write(tmp_path / "bucc2018/fr-en/fr-en.sample.gold", "fr-000000001\ten-000000004\n")
    (dev,) = read_examples("bucc2018", tmp_path, "dev", "fr")
    assert dev.gold == {("fr-000000001", "en-000000004")}


def test_full_mlqa_and_tydiqa_layouts(xtreme_tree: Path) -> None:
    (q,) = read_examples("mlqa", xtreme_tree, "test", "de")
    assert (q.id, q.question, [(a.text, a.answer_start) for a in q.answers]) == (
        "q1",
        "Wie hoch?",
        [("2549 m", 13)],
    )
    assert find_file("mlqa", xtreme_tree, "dev", "de").name == "dev-context-de-question-de.json"
    (sw,) = read_examples("tydiqa", xtreme_tree, "test", "sw")
    assert sw.id == "swahili-1-0" and sw.answers == []  # blanked test answer: no gold
    (en,) = read_examples("tydiqa", xtreme_tree, "train", "en")
    assert en.answers[0].text == "Paris"


def test_tatoeba_xtreme_layout_with_separate_gold(xtreme_tree: Path) -> None:
    (bitext,) = read_examples("tatoeba", xtreme_tree.parent, "test", "de")
    assert bitext.source == {"0": "Ich bin hier.", "1": "Danke."}
    assert bitext.gold == {("0", "0"), ("1", "1")}


def test_raw_conllu_merges_treebanks_and_skips_ranges(tmp_path: Path) -> None:
    def sentence(words: list[tuple[str, str, str]]) -> str:
        lines = ["# sent_id = x"]
        for wid, form, upos in words:
            lines.append("\t".join([wid, form, "_", upos, "_", "_", "0", "root", "_", "_"]))
        return "\n".join(lines) + "\n\n"

    _write(
        tmp_path / "UD_French-A/fr_a-ud-test.conllu",
        sentence([("1-2", "du", "_"), ("1", "de", "ADP"), ("2", "le", "DET"), ("2.1", "x", "_"), ("3", "pain", "NOUN")]),
    )
    # a treebank without its text (all forms '_'): left out, as XTREME does
    _write(
        tmp_path / "UD_French-B/fr_b-ud-test.conllu",
        sentence([("1", "_", "NOUN"), ("2", "_", "VERB")]) + sentence([("1", "200 000", "NUM")]),
    )
    assert [p.parent.name for p in find_files("udpos", tmp_path, "test", "fr")] == ["UD_French-A", "UD_French-B"]
    sentences = read_examples("udpos", tmp_path, "test", "fr")
    assert [(s.tokens, s.tags) for s in sentences] == [
        (["de", "le", "pain"], ["ADP", "DET", "NOUN"]),
        (["200000"], ["NUM"]),
    ]
    assert [s.id for s in sentences] == ["test-fr-0", "test-fr-1"]


def test_listing_cache_sees_new_files(tmp_path: Path) -> None:
    assert find_file("xquad", tmp_path, "test", "de") is None
    _write(tmp_path / "xquad/xquad.de.json", _squad([("abc", [("q", "?", [("b", 1)])])]))
    assert find_file("xquad", tmp_path, "test", "de") == tmp_path / "xquad/xquad.de.json"
    assert read_examples("xquad", tmp_path, "test", "de")[0].answers[0].text == "b"


def test_symlinked_folders_are_followed_and_paths_keep_the_callers_spelling(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    _write(elsewhere / "xquad.de.json", _squad([("abc", [("q", "?", [("c", 2)])])]))
    data = tmp_path / "data"
    data.mkdir()
    (data / "xquad").symlink_to(elsewhere, target_is_directory=True)
    (data / "loop").symlink_to(data, target_is_directory=True)  # a cycle must not hang the walk
    assert find_file("xquad", data, "test", "de") == data / "xquad/xquad.de.json"
    assert read_examples("xquad", data, "test", "de")[0].answers[0].text == "c"
