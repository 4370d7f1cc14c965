"""Intermediate-task quality for the NLU tasks: SQuAD v2.0 (overall, HasAns, NoAns) as the official
script scores it, SQuAD v1.1, accuracy / F1 and CCG token accuracy — hand-computed values."""

from __future__ import annotations

import json

import pytest

from tests.conftest import shared_file
from xstilts.data.examples import (
    MultipleChoiceExample,
    QAAnswer,
    QAExample,
    SentencePairExample,
    TaggingExample,
)
from xstilts.data.nlu_readers import read_nlu_examples, read_nlu_path
from xstilts.errors import ConfigError
from xstilts.evaluation.metrics_nlu import (
    binary_f1,
    normalize_answer,
    score_intermediate,
    squad_v2_scores,
    token_accuracy,
    token_f1_v1,
    token_f1_v2,
)


def _qa(qid: str, *answers: str) -> QAExample:
    return QAExample(
        id=qid,
        question="?",
        context=" ".join(answers),
        answers=[QAAnswer(text=a, answer_start=0) for a in answers],
        is_impossible=not answers,
    )


GOLD = [
    _qa("q1", "the Eiffel Tower", "Eiffel Tower in Paris"),
    _qa("q2", "Denver Broncos"),
    _qa("q3", "1995"),
    _qa("q4"),  # unanswerable
    _qa("q5"),  # unanswerable
]
PRED = {"q1": "Eiffel Tower!", "q2": "Broncos", "q3": "", "q4": "", "q5": "Paris"}
# Per question (EM, F1): q1 (1, 1) after normalisation; q2 (0, 2/3): P = 1, R = 1/2;
# q3 (0, 0): the null answer to an answerable question; q4 (1, 1): null for null; q5 (0, 0).


def test_normalisation_and_token_f1():
    assert normalize_answer("  The  Eiffel-Tower, an icon. ") == "eiffeltower icon"
    assert token_f1_v2("Denver Broncos", "Broncos") == pytest.approx(2 / 3)
    assert (
        token_f1_v2("", "") == 1.0 and token_f1_v2("", "x") == 0.0 and token_f1_v2("x", "") == 0.0
    )
    assert token_f1_v1("", "") == 0.0  # v1.1 has no null answer: no overlap is 0


def test_squad_v2_overall_hasans_noans():
    scores = squad_v2_scores(GOLD, PRED)
    assert scores["total"] == 5 and scores["HasAns_total"] == 3 and scores["NoAns_total"] == 2
    assert scores["exact"] == pytest.approx(100 * 2 / 5)
    assert scores["f1"] == pytest.approx(100 * (1 + 2 / 3 + 1) / 5)
    assert scores["HasAns_exact"] == pytest.approx(100 / 3)
    assert scores["HasAns_f1"] == pytest.approx(100 * (1 + 2 / 3) / 3)
    assert scores["NoAns_exact"] == pytest.approx(50.0) and scores["NoAns_f1"] == pytest.approx(
        50.0
    )
    assert scores["missing"] == 0


def test_squad_v2_missing_prediction_scores_zero_and_is_counted():
    partial = {k: v for k, v in PRED.items() if k != "q1"}
    scores = squad_v2_scores(GOLD, partial)
    assert scores["missing"] == 1 and scores["total"] == 5
    assert scores["exact"] == pytest.approx(100 * 1 / 5)
    assert scores["HasAns_f1"] == pytest.approx(100 * (2 / 3) / 3)


def test_squad_v2_gold_that_normalises_to_nothing_is_the_null_answer():
    # As evaluate-v2.0.py: an answer list whose texts normalise to "" is compared with "" only.
    gold = [_qa("q", "The")]
    assert squad_v2_scores(gold, {"q": ""})["exact"] == 100.0
    assert squad_v2_scores(gold, {"q": "the"})["exact"] == 100.0  # "the" normalises to ""
    assert squad_v2_scores(gold, {"q": "The cat"})["f1"] == 0.0


def test_squad_v2_no_answer_threshold_and_best_threshold():
    na = {"q1": 0.0, "q2": 0.0, "q3": 0.0, "q4": 0.0, "q5": 0.9}
    scores = squad_v2_scores(GOLD, PRED, na_probs=na, na_prob_thresh=0.5)
    # q5's probability 0.9 > 0.5: its answer becomes the null answer, which is right.
    assert scores["exact"] == pytest.approx(60.0) and scores["NoAns_exact"] == pytest.approx(100.0)
    # Sweep: all null = 2 right; answering q1 +1 (best, at 0.0); q2, q3, q4 +0; q5 -1.
    assert scores["best_exact"] == pytest.approx(60.0) and scores["best_exact_thresh"] == 0.0


def test_score_intermediate_squad_v2_on_a_file_written_here(tmp_path):
    from tests.data.test_nlu_readers import SQUAD_V2

    (tmp_path / "dev-v2.0.json").write_text(json.dumps(SQUAD_V2))
    gold = read_nlu_examples("squad_v2", tmp_path, "dev", "en")
    scores = score_intermediate("squad_v2", gold, {"q1": "in France", "q2": "Normans"})
    # q1: EM 0, F1 2/3 ("in" is not an article); q2 unanswerable but answered: 0.
    assert scores["HasAns_f1"] == pytest.approx(100 * 2 / 3) and scores["NoAns_exact"] == 0.0
    assert scores["f1"] == pytest.approx(100 / 3)
    right = score_intermediate("squad_v2", gold, {"q1": "France", "q2": ""})
    assert right["exact"] == right["f1"] == 100.0


def test_score_intermediate_squad_v1_on_xquad_english():
    gold = read_nlu_path("squad_v1", shared_file("xquad/xquad.en.json"), "dev")
    perfect = {ex.id: ex.answers[0].text for ex in gold}
    assert score_intermediate("squad_v1", gold, perfect) == {
        "exact_match": 100.0, "f1": 100.0, "total": 225, "missing": 0,
    }  # fmt: skip
    half = {ex.id: (ex.answers[0].text if i % 2 == 0 else "") for i, ex in enumerate(gold)}
    assert score_intermediate("squad_v1", gold, half)["exact_match"] == pytest.approx(
        100 * 113 / 225
    )


def test_accuracy_and_qqp_f1():
    gold = [
        SentencePairExample(id=str(i), text_a="a", text_b="b", label=lab)
        for i, lab in enumerate("1100")
    ]
    pred = ["1", "0", "1", "0"]
    # QQP: accuracy 2/4; positive class: tp 1, fp 1, fn 1 → F1 = 2/(2+1+1).
    assert score_intermediate("qqp", gold, pred) == {"accuracy": 50.0, "f1": pytest.approx(50.0)}
    assert binary_f1(["0", "0"], ["0", "0"]) == 0.0
    nli = [SentencePairExample(id="a", text_a="", text_b="", label="neutral")]
    assert score_intermediate("mnli", nli, {"a": "neutral"}) == {"accuracy": 100.0}
    with pytest.raises(ConfigError, match="1 predicted labels for 4 gold labels"):
        score_intermediate("qqp", gold, ["1"])


def test_multiple_choice_accuracy_on_cosmosqa():
    gold = read_nlu_examples(
        "cosmosqa", shared_file("cosmosqa/data/valid.csv").parents[2], "dev", "en"
    )
    # Always answering choice 2 is right exactly for the 279 records labelled 2.
    assert score_intermediate("cosmosqa", gold, [2] * len(gold)) == {
        "accuracy": pytest.approx(27.9)
    }
    mc = [MultipleChoiceExample(id="x", context="", question="q", choices=list("abcde"), label=4)]
    assert score_intermediate("commonsenseqa", mc, {"x": 4})["accuracy"] == 100.0


def test_ccg_token_accuracy():
    gold = [
        TaggingExample(
            id="s1", tokens=["Mr.", "Vinken", "sleeps"], tags=["N/N", "N", r"S[dcl]\NP"]
        ),
        TaggingExample(id="s2", tokens=["."], tags=["."]),
    ]
    pred = [["N/N", "N/N", r"S[dcl]\NP"], ["."]]
    assert score_intermediate("ccg", gold, pred) == {"token_accuracy": pytest.approx(75.0)}
    with pytest.raises(ConfigError, match="2 predicted tags for 3 gold tags"):
        token_accuracy([["a", "b", "c"]], [["a", "b"]])


def test_decode_answers_v2_predicts_the_null_answer_when_cls_wins():
    import numpy as np

    from xstilts.evaluation.qa_decode import decode_answers_v2

    context = "Paris is nice"
    # positions: 0 <s> (null), 1 question, 2 "Paris", 3 "is", 4 "nice"
    feature = {"example_index": 0, "offset_mapping": [None, None, (0, 5), (6, 8), (9, 13)]}
    examples = [_qa("a", "Paris"), _qa("b")]
    features = [dict(feature), dict(feature, example_index=1)]
    starts = [np.array([0.0, 0.0, 3.0, 0.0, 0.0]), np.array([4.0, 0.0, 3.0, 0.0, 0.0])]
    ends = [np.array([0.0, 0.0, 2.0, 0.0, 0.0]), np.array([4.0, 0.0, 2.0, 0.0, 0.0])]
    for ex in examples:
        ex.context = context
    answers, diff = decode_answers_v2(examples, features, starts, ends)
    # a: null 0 vs "Paris" 5 → answer; b: null 8 vs 5 → null answer (diff 3 > 0).
    assert answers == {"a": "Paris", "b": ""} and diff == {"a": -5.0, "b": 3.0}
    assert squad_v2_scores(examples, answers)["exact"] == 100.0
    # A threshold above the difference keeps the span.
    assert (
        decode_answers_v2(examples, features, starts, ends, null_score_diff_threshold=3.5)[0]["b"]
        == "Paris"
    )
