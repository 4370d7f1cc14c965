"""Task heads on tiny encoders: shapes, overfitting a tiny batch, save/load, any AutoModel."""

from __future__ import annotations

import json
import random

import pytest
import torch

from xstilts.data.examples import (
    MultipleChoiceExample,
    QAAnswer,
    QAExample,
    SentencePairExample,
    TaggingExample,
)
from xstilts.data.features import collate, featurize, word_pieces
from xstilts.errors import ConfigError, MissingDataError
from xstilts.models.heads import TaskModel, build_model, is_task_model_dir, load_task_model
from xstilts.models.tiny import build_tiny_model
from xstilts.tasks import TaskKind

torch.set_num_threads(1)


@pytest.fixture()
def tiny():
    return build_tiny_model(seed=0)


def _pair_batch(tok):
    exs = [
        SentencePairExample("1", "The fox jumps.", "Der Fuchs springt.", "entailment"),
        SentencePairExample("2", "The dog sleeps.", "Le renard saute.", "contradiction"),
        SentencePairExample("3", "A lazy dog.", "El perro perezoso.", "neutral"),
        SentencePairExample("4", "Brown fox.", "Быстрая лиса.", "entailment"),
    ]
    return collate(featurize("xnli", exs, tok, max_length=64, for_training=True), tok)


def _tag_batch(tok):
    exs = [
        TaggingExample("1", ["The", "quick", "fox", "狐狸"], ["DET", "ADJ", "NOUN", "NOUN"]),
        TaggingExample(
            "2", ["jumps", "over", "the", "dog", "."], ["VERB", "ADP", "DET", "NOUN", "PUNCT"]
        ),
    ]
    return collate(featurize("udpos", exs, tok, max_length=64, for_training=True), tok)


def _qa_batch(tok):
    ctx = "The treaty was signed in Paris by the king in 1763."
    exs = [
        QAExample("1", "Where was it signed?", ctx, [QAAnswer("Paris", ctx.index("Paris"))]),
        QAExample("2", "When?", ctx, [QAAnswer("1763", ctx.index("1763"))]),
    ]
    return collate(featurize("xquad", exs, tok, max_length=64, for_training=True), tok)


def _mc_batch(tok):
    exs = [
        MultipleChoiceExample(
            "1", "The fox jumps.", "What jumps?", ["the fox", "the dog", "a cat"], 0
        ),
        MultipleChoiceExample(
            "2", "The dog sleeps.", "Who sleeps?", ["the fox", "the dog", "a cat"], 1
        ),
    ]
    return collate(featurize("multiple-choice", exs, tok, max_length=64, for_training=True), tok)


CASES = {
    "xnli": (_pair_batch, lambda b: (b["input_ids"].shape[0], 3)),
    "udpos": (_tag_batch, lambda b: (*b["input_ids"].shape, 17)),
    "xquad": (_qa_batch, lambda b: (*b["input_ids"].shape, 2)),
    "multiple-choice": (_mc_batch, lambda b: b["input_ids"].shape[:2]),
}


def _eval_loss(model, batch):
    model.eval()
    with torch.no_grad():
        return model(**batch).loss.item()


def _overfit(model, batch, steps=120, lr=5e-3):
    """Train on one batch; returns the loss (without dropout) before and after."""
    torch.manual_seed(0)
    before = _eval_loss(model, batch)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        loss = model(**batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return before, _eval_loss(model, batch)


@pytest.mark.parametrize("task", list(CASES))
def test_head_shapes_loss_and_overfit(task, tiny):
    encoder, tok = tiny
    make, shape = CASES[task]
    model = build_model(task, encoder)
    batch = make(tok)
    model.eval()
    with torch.no_grad():
        out = model(**batch)
    assert tuple(out.logits.shape) == tuple(shape(batch))
    assert out.loss is not None and out["loss"] is out.loss and torch.isfinite(out.loss)
    no_labels = {
        k: v for k, v in batch.items() if k not in ("labels", "start_positions", "end_positions")
    }
    with torch.no_grad():
        assert model(**no_labels).loss is None
    before, after = _overfit(model, batch)
    assert after < 0.5 * before, (before, after)


def test_save_load_round_trip_identical_logits(tiny, tmp_path):
    encoder, tok = tiny
    for task, (make, _) in CASES.items():
        model = build_model(task, encoder)
        batch = make(tok)
        _overfit(model, batch, steps=2)
        model.eval()
        with torch.no_grad():
            before = model(**batch).logits
        folder = tmp_path / task
        model.save(folder, tokenizer=tok)
        assert is_task_model_dir(folder)
        assert (folder / "encoder" / "config.json").is_file() and (
            folder / "head.safetensors"
        ).is_file()
        assert json.loads((folder / "head.json").read_text())["kind"] == model.kind.value
        again, tok2 = load_task_model(folder)
        with torch.no_grad():
            after = again(**batch).logits
        assert torch.equal(before, after), task
        assert tok2("The fox 狐狸")["input_ids"] == tok("The fox 狐狸")["input_ids"]
        if task == "udpos":
            assert again.labels == list(model.labels) and len(again.labels) == 17
    # the encoder folder alone is a standard HF model: phase 2 loads only it
    from transformers import AutoModel

    enc = AutoModel.from_pretrained(str(tmp_path / "xnli" / "encoder"))
    assert enc.config.hidden_size == 32


def test_any_automodel_encoder_bert_with_token_types(tiny):
    """A BERT encoder (token_type_ids used) with the XLM-R tokenizer's ids works too."""
    from transformers import BertConfig, BertModel

    _, tok = tiny
    torch.manual_seed(0)
    bert = BertModel(
        BertConfig(
            vocab_size=len(tok),
            hidden_size=24,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=48,
            max_position_embeddings=128,
            pad_token_id=tok.pad_token_id,
        )
    )
    model = build_model("xnli", bert)
    batch = _pair_batch(tok)
    batch["token_type_ids"] = torch.zeros_like(batch["input_ids"])
    batch["token_type_ids"][:, 5:] = 1
    model.eval()
    with torch.no_grad():
        a = model(**batch).logits
        batch["token_type_ids"].zero_()
        b = model(**batch).logits
    assert a.shape == (4, 3) and not torch.allclose(a, b)  # token types reach the encoder
    before, after = _overfit(model, batch)
    assert after < 0.5 * before, (before, after)


def test_build_model_errors(tiny):
    encoder, _ = tiny
    with pytest.raises(ConfigError, match="num_labels"):
        build_model(TaskKind.TAGGING, encoder)
    with pytest.raises(ConfigError, match="no head"):
        build_model("tatoeba", encoder)
    assert build_model("tagging", encoder, labels=["A", "B"]).num_labels == 2
    with pytest.raises(MissingDataError):
        TaskModel.load("/nonexistent/folder")


def test_bare_metaspace_labelling_gives_wrong_predictions():
    """Labelling the shared bare "▁" piece instead of the word's first character piece.

    Every word here is one CJK character that the tokenizer splits as "▁" + character, and a
    word's tag is a function of the character. Trained identically, the first-character
    convention tags unseen sentences perfectly; the bare-piece convention sees the same "▁" input
    at every labelled position and is near chance (4 tags).
    """
    _, tok = build_tiny_model(seed=0)
    chars = [
        c
        for c in dict.fromkeys("敏捷的棕色狐狸跳过了懒狗素早い茶色の狐がのろまな犬を飛び越える")
        if tok.convert_ids_to_tokens(
            tok([c], is_split_into_words=True, add_special_tokens=False)["input_ids"]
        )
        == ["▁", c]
    ]
    assert len(chars) >= 16
    labels = ["A", "B", "C", "D"]
    tag_of = {c: labels[i % 4] for i, c in enumerate(chars)}

    def sentences(n, seed):
        r = random.Random(seed)
        out = []
        for k in range(n):
            words = [r.choice(chars) for _ in range(8)]
            out.append(TaggingExample(str(k), words, [tag_of[w] for w in words]))
        return out

    def features(examples, bare):
        feats = featurize("tagging", examples, tok, max_length=64, labels=labels, for_training=True)
        if bare:  # move each label back onto the word's first piece, the bare "▁"
            for f, ex in zip(feats, examples):
                wps = word_pieces(ex.tokens, tok)
                moved = [-100] * len(f["labels"])
                for p, w in f["word_positions"]:
                    assert tok.convert_ids_to_tokens(f["input_ids"][p - wps[w].label_offset]) == "▁"
                    moved[p - wps[w].label_offset] = f["labels"][p]
                f["labels"] = moved
        return feats

    train, test = sentences(64, 1), sentences(64, 2)
    accuracy = {}
    for bare in (False, True):
        encoder, _ = build_tiny_model(seed=0)
        torch.manual_seed(0)
        model = build_model("tagging", encoder, labels=labels)
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
        feats = features(train, bare)
        for step in range(60):
            i = (step * 16) % 64
            loss = model(**collate(feats[i : i + 16], tok)).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        batch = collate(features(test, bare), tok)
        gold = batch.pop("labels")
        with torch.no_grad():
            pred = model(**batch).logits.argmax(-1)
        mask = gold != -100
        accuracy[bare] = (pred[mask] == gold[mask]).float().mean().item()
    assert accuracy[False] > 0.95, accuracy
    assert accuracy[True] < 0.7, accuracy


def test_encoder_without_pooler_loads_without_one(tiny, tmp_path):
    """Heads never use the encoder's pooler; a checkpoint without one gets no random one back."""
    from transformers import XLMRobertaModel

    encoder, tok = tiny
    torch.manual_seed(0)
    bare = XLMRobertaModel(encoder.config, add_pooling_layer=False)
    model = build_model("udpos", bare)
    batch = _tag_batch(tok)
    model.eval()
    with torch.no_grad():
        before = model(**batch).logits
    model.save(tmp_path / "m", tokenizer=tok)
    again, _ = load_task_model(tmp_path / "m")
    assert again.encoder.pooler is None
    with torch.no_grad():
        assert torch.equal(before, again(**batch).logits)
