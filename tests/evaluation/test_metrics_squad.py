"""SQuAD v1.1 EM/F1 (XQuAD, TyDiQA): hand-computed cases and real files."""

import pytest
from conftest import shared_file

from xstilts.evaluation import layout
from xstilts.evaluation.metrics.squad import (
    exact_match_score,
    f1_score,
    normalize_answer,
    squad_scores,
)


def test_normalisation_lower_punct_articles_space():
    assert normalize_answer("  The Eiffel   Tower. ") == "eiffel tower"
    assert normalize_answer("an apple, a pear") == "apple pear"
    # only whole-word articles go; "theatre" keeps its "the"
    assert normalize_answer("Theatre") == "theatre"
    # non-ASCII punctuation is kept by SQuAD's normalisation (MLQA's removes it)
    assert normalize_answer("«Hola»") == "«hola»"


def test_em_and_f1_hand_computed():
    assert exact_match_score("The Eiffel Tower", "eiffel tower.")
    assert not exact_match_score("Eiffel Tower in Paris", "Eiffel Tower")
    # pred tokens eiffel tower in paris, gold eiffel tower: P 1/2, R 1 -> 2/3
    assert f1_score("Eiffel Tower in Paris", "Eiffel Tower") == pytest.approx(2 / 3)
    assert f1_score("London", "Paris") == 0


def test_scores_perfect_wrong_partial_missing_and_max_over_answers():
    gold = [
        ("q1", ["Paris", "the city of Paris"]),
        ("q2", ["1999"]),
        ("q3", ["blue whale"]),
        ("q4", ["x"]),
    ]
    preds = {"q1": "city of Paris", "q2": "in 1999 or 2000", "q3": "whale"}  # q4 missing
    s = squad_scores(gold, preds)
    # q1 EM via the 2nd answer; q2 F1 = P 1/4 R 1 -> 2/5; q3 P 1 R 1/2 -> 2/3; q4 counts 0
    assert s["exact_match"] == pytest.approx(100 * 1 / 4)
    assert s["f1"] == pytest.approx(100 * (1 + 2 / 5 + 2 / 3 + 0) / 4)
    assert squad_scores(gold, {q: a[0] for q, a in gold}) == {"exact_match": 100.0, "f1": 100.0}
    assert squad_scores(gold, {q: "zzz" for q, _ in gold}) == {"exact_match": 0.0, "f1": 0.0}


def test_dict_gold_accepted():
    assert squad_scores({"q": ["x y"]}, {"q": "y"})["f1"] == pytest.approx(100 * 2 / 3)


def test_xquad_gold_as_prediction_and_one_perturbed():
    path = shared_file("xquad/xquad.en.json")
    gold = layout.read_labels(path, "xquad")
    assert len(gold) == 225
    preds = {qid: answers[0] for qid, answers in gold}
    assert squad_scores(gold, preds) == {"exact_match": 100.0, "f1": 100.0}
    # first question: gold "308"; answer "308 points" -> P 1/2, R 1, F1 2/3; a wrong one for the 2nd
    assert gold[0] == ("56beb4343aeaaa14008c925b", ["308"])
    preds[gold[0][0]] = "308 points"
    preds[gold[1][0]] = "twelve"
    s = squad_scores(gold, preds)
    assert s["exact_match"] == pytest.approx(100 * 223 / 225)
    assert s["f1"] == pytest.approx(100 * (223 + 2 / 3) / 225)


@pytest.mark.parametrize("lang", ["ar", "de", "es", "ru", "zh"])
def test_xquad_other_languages_gold_is_perfect(lang):
    gold = layout.read_labels(shared_file(f"xquad/xquad.{lang}.json"), "xquad")
    assert squad_scores(gold, {q: a[0] for q, a in gold}) == {"exact_match": 100.0, "f1": 100.0}


def test_tydiqa_first_answer_vs_other_answers():
    gold = layout.read_labels(
        shared_file("tydiqa/xtreme-mock/mock_test_data/labels/tydiqa/test-fi.json"), "tydiqa"
    )
    ((qid, answers),) = gold
    assert answers == ["vuonna 4000 eaa", "4000 eaa"]
    assert squad_scores(gold, {qid: "4000 eaa"})["exact_match"] == 100.0  # matches the 2nd answer
    # "vuonna 4000" vs 1st: P 1, R 2/3 -> 0.8; vs 2nd: P 1/2, R 1/2 -> 0.5; max 0.8
    assert squad_scores(gold, {qid: "vuonna 4000"}) == {
        "exact_match": 0.0,
        "f1": pytest.approx(80.0),
    }


def test_tydiqa_bengali_two_answers():
    gold = layout.read_labels(
        shared_file("tydiqa/xtreme-mock/mock_test_data/labels/tydiqa/test-bn.json"), "tydiqa"
    )
    ((qid, answers),) = gold
    assert len(answers) == 2
    assert squad_scores(gold, {qid: answers[1]})["exact_match"] == 100.0
    # one token of the 4-token second answer, no token of the first: F1 = 2*1*(1/4)/(5/4) = 0.4
    first_word = answers[1].split()[0]
    assert first_word not in answers[0].split()
    assert squad_scores(gold, {qid: first_word})["f1"] == pytest.approx(40.0)
