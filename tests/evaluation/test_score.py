"""Scorer and ``xstilts score``: task/XTREME aggregation, missing languages, count errors, CLI."""

import json
import shutil

import pytest
from conftest import shared_file

from xstilts.cli import main
from xstilts.data.examples import QAAnswer, QAExample
from xstilts.errors import DataFormatError, MissingDataError
from xstilts.evaluation import layout
from xstilts.evaluation.scorer import score_directory, score_language, task_score, xtreme_score
from xstilts.tasks import get_task
from xstilts.tasks.xtreme import XTREME_TASKS

MLQA_MOCK = "mlqa/xtreme-mock/mock_test_data/labels/mlqa/test-{}.json"


def _qa(qid="q1", answer="Paris"):
    return [
        QAExample(id=qid, question="Where?", context=f"In {answer}.", answers=[QAAnswer(answer, 3)])
    ]


def _write_all_nine(root):
    """Every language of every XTREME task; XNLI gets 2 of 3 right, everything else is perfect."""
    labels, preds = root / "labels", root / "preds"
    for name in XTREME_TASKS:
        task = get_task(name)
        for lang in task.languages:
            if name == "xnli":
                layout.write_predictions(
                    labels, name, lang, ["entailment", "neutral", "contradiction"]
                )
                layout.write_predictions(preds, name, lang, ["entailment", "neutral", "neutral"])
            elif layout.file_format(task) == layout.QA:
                layout.write_labels(labels, name, lang, _qa())
                layout.write_predictions(preds, name, lang, {"q1": "Paris"})
            else:
                gold = {
                    "pawsx": ["0", "1"],
                    "udpos": [["NOUN", "VERB"], ["X"]],
                    "panx": [["B-PER", "I-PER", "O"]],
                    "bucc2018": [(f"{lang}-1", "en-4")],
                    "tatoeba": [1, 0, 2],
                }[name]
                layout.write_predictions(labels, name, lang, gold)
                layout.write_predictions(preds, name, lang, gold)
    return preds, labels


def test_cli_json_on_all_nine_tasks(tmp_path, capsys):
    preds, labels = _write_all_nine(tmp_path)
    assert main(["score", "--predictions", str(preds), "--labels", str(labels), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"tasks", "xtreme_score"}
    assert list(out["tasks"]) == list(XTREME_TASKS)
    for name, entry in out["tasks"].items():
        assert set(entry) == {"languages", "score"}, name
        assert sorted(entry["languages"]) == sorted(get_task(name).languages)
    assert out["tasks"]["xnli"]["languages"]["sw"] == {"accuracy": pytest.approx(200 / 3)}
    assert out["tasks"]["xquad"]["languages"]["th"] == {"exact_match": 100.0, "f1": 100.0}
    assert out["tasks"]["bucc2018"]["languages"]["zh"] == {
        "f1": 100.0,
        "precision": 100.0,
        "recall": 100.0,
    }
    assert out["tasks"]["xnli"]["score"] == pytest.approx(200 / 3)
    assert out["xtreme_score"] == pytest.approx((8 * 100 + 200 / 3) / 9)


def test_cli_table(tmp_path, capsys):
    preds, labels = _write_all_nine(tmp_path)
    (preds / "panx" / "test-yo.tsv").unlink()
    assert main(["score", "-p", str(preds), "-l", str(labels), "--tasks", "xnli,panx"]) == 0
    out = capsys.readouterr().out
    assert "xnli: score 66.67" in out
    assert "partial 39/40" in out and "missing: yo" in out
    assert "XTREME score: -" in out


def test_missing_language_is_reported_and_excluded(tmp_path):
    labels, preds = tmp_path / "l", tmp_path / "p"
    for lang, pred in (("de", ["1", "0"]), ("en", ["1", "1"]), ("fr", None)):
        layout.write_predictions(labels, "pawsx", lang, ["1", "1"])
        if pred is not None:
            layout.write_predictions(preds, "pawsx", lang, pred)
    layout.write_predictions(preds, "pawsx", "xx", ["1", "1"])  # not a PAWS-X language
    out = score_directory(preds, labels)
    entry = out["tasks"]["pawsx"]
    assert entry["languages"] == {"de": {"accuracy": 50.0}, "en": {"accuracy": 100.0}}
    assert entry["score"] == 75.0
    assert entry["missing"] == ["es", "fr", "ja", "ko", "zh"]
    assert out["xtreme_score"] is None


def test_count_mismatch_names_file_and_both_counts(tmp_path):
    labels, preds = tmp_path / "l", tmp_path / "p"
    layout.write_predictions(labels, "xnli", "de", ["entailment"] * 5)
    path = layout.write_predictions(preds, "xnli", "de", ["entailment"] * 4)
    with pytest.raises(DataFormatError) as info:
        score_directory(preds, labels)
    message = str(info.value)
    assert str(path) in message and "expected 5 labels" in message and "found 4" in message
    assert str(layout.label_path(labels, "xnli", "de")) in message


def test_cli_error_is_one_line_with_status_2(tmp_path, capsys):
    labels, preds = tmp_path / "l", tmp_path / "p"
    layout.write_predictions(labels, "tatoeba", "de", [0, 1, 2])
    layout.write_predictions(preds, "tatoeba", "de", [0, 1])
    assert main(["score", "-p", str(preds), "-l", str(labels)]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err.startswith("error:")
        and "test-de.tsv" in err
        and "expected 3" in err
        and "found 2" in err
    )
    assert "Traceback" not in err


def test_tag_length_mismatch_names_the_sentence(tmp_path):
    gold = [["NOUN", "VERB"], ["X", "NOUN", "PUNCT"]]
    with pytest.raises(DataFormatError) as info:
        score_language(
            "udpos", "en", gold, [["NOUN", "VERB"], ["X"]], prediction_file=tmp_path / "p.tsv"
        )
    assert info.value.line == 4 and "sentence 2" in str(info.value) and "found 1" in str(info.value)
    with pytest.raises(DataFormatError, match="expected 2 sentences"):
        score_language("udpos", "en", gold, [["NOUN", "VERB"]])


def test_seqeval_mode_option_changes_udpos(tmp_path, capsys):
    labels, preds = tmp_path / "l", tmp_path / "p"
    layout.write_predictions(labels, "udpos", "en", [["NOUN", "VERB"], ["X", "NOUN"]])
    layout.write_predictions(preds, "udpos", "en", [["NOUN", "NOUN"], ["X", "NOUN"]])
    scores = {}
    for mode in ("legacy", "v1"):
        assert (
            main(["score", "-p", str(preds), "-l", str(labels), "--json", "--seqeval-mode", mode])
            == 0
        )
        scores[mode] = json.loads(capsys.readouterr().out)["tasks"]["udpos"]["score"]
    assert scores["legacy"] == pytest.approx(400 / 7)
    assert scores["v1"] == pytest.approx(200 / 7)
    assert main(["score", "-p", str(preds), "-l", str(labels)]) == 0  # default is legacy
    assert "57.14" in capsys.readouterr().out


def test_help_states_the_default_seqeval_mode(capsys):
    assert main(["score", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "legacy" in text and "published" in text


def test_mlqa_all_seven_mock_files_hand_computed(tmp_path):
    labels, preds = tmp_path / "l", tmp_path / "p"
    for lang in get_task("mlqa").languages:
        dest = layout.label_path(labels, "mlqa", lang)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shared_file(MLQA_MOCK.format(lang)), dest)
    gold = {
        lang: layout.read_labels(layout.label_path(labels, "mlqa", lang), "mlqa")
        for lang in get_task("mlqa").languages
    }
    answers = {
        "ar": ["طرق ترابية", "شمال"],  # EM; F1 2/3
        "de": ["die 3050 und 3350 Meter"],  # article removed: EM
        "en": ["sustained skin injuries"],  # F1 3/5
        "es": None,  # gold itself
        "hi": ["उत्तर पूर्व।"],  # danda removed: EM
        "vi": ["đài loan.", "của Khách Gia"],  # EM, EM
        "zh": ["电池"],  # F1 2/3
    }
    for lang, texts in answers.items():
        qids = [q for q, _ in gold[lang]]
        texts = texts or [a[0] for _, a in gold[lang]]
        layout.write_predictions(preds, "mlqa", lang, dict(zip(qids, texts)))
    out = score_directory(preds, labels, ["mlqa"])
    langs = out["tasks"]["mlqa"]["languages"]
    assert langs["ar"] == {"exact_match": 50.0, "f1": pytest.approx(250 / 3)}
    assert langs["en"] == {"exact_match": 0.0, "f1": pytest.approx(60.0)}
    assert langs["zh"] == {"exact_match": 0.0, "f1": pytest.approx(200 / 3)}
    assert langs["vi"] == {"exact_match": 100.0, "f1": 100.0}
    # avg EM 450/7, avg F1 610/7, task score their mean
    assert out["tasks"]["mlqa"]["score"] == pytest.approx((450 / 7 + 610 / 7) / 2)
    assert "missing" not in out["tasks"]["mlqa"]


def test_missing_qid_scores_zero_with_a_warning(tmp_path, caplog):
    gold = [("q1", ["Paris"]), ("q2", ["Rome"])]
    with caplog.at_level("WARNING"):
        scores = score_language("xquad", "en", gold, {"q1": "Paris", "zz": "Rome"})
    assert scores == {"exact_match": 50.0, "f1": 50.0}
    assert "1 of 2 questions have no prediction" in caplog.text


def test_task_and_xtreme_score_rules():
    assert (
        task_score(
            "tydiqa",
            {"en": {"exact_match": 40.0, "f1": 60.0}, "fi": {"exact_match": 60.0, "f1": 80.0}},
        )
        == 60.0
    )
    assert task_score("bucc2018", {"de": {"f1": 80.0, "precision": 10.0, "recall": 5.0}}) == 80.0
    assert task_score("tatoeba", {}) is None
    scores = {name: float(i) for i, name in enumerate(XTREME_TASKS)}
    assert xtreme_score(scores) == pytest.approx(sum(range(9)) / 9)
    del scores["tatoeba"]
    assert xtreme_score(scores) is None


def test_unknown_or_absent_task_folders(tmp_path):
    (tmp_path / "p").mkdir()
    (tmp_path / "l").mkdir()
    with pytest.raises(MissingDataError, match="no XTREME task has both"):
        score_directory(tmp_path / "p", tmp_path / "l")
    with pytest.raises(MissingDataError, match="xnli"):
        score_directory(tmp_path / "p", tmp_path / "l", ["xnli"])
    with pytest.raises(MissingDataError, match="does not exist"):
        score_directory(tmp_path / "nope", tmp_path / "l")


def test_gold_from_a_data_folder_through_the_readers(tmp_path, shared_data, capsys):
    readers = pytest.importorskip("xstilts.data.readers")
    shared_file("xquad/xquad.en.json")
    preds = tmp_path / "p"
    for task, lang in (("xquad", "en"), ("xquad", "de"), ("udpos", "en"), ("tatoeba", "de")):
        gold = layout.gold_from_examples(
            task, readers.read_examples(task, shared_data, "test", lang)
        )
        if task == "xquad":
            gold = {qid: answers[0] for qid, answers in gold}
            if lang == "de":
                gold[next(iter(gold))] = "falsch"  # one of 225 wrong
        if task == "tatoeba":
            gold = [(i + 1) % 1000 if i < 250 else i for i in gold]  # 250 of 1000 wrong
        layout.write_predictions(preds, task, lang, gold)
    out = score_directory(preds, data_dir=shared_data)
    assert out["tasks"]["xquad"]["languages"]["en"] == {"exact_match": 100.0, "f1": 100.0}
    assert out["tasks"]["xquad"]["languages"]["de"]["exact_match"] == pytest.approx(100 * 224 / 225)
    assert out["tasks"]["udpos"]["languages"] == {
        "en": {"f1": 100.0, "precision": 100.0, "recall": 100.0}
    }
    assert out["tasks"]["tatoeba"]["languages"] == {"de": {"accuracy": 75.0}}
    assert "ar" in out["tasks"]["xquad"]["missing"]
    assert (
        main(["score", "-p", str(preds), "--data", str(shared_data), "--json", "-t", "tatoeba"])
        == 0
    )
    assert json.loads(capsys.readouterr().out)["tasks"]["tatoeba"]["score"] == 75.0
    assert main(["score", "-p", str(preds)]) == 2  # neither --labels nor --data


def test_score_language_takes_reader_examples():
    from xstilts.data.examples import BitextExample, SentencePairExample, TaggingExample

    pairs = [
        SentencePairExample("1", "a", "b", "entailment"),
        SentencePairExample("2", "a", "b", "neutral"),
    ]
    assert score_language("xnli", "de", pairs, ["entailment", "entailment"]) == {"accuracy": 50.0}
    tags = [TaggingExample("1", ["Ann", "ran"], ["B-PER", "O"])]
    assert score_language("panx", "de", tags, [["B-PER", "O"]])["f1"] == 100.0
    assert (
        score_language("mlqa", "de", _qa(answer="der Hund"), {"q1": "Hund"})["exact_match"] == 100.0
    )
    bitext = BitextExample(
        "t", {"0": "x", "1": "y"}, {"0": "X", "1": "Y"}, {("0", "1"), ("1", "0")}
    )
    assert score_language("tatoeba", "de", [bitext], [1, 1]) == {"accuracy": 50.0}
    assert score_language("bucc2018", "de", bitext, [("0", "1")])["precision"] == 100.0
