"""Trivial references: majority tag / all-O / chance, scored by the real scorer on real gold files."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from xstilts.data.examples import SentencePairExample, TaggingExample
from xstilts.data.readers import read_examples
from xstilts.evaluation.layout import write_labels, write_predictions
from xstilts.evaluation.trivial import majority_label, trivial_scores
from xstilts.tasks import get_task


def test_udpos_majority_tag_scored_like_any_prediction(shared_data, tmp_path):
    task = get_task("udpos")
    train = list(read_examples(task, shared_data, "train", "en"))
    assert majority_label(task, train) == "NOUN"
    labels, preds = tmp_path / "labels", tmp_path / "preds"
    for lang in ("en", "fr", "zh"):
        gold = list(read_examples(task, shared_data, "test", lang))
        write_labels(labels, task, lang, gold)
        # the same predictor written as a submission and scored by `xstilts score`, independently
        write_predictions(preds, task, lang, [["NOUN"] * len(ex.tokens) for ex in gold])
    ref = trivial_scores(task, labels, train)
    assert ref["rule"] == "majority tag 'NOUN'" and set(ref["languages"]) == {"en", "fr", "zh"}
    out = subprocess.run([sys.executable, "-m", "xstilts.cli", "score", "--predictions", str(preds),
                          "--labels", str(labels), "--json"], capture_output=True, text=True, check=True)
    scored = json.loads(out.stdout)["tasks"]["udpos"]
    for lang, value in ref["languages"].items():
        assert value == pytest.approx(scored["languages"][lang]["f1"], abs=1e-9)
    # XTREME scores UDPOS with seqeval on bare tags, which reads a run of one tag as one chunk:
    # all-NOUN makes every sentence one chunk, so the official metric gives it (close to) 0
    assert ref["score"] < 5 and ref["score"] == pytest.approx(scored["score"])


def test_panx_majority_is_all_o_and_scores_zero(shared_data, tmp_path):
    task = get_task("panx")
    train = list(read_examples(task, shared_data, "train", "en"))
    assert majority_label(task, train) == "O"
    for lang in ("de", "ja"):
        write_labels(tmp_path, task, lang, list(read_examples(task, shared_data, "dev", lang))[:50])
    assert trivial_scores(task, tmp_path, train)["languages"] == {"de": 0.0, "ja": 0.0}


def test_tatoeba_chance_is_one_over_the_pool(shared_data, tmp_path):
    from xstilts.study.pipeline import cap_bitext

    task = get_task("tatoeba")
    (bitext,) = read_examples(task, shared_data, "test", "de")
    write_labels(tmp_path, task, "de", [bitext])
    write_labels(tmp_path, task, "fr", [cap_bitext(next(iter(read_examples(task, shared_data, "test", "fr"))), 50)])
    ref = trivial_scores(task, tmp_path)
    assert ref["languages"] == {"de": pytest.approx(100 / 1000), "fr": pytest.approx(100 / 50)}


def test_qa_trivial_is_the_empty_answer(shared_data, tmp_path):
    task = get_task("xquad")
    write_labels(tmp_path, task, "de", list(read_examples(task, shared_data, "test", "de")))
    assert trivial_scores(task, tmp_path)["languages"] == {"de": 0.0}


def test_classification_majority_comes_from_training_not_from_the_gold(tmp_path):
    task = get_task("xnli")
    train = [SentencePairExample(str(i), "a", "b", lab) for i, lab in
             enumerate(["entailment"] * 5 + ["neutral"] * 3 + ["contradiction"] * 2)]
    gold = [SentencePairExample(str(i), "a", "b", lab) for i, lab in
            enumerate(["contradiction"] * 6 + ["entailment"] * 4)]  # the gold majority differs
    write_labels(tmp_path, task, "fr", gold)
    ref = trivial_scores(task, tmp_path, train)
    assert ref["languages"] == {"fr": pytest.approx(40.0)} and ref["rule"] == "majority label 'entailment'"


def test_ties_break_in_label_order():
    task = get_task("udpos")
    train = [TaggingExample("1", ["a", "b"], ["VERB", "ADJ"])]
    assert majority_label(task, train) == min(["VERB", "ADJ"], key=task.labels.index)
