"""The NLU intermediate tasks through the shared machinery on a tiny random encoder: reader →
featurize → head → predict_examples → score_intermediate. Includes SQuAD v2.0, where a model
trained for a few steps must learn to give the null answer to the unanswerable question."""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import shared_file
from tests.data.test_nlu_readers import AUTO, SQUAD_V2
from xstilts.data.features import collate, featurize
from xstilts.data.nlu_readers import nlu_label_set, read_nlu_examples
from xstilts.evaluation.metrics_nlu import intermediate_quality, score_intermediate
from xstilts.evaluation.predict import PredictOptions, predict_examples
from xstilts.models.heads import build_model
from xstilts.models.tiny import build_tiny_model

torch.set_num_threads(1)


def test_cosmosqa_multiple_choice_end_to_end():
    root = shared_file("cosmosqa/data/valid.csv").parents[2]
    examples = read_nlu_examples("cosmosqa", root, "dev", "en")[:6]
    encoder, tok = build_tiny_model(seed=0, extra_text=[ex.context for ex in examples])
    model = build_model("cosmosqa", encoder).eval()
    preds = predict_examples("cosmosqa", model, tok, examples, PredictOptions(max_length=128))
    assert len(preds) == 6 and all(0 <= p < 4 for p in preds)
    expected = 100 * sum(p == ex.label for p, ex in zip(preds, examples)) / 6
    assert score_intermediate("cosmosqa", examples, preds) == {"accuracy": pytest.approx(expected)}


def test_ccg_tagging_with_the_training_tag_set(tmp_path):
    (tmp_path / "ccg").mkdir()
    (tmp_path / "ccg/train.auto").write_text(AUTO)
    examples = read_nlu_examples("ccg", tmp_path, "train", "en")
    labels = nlu_label_set("ccg", tmp_path)
    encoder, tok = build_tiny_model(seed=0, extra_text=[" ".join(ex.tokens) for ex in examples])
    model = build_model("ccg", encoder, labels=labels).eval()
    features = featurize("ccg", examples, tok, labels=labels, for_training=True)
    assert len(features) == 2
    preds = predict_examples("ccg", model, tok, examples)
    assert [len(p) for p in preds] == [5, 2] and all(t in labels for p in preds for t in p)
    score = score_intermediate("ccg", examples, preds)["token_accuracy"]
    assert score == pytest.approx(
        100 * sum(a == b for ex, p in zip(examples, preds) for a, b in zip(ex.tags, p)) / 7
    )


def test_squad_v2_model_learns_the_null_answer(tmp_path):
    (tmp_path / "dev-v2.0.json").write_text(json.dumps(SQUAD_V2))
    examples = read_nlu_examples("squad_v2", tmp_path, "dev", "en")
    encoder, tok = build_tiny_model(
        seed=0, extra_text=[examples[0].context, examples[0].question, examples[1].question]
    )
    torch.manual_seed(0)
    model = build_model("squad_v2", encoder, dropout=0.0)
    features = featurize("squad_v2", examples, tok, max_length=96, for_training=True)
    batch = collate(features, tok)
    batch = {k: v for k, v in batch.items() if isinstance(v, torch.Tensor)}
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(60):
        optimizer.zero_grad()
        out = model(**batch)
        loss = out["loss"] if isinstance(out, dict) else out.loss
        loss.backward()
        optimizer.step()
    model.eval()
    preds = predict_examples("squad_v2", model, tok, examples, PredictOptions(max_length=96))
    assert preds == {"q1": "France", "q2": ""}
    scores = intermediate_quality("squad_v2", model, tok, examples, PredictOptions(max_length=96))
    assert scores == score_intermediate("squad_v2", examples, preds)
    assert (
        scores["exact"] == 100.0 and scores["NoAns_exact"] == 100.0 and scores["HasAns_f1"] == 100.0
    )
