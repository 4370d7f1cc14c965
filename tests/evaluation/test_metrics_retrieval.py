"""BUCC pair F1 and threshold tuning; Tatoeba accuracy; classification accuracy."""

import pytest
from conftest import SHARED_DATA, shared_file

from xstilts.evaluation.metrics import (
    accuracy,
    bucc_extract,
    bucc_f1,
    bucc_optimal_threshold,
    tatoeba_accuracy,
)


def test_accuracy_hand_computed():
    assert accuracy(["a", "b", "c", "a"], ["a", "b", "a", "b"]) == {"accuracy": 50.0}
    assert accuracy(["a"], ["a"]) == {"accuracy": 100.0}
    assert accuracy(["a", "b"], ["b", "a"]) == {"accuracy": 0.0}
    with pytest.raises(ValueError):
        accuracy(["a"], ["a", "b"])


def test_tatoeba_accuracy():
    assert tatoeba_accuracy([0, 1, 2, 3], [0, 1, 3, 3]) == {"accuracy": 75.0}
    with pytest.raises(TypeError):
        tatoeba_accuracy([0], ["0"])


def test_bucc_f1_hand_computed():
    gold = [("de-1", "en-1"), ("de-2", "en-5"), ("de-3", "en-3")]
    # 1 of 2 predicted pairs correct, 1 of 3 gold found: P 1/2, R 1/3, F1 2/5
    s = bucc_f1(gold, [("de-1", "en-1"), ("de-2", "en-2")])
    assert s == {"f1": pytest.approx(40.0), "precision": 50.0, "recall": pytest.approx(100 / 3)}
    assert bucc_f1(gold, gold) == {"f1": 100.0, "precision": 100.0, "recall": 100.0}
    assert bucc_f1(gold, []) == {"f1": 0.0, "precision": 0.0, "recall": 0.0}
    # duplicates collapse (sets, as evaluate.py) and "src\ttgt" strings are accepted
    assert bucc_f1(["de-1\ten-1"], [("de-1", "en-1"), ("de-1", "en-1")])["precision"] == 100.0


def test_threshold_best_in_the_middle_is_a_midpoint():
    candidates = {("a", "x"): 0.9, ("b", "y"): 0.8, ("c", "z"): 0.3}
    gold = [("a", "x"), ("b", "y")]
    threshold = bucc_optimal_threshold(candidates, gold)
    assert threshold == pytest.approx(0.55)
    assert bucc_extract(candidates, threshold) == [("a", "x"), ("b", "y")]


def test_threshold_best_at_last_candidate_does_not_fail():
    # F1 after 1, 2, 3 candidates: 2/3, 1/2, 4/5: the peak is the last one, where the official
    # bucc_optimize reads items[i + 1] and raises IndexError.
    candidates = [(("a", "x"), 0.9), (("b", "q"), 0.8), (("c", "z"), 0.7)]
    gold = {("a", "x"), ("c", "z")}
    threshold = bucc_optimal_threshold(candidates, gold)
    assert threshold == 0.7
    assert bucc_extract(candidates, threshold) == [("a", "x"), ("b", "q"), ("c", "z")]
    assert bucc_f1(gold, bucc_extract(candidates, threshold))["f1"] == pytest.approx(80.0)


def test_threshold_single_candidate_and_no_correct_candidate():
    assert bucc_optimal_threshold({("a", "x"): 2.5}, [("a", "x")]) == 2.5
    assert bucc_optimal_threshold({("a", "x"): 2.5, ("b", "y"): 1.0}, [("c", "z")]) == 0.0
    assert bucc_optimal_threshold({}, [("c", "z")]) == 0.0


def test_threshold_unsorted_input_is_ranked_by_score():
    candidates = {("c", "z"): 0.3, ("a", "x"): 0.9, ("b", "y"): 0.8}
    assert bucc_optimal_threshold(candidates, ["a\tx", "b\ty"]) == pytest.approx(0.55)


def test_tatoeba_real_gold_through_the_readers():
    shared_file("tatoeba/v1/tatoeba.deu-eng.deu")
    readers = pytest.importorskip("xstilts.data.readers")
    from xstilts.evaluation.layout import gold_from_examples

    examples = readers.read_examples("tatoeba", SHARED_DATA, "test", "de")
    gold = gold_from_examples("tatoeba", examples)
    assert gold == list(range(1000))
    pred = list(gold)
    for i in range(0, 100, 10):  # 10 wrong
        pred[i] = (pred[i] + 1) % 1000
    assert tatoeba_accuracy(gold, pred)["accuracy"] == pytest.approx(99.0)
