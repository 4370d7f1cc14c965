"""XTREME submission layout: paths, round trips, strict parsing, labels from reader examples."""

import json

import pytest
from conftest import SHARED_DATA, shared_file

from xstilts.data.examples import QAAnswer, QAExample
from xstilts.errors import DataFormatError
from xstilts.evaluation import layout


def test_paths_follow_evaluate_py(tmp_path):
    assert layout.prediction_path(tmp_path, "xquad", "de") == tmp_path / "xquad" / "test-de.json"
    assert layout.prediction_path(tmp_path, "udpos", "de") == tmp_path / "udpos" / "test-de.tsv"
    assert layout.label_path(tmp_path, "tatoeba", "af") == tmp_path / "tatoeba" / "test-af.tsv"
    assert layout.file_format("bucc2018") == "pairs"
    assert layout.file_format("tatoeba") == "index"
    assert layout.file_format("mlqa") == "qa"


@pytest.mark.parametrize(
    "task,predictions",
    [
        ("xnli", ["entailment", "neutral", "contradiction"]),
        ("pawsx", ["0", "1"]),
        ("udpos", [["NOUN", "X"], [], ["VERB"]]),
        ("panx", [["B-PER", "I-PER", "O"]]),
        ("xquad", {"q1": "the answer", "q2": ""}),
        ("mlqa", {"q1": "电化电池"}),
        ("bucc2018", [("de-000001", "en-000002"), ("de-000003", "en-000004")]),
        ("tatoeba", [0, 17, 999]),
    ],
)
def test_round_trip(tmp_path, task, predictions):
    path = layout.write_predictions(tmp_path, task, "de", predictions)
    assert path == layout.prediction_path(tmp_path, task, "de")
    assert layout.read_predictions(path, task) == predictions
    assert layout.languages_in(tmp_path, task) == ["de"]


def test_tag_file_format_on_disk(tmp_path):
    path = layout.write_predictions(tmp_path, "udpos", "en", [["NOUN", "VERB"], ["X"]])
    assert path.read_text() == "NOUN\nVERB\n\nX\n\n"


@pytest.mark.parametrize("bad", ["1.0", "-1", "01", "+3", "seven", "", "3 4"])
def test_tatoeba_rejects_anything_but_plain_integers(tmp_path, bad):
    path = tmp_path / "tatoeba" / "test-de.tsv"
    path.parent.mkdir()
    path.write_text(f"0\n12\n{bad}\n5\n")
    with pytest.raises(DataFormatError) as info:
        layout.read_predictions(path, "tatoeba")
    assert info.value.line == 3
    assert str(path) in str(info.value) and "integer" in str(info.value)


def test_tatoeba_tolerates_crlf(tmp_path):
    path = tmp_path / "t.tsv"
    path.write_bytes(b"0\r\n12\r\n")
    assert layout.read_predictions(path, "tatoeba") == [0, 12]
    path.write_bytes(b"0\r12\r")  # a lone CR ends a line too (universal newlines)
    assert layout.read_predictions(path, "tatoeba") == [0, 12]


@pytest.mark.parametrize("bad", ["de-1 en-1", "de-1\ten-1\textra", "\ten-1", ""])
def test_bucc_lines_need_two_fields(tmp_path, bad):
    path = tmp_path / "p.tsv"
    path.write_text(f"de-0\ten-0\n{bad}\n")
    with pytest.raises(DataFormatError) as info:
        layout.read_predictions(path, "bucc2018")
    assert info.value.line == 2


def test_empty_label_line_is_an_error(tmp_path):
    path = tmp_path / "p.tsv"
    path.write_text("entailment\n\nneutral\n")
    with pytest.raises(DataFormatError, match=r"p\.tsv:2: expected one label per line"):
        layout.read_predictions(path, "xnli")


def test_tags_like_evaluate_py_read_tag(tmp_path):
    path = tmp_path / "p.tsv"
    # two blank lines make an empty sentence; no trailing blank line is fine; token<TAB>tag too
    # (one or the other in a file: a mix is an error, tests/commands/test_bad_input_catalogue.py)
    path.write_text("NOUN\nVERB\n\n\nDET\nX")
    assert layout.read_predictions(path, "udpos") == [["NOUN", "VERB"], [], ["DET", "X"]]
    path.write_text("dogs\tNOUN\nbark\tVERB\n\n\nThe\tDET\n?\tX")
    assert layout.read_predictions(path, "udpos") == [["NOUN", "VERB"], [], ["DET", "X"]]


def test_undecodable_bytes_name_the_line(tmp_path):
    path = tmp_path / "p.tsv"
    path.write_bytes(b"0\n1\n\xff\xfe\n")
    with pytest.raises(DataFormatError) as info:
        layout.read_predictions(path, "tatoeba")
    assert info.value.line == 3 and "UTF-8" in str(info.value)


def test_qa_predictions_must_be_an_object_of_strings(tmp_path):
    path = tmp_path / "p.json"
    path.write_text('{"q1": "a",\n "q2": ')
    with pytest.raises(DataFormatError) as info:
        layout.read_predictions(path, "xquad")
    assert info.value.line == 2
    path.write_text('["a"]')
    with pytest.raises(DataFormatError, match="JSON object"):
        layout.read_predictions(path, "xquad")
    path.write_text('{"q1": 3}')
    with pytest.raises(DataFormatError, match="q1"):
        layout.read_predictions(path, "xquad")


def test_qa_labels_from_squad_json(tmp_path):
    gold = layout.read_labels(shared_file("xquad/xquad.de.json"), "xquad")
    assert len(gold) == 225 and all(answers for _, answers in gold)
    path = tmp_path / "l.json"
    path.write_text(json.dumps({"data": [{"paragraphs": [{"qas": [{"id": "q", "answers": []}]}]}]}))
    with pytest.raises(DataFormatError, match="at least one gold answer"):
        layout.read_labels(path, "xquad")
    path.write_text(json.dumps({"data": [{"title": "t"}]}))
    with pytest.raises(DataFormatError, match="paragraphs"):
        layout.read_labels(path, "xquad")
    # evaluate.py's read_squad also takes the bare article list
    path.write_text(
        json.dumps([{"paragraphs": [{"qas": [{"id": "q", "answers": [{"text": "a"}]}]}]}])
    )
    assert layout.read_labels(path, "mlqa") == [("q", ["a"])]


def test_real_tag_files_read_as_labels():
    gold = layout.read_labels(
        shared_file("udpos/xtreme-format/download/udpos/test-en.tsv"), "udpos"
    )
    assert len(gold) == 60
    assert gold[0] == ["PRON", "SCONJ", "PROPN", "VERB", "ADP", "PROPN", "PUNCT"]
    panx = layout.read_labels(shared_file("panx/download/panx/dev-en.tsv"), "panx")
    assert len(panx) == 200 and panx[0][:2] == ["B-ORG", "I-ORG"]


def test_write_labels_qa_is_squad_format(tmp_path):
    examples = [
        QAExample(
            id="q1", question="?", context="ctx one", answers=[QAAnswer("one", 4)], title="A"
        ),
        QAExample(
            id="q2",
            question="?",
            context="ctx one",
            answers=[QAAnswer("ctx", 0), QAAnswer("c", 0)],
            title="A",
        ),
        QAExample(id="q3", question="?", context="two", answers=[QAAnswer("two", 0)], title="B"),
    ]
    path = layout.write_labels(tmp_path, "tydiqa", "fi", examples)
    data = json.loads(path.read_text())["data"]
    assert [a["title"] for a in data] == ["A", "B"]
    assert [len(p["qas"]) for p in data[0]["paragraphs"]] == [2]
    assert layout.read_labels(path, "tydiqa") == [
        ("q1", ["one"]),
        ("q2", ["ctx", "c"]),
        ("q3", ["two"]),
    ]
    assert layout.gold_from_examples("tydiqa", examples) == layout.read_labels(path, "tydiqa")


@pytest.mark.parametrize(
    "task,lang,probe",
    [
        ("udpos", "en", "udpos/xtreme-format/download/udpos/test-en.tsv"),
        ("xquad", "en", "xquad/xquad.en.json"),
        ("tydiqa", "bn", "tydiqa/xtreme-mock/mock_test_data/labels/tydiqa/test-bn.json"),
        ("tatoeba", "fr", "tatoeba/v1/tatoeba.fra-eng.fra"),
    ],
)
def test_labels_from_reader_examples_round_trip(tmp_path, task, lang, probe):
    shared_file(probe)
    readers = pytest.importorskip("xstilts.data.readers")
    examples = readers.read_examples(task, SHARED_DATA, "test", lang)
    gold = layout.gold_from_examples(task, examples)
    path = layout.write_labels(tmp_path, task, lang, examples)
    assert layout.read_labels(path, task) == gold
    assert len(gold) > 0


def test_gold_from_examples_bucc(tmp_path):
    from xstilts.data.examples import BitextExample

    ex = BitextExample(
        id="b", source={"de-1": "a", "de-2": "b"}, target={"en-1": "x"}, gold={("de-2", "en-1")}
    )
    assert layout.gold_from_examples("bucc2018", [ex]) == [("de-2", "en-1")]
    path = layout.write_labels(tmp_path, "bucc2018", "de", [ex])
    assert path.read_text() == "de-2\ten-1\n"
