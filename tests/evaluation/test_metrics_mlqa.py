"""MLQA normalisation (Unicode punctuation, per-language articles, Chinese mixed segmentation)."""

import pytest
from conftest import shared_file

from xstilts.evaluation import layout
from xstilts.evaluation.metrics import squad
from xstilts.evaluation.metrics.mlqa import (
    exact_match_score,
    f1_score,
    mixed_segmentation,
    mlqa_scores,
    normalize_answer,
)

MOCK = "mlqa/xtreme-mock/mock_test_data/labels/mlqa/test-{}.json"


@pytest.mark.parametrize(
    "lang,prediction,gold",
    [
        ("en", "The cat", "cat"),
        ("es", "el perro", "perro"),
        ("es", "la casa", "casa"),
        ("es", "«Hola»", "hola"),  # Unicode punctuation (Pi/Pf) is removed
        ("de", "der Hund", "Hund"),
        ("de", "die Katze", "Katze"),
        ("de", "das Haus", "Haus"),
        ("vi", "của tôi", "tôi"),
        ("ar", "الكتاب", "كتاب"),  # the ال prefix is cut
        ("hi", "उत्तर पूर्व।", "उत्तर पूर्व"),  # danda is punctuation (Po)
        ("zh", "电池。", "电池"),
    ],
)
def test_exact_match_after_normalisation(lang, prediction, gold):
    assert exact_match_score(prediction, gold, lang)


def test_articles_are_language_specific():
    assert not exact_match_score("el perro", "perro", "en")
    assert not exact_match_score("the cat", "cat", "de")
    assert normalize_answer("der Hund", "hi") == "der hund"


def test_arabic_al_is_removed_even_inside_words():
    # The official pattern \sال^|ال can only match its second branch: every ال goes.
    assert normalize_answer("مالك", "ar") == "م ك"
    assert normalize_answer("الطرق الترابية", "ar") == "طرق ترابية"


def test_chinese_mixed_segmentation():
    assert mixed_segmentation("iPhone手机 ok") == ["iPhone", "手", "机", "ok"]
    assert normalize_answer("北京大学", "zh") == "北 京 大 学"
    # 北 京 大 学 vs 北 京: P 2/4, R 1 -> 2/3
    assert f1_score("北京大学", "北京", "zh") == pytest.approx(2 / 3)
    assert f1_score("北京大学", "北京", "en") == 0  # one whitespace token each, no overlap


def test_unknown_language_is_an_error():
    with pytest.raises(ValueError, match="MLQA"):
        normalize_answer("x", "fr")


def test_mock_files_hand_computed():
    gold = {
        lang: layout.read_labels(shared_file(MOCK.format(lang)), "mlqa")
        for lang in ("ar", "zh", "es", "en")
    }
    ar = dict(gold["ar"])
    ids = [q for q, _ in gold["ar"]]
    assert [ar[i] for i in ids] == [["الطرق الترابية"], ["شمال شرق"]]
    # EM for the first, "شمال" for the second: F1 P 1 R 1/2 -> 2/3
    s = mlqa_scores(gold["ar"], {ids[0]: "طرق ترابية", ids[1]: "شمال"}, "ar")
    assert s == {"exact_match": 50.0, "f1": pytest.approx(100 * (1 + 2 / 3) / 2)}
    ((zid, zans),) = gold["zh"]
    assert zans == ["电化电池"]
    # 电 池 vs 电 化 电 池: common 2, P 1, R 1/2 -> 2/3
    assert mlqa_scores(gold["zh"], {zid: "电池"}, "zh") == {
        "exact_match": 0.0,
        "f1": pytest.approx(200 / 3),
    }
    # es: "unas" and "un" are articles for MLQA, not for SQuAD
    ((eid, eans),) = gold["es"]
    pred = eans[0].replace("unas ", "").replace(" un ", " ")
    assert mlqa_scores(gold["es"], {eid: pred}, "es")["exact_match"] == 100.0
    assert squad.squad_scores(gold["es"], {eid: pred})["exact_match"] == 0.0
    ((nid, nans),) = gold["en"]
    assert nans == ["had sustained skin, liver, and respiratory injuries"]
    # 3 of 7 gold tokens, all 3 predicted right: P 1, R 3/7 -> 0.6
    assert mlqa_scores(gold["en"], {nid: "sustained skin injuries"}, "en")["f1"] == pytest.approx(
        60.0
    )
