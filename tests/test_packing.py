"""Packed rows give each sequence the hidden states, and the batch the loss, it has unpacked."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from xstilts.data.packing import PackedCollator, packed_collator, plan_rows, position_offset  # noqa: E402
from xstilts.errors import ConfigError  # noqa: E402


def test_plan_rows_first_fit_decreasing():
    rows = plan_rows([5, 9, 3, 7, 2], 10)
    assert sorted(i for r in rows for i in r) == [0, 1, 2, 3, 4]
    assert rows == [[1], [3, 2], [0, 4]]  # 9 | 7+3 | 5+2 (first fit, longest first)
    assert all(sum([5, 9, 3, 7, 2][i] for i in r) <= 10 for r in rows)
    with pytest.raises(ConfigError, match="11 tokens does not fit"):
        plan_rows([11], 10)


def _features(n: int, seed: int, vocab: int, num_labels: int = 5):
    import random

    rng = random.Random(seed)
    feats = []
    for _ in range(n):
        length = rng.randint(3, 40)
        ids = [0] + [rng.randrange(5, vocab) for _ in range(length - 2)] + [2]
        labels = [-100] + [rng.randrange(num_labels) for _ in range(length - 2)] + [-100]
        feats.append({"input_ids": ids, "attention_mask": [1] * length, "labels": labels})
    return feats


@pytest.mark.parametrize("arch", ["xlm-roberta", "bert"])
def test_packed_batch_equals_the_unpacked_one(arch):
    from transformers import BertConfig, BertModel, XLMRobertaConfig, XLMRobertaModel

    from xstilts.data.features import collate
    from xstilts.models.heads import build_model

    common = dict(vocab_size=80, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                  pad_token_id=1)  # fmt: skip
    torch.manual_seed(0)
    if arch == "bert":
        encoder = BertModel(BertConfig(max_position_embeddings=130, attn_implementation="sdpa", **common),
                            add_pooling_layer=False)
    else:
        encoder = XLMRobertaModel(XLMRobertaConfig(max_position_embeddings=132, attn_implementation="sdpa",
                                                   **common), add_pooling_layer=False)
    model = build_model("udpos", encoder, num_labels=5).eval()
    model.head.dropout.p = 0.0

    class Tok:
        pad_token_id = 1

    feats = _features(12, seed=3, vocab=80)
    plain = collate(feats, Tok())
    packed = packed_collator(Tok(), encoder, row_length=128)(feats)
    assert packed["input_ids"].shape[0] < len(feats)  # several sentences share a row
    assert position_offset(encoder.config) == (2 if arch == "xlm-roberta" else 0)
    out_plain = model(**plain)
    out_packed = model(**packed)
    assert out_packed.loss.item() == pytest.approx(out_plain.loss.item(), rel=1e-5)
    # each labelled token's logits, taken in the same order (sequences are laid out row by row)
    plain_logits = out_plain.logits[plain["labels"] != -100]
    order = plan_rows([len(f["input_ids"]) for f in feats], 128)
    chunks, r_start = [], {}
    for r, row in enumerate(order):
        start = 0
        for i in row:
            r_start[i] = (r, start)
            start += len(feats[i]["input_ids"])
    for i, f in enumerate(feats):
        r, s = r_start[i]
        n = len(f["input_ids"])
        lab = torch.tensor(f["labels"]) != -100
        chunks.append(out_packed.logits[r, s : s + n][lab])
    assert torch.allclose(torch.cat(chunks), plain_logits, atol=1e-5)
    # gradients agree too
    model.zero_grad()
    model(**plain).loss.backward()
    g_plain = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    model.zero_grad()
    model(**packed).loss.backward()
    g_packed = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(g_plain, g_packed))


def test_packing_needs_sdpa():
    from transformers import BertConfig, BertModel

    encoder = BertModel(BertConfig(vocab_size=20, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                   intermediate_size=16, attn_implementation="eager"))

    class Tok:
        pad_token_id = 0

    with pytest.raises(ConfigError, match="sdpa"):
        packed_collator(Tok(), encoder, 64)
    batch = PackedCollator(0, 8, 0)([{"input_ids": [5, 6, 7]}, {"input_ids": [8, 9]}])
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9]] and "labels" not in batch
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1]]
    assert batch["attention_mask"][0, 0].int().tolist()[3] == [0, 0, 0, 1, 1]
