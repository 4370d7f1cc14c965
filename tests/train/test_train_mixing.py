"""Task mixtures (sampling rates, batch plans), masked-LM batches, formulations."""

from __future__ import annotations

from collections import Counter

import pytest

from xstilts.errors import ConfigError
from xstilts.train.mixing import MixturePlanner, mixture_probabilities


def test_mixture_probabilities_hand_computed():
    sizes = {"a": 100, "b": 400}
    assert mixture_probabilities(sizes, "uniform") == pytest.approx({"a": 0.5, "b": 0.5})
    assert mixture_probabilities(sizes, "proportional") == pytest.approx({"a": 0.2, "b": 0.8})
    # T = 2: sqrt(100) = 10, sqrt(400) = 20
    assert mixture_probabilities(sizes, "temperature", 2.0) == pytest.approx({"a": 1 / 3, "b": 2 / 3})
    # explicit weights multiply the rule's rates: 3 * 100 vs 400
    assert mixture_probabilities(sizes, "proportional", weights={"a": 3.0, "b": None}) == pytest.approx(
        {"a": 3 / 7, "b": 4 / 7}
    )
    with pytest.raises(ConfigError, match="uniform, proportional or temperature"):
        mixture_probabilities(sizes, "random")


def test_mixture_plan_batches_stay_within_one_task_and_follow_rates():
    lengths = [[5 + i % 7 for i in range(40)], [3 + i % 11 for i in range(160)]]
    planner = MixturePlanner(lengths, 4, [0.25, 0.75], seed=2, batches_per_epoch=400)
    plan = planner.plan(0)
    assert len(plan) == 400
    owner = [0 if all(i < 40 for i in b) else 1 if all(i >= 40 for i in b) else -1 for b in plan]
    assert -1 not in owner
    share = Counter(owner)[0] / len(plan)
    assert 0.19 < share < 0.31
    # task 0's first pass (10 batches of 4) covers each of its 40 examples exactly once
    first_pass = [i for b, o in zip(plan, owner) if o == 0 for i in b][:40]
    assert sorted(first_pass) == list(range(40))
    assert planner.plan(0) == MixturePlanner(lengths, 4, [0.25, 0.75], seed=2, batches_per_epoch=400).plan(0)
    assert planner.plan(1) != plan
    # the natural epoch: one pass over every task
    assert len(MixturePlanner(lengths, 4, [0.5, 0.5], seed=0)) == 10 + 40


def test_mlm_collator_masks_only_real_tokens():
    torch = pytest.importorskip("torch")
    from xstilts.models.tiny import build_tiny_tokenizer
    from xstilts.train.mlm import MLMCollator, mlm_features

    tok = build_tiny_tokenizer()
    texts = ["The quick brown fox jumps over the lazy dog."] * 64
    feats = mlm_features(texts, tok, max_length=32)
    torch.manual_seed(0)
    batch = MLMCollator(tok, 0.15)(feats)
    ids, labels = batch["input_ids"], batch["labels"]
    original = torch.tensor(feats[0]["input_ids"])
    chosen = labels != -100
    # labels hold the original token where chosen, and nothing is chosen on <s> / </s>
    assert torch.equal(labels[chosen], original.expand_as(labels)[chosen])
    assert not chosen[:, 0].any() and not chosen[:, len(original) - 1].any()
    rate = chosen.sum().item() / (64 * (len(original) - 2))
    assert 0.10 < rate < 0.22
    masked = (ids == tok.mask_token_id) & chosen
    assert 0.65 < masked.sum().item() / chosen.sum().item() < 0.95
    assert torch.equal(ids[~chosen], original.expand_as(ids)[~chosen])
    # deterministic given torch's generator (which checkpoints save)
    torch.manual_seed(0)
    assert torch.equal(MLMCollator(tok, 0.15)(feats)["input_ids"], ids)


def test_mlm_model_shares_the_encoder_and_loads_its_head(tmp_path):
    torch = pytest.importorskip("torch")
    from transformers import AutoModelForMaskedLM

    from xstilts.models.mlm import build_mlm_model
    from xstilts.models.tiny import build_tiny_model

    encoder, tok = build_tiny_model(tmp_path / "enc")
    mlm, loaded = build_mlm_model(encoder, tmp_path / "enc")
    assert not loaded  # a bare encoder folder has no LM head: a fresh one
    assert mlm.base_model is encoder
    assert mlm.get_output_embeddings().weight is encoder.get_input_embeddings().weight
    # a folder with an LM head (saved from a masked-LM model) gives its head weights back
    full = AutoModelForMaskedLM.from_config(encoder.config)
    with torch.no_grad():
        full.lm_head.dense.weight.fill_(0.25)
    full.save_pretrained(tmp_path / "with_head")
    mlm2, loaded2 = build_mlm_model(encoder, tmp_path / "with_head")
    assert loaded2 and torch.all(mlm2.lm_head.dense.weight == 0.25)
    ids = tok(["The quick brown fox"], return_tensors="pt")["input_ids"]
    out = mlm2(input_ids=ids, labels=ids)
    out.loss.backward()
    assert encoder.embeddings.word_embeddings.weight.grad is not None  # MLM steps train the encoder


def test_formulation_hook_reports_what_is_available():
    from xstilts.tasks import get_task
    from xstilts.train.formulations import (
        TrainablePart,
        available_formulations,
        get_builder,
        register_formulation,
    )

    assert "head" in available_formulations()
    name, _ = get_builder(get_task("mnli"), None)
    assert name == "head"
    with pytest.raises(ConfigError, match="formulation 'nosuch' is not available"):
        get_builder(get_task("conala"), "nosuch")

    def fake(inp):
        return TrainablePart(name=inp.task.name, model=None, train_features=[], collate=lambda b: {})

    register_formulation("test-fake", fake)
    assert get_builder(get_task("conala"), "test-fake")[1] is fake
