"""Packed rows give each sequence the hidden states, and the batch the loss, it has unpacked."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from xstilts.errors import ConfigError  # noqa: E402
from xstilts.models.loading import position_offset  # noqa: E402
from xstilts.models.packing import ATTENTION, PackedCollator, packed_collator  # noqa: E402


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


def _encoder(arch):
    from transformers import BertConfig, BertModel, XLMRobertaConfig, XLMRobertaModel

    common = dict(vocab_size=80, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                  pad_token_id=1)  # fmt: skip
    torch.manual_seed(0)
    if arch == "bert":
        return BertModel(BertConfig(max_position_embeddings=130, attn_implementation="sdpa", **common),
                         add_pooling_layer=False)
    return XLMRobertaModel(XLMRobertaConfig(max_position_embeddings=132, attn_implementation="sdpa",
                                            **common), add_pooling_layer=False)


def _gradients(model, batch):
    model.zero_grad()
    model(**batch).loss.backward()
    return [p.grad.clone() for p in model.parameters() if p.grad is not None]


@pytest.mark.parametrize("arch", ["xlm-roberta", "bert"])
def test_packed_batch_equals_the_unpacked_one(arch):
    from xstilts.data.features import collate
    from xstilts.models.heads import build_model

    encoder = _encoder(arch)
    model = build_model("udpos", encoder, num_labels=5).eval()
    model.head.dropout.p = 0.0

    class Tok:
        pad_token_id = 1

    feats = _features(12, seed=3, vocab=80)
    plain = collate(feats, Tok())
    packed = packed_collator(encoder)(feats)
    assert encoder.config._attn_implementation == ATTENTION
    total = sum(len(f["input_ids"]) for f in feats)
    assert packed["input_ids"].shape == (1, total)  # one row, no padding
    assert packed["max_length_q"] == max(len(f["input_ids"]) for f in feats)
    assert position_offset(encoder.config) == (2 if arch == "xlm-roberta" else 0)
    out_plain = model(**plain)
    out_packed = model(**packed)
    assert out_packed.loss.item() == pytest.approx(out_plain.loss.item(), rel=1e-5)
    # each labelled token's logits, in the same order (sequences are laid end to end)
    plain_logits = out_plain.logits[plain["labels"] != -100]
    packed_logits = out_packed.logits[0][packed["labels"][0] != -100]
    assert torch.allclose(packed_logits, plain_logits, atol=1e-5)
    # unpacked calls on the switched encoder are plain SDPA
    out_again = model(**plain)
    assert torch.equal(out_again.logits, out_plain.logits)
    # gradients agree too
    g_plain, g_packed = _gradients(model, plain), _gradients(model, packed)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(g_plain, g_packed))


@pytest.mark.parametrize("arch", ["xlm-roberta", "bert"])
def test_packed_sentence_pairs_equal_the_unpacked_ones(arch):
    """Sentence-level heads read each packed sequence's first token; BERT's segment ids travel."""
    from xstilts.data.features import collate
    from xstilts.models.heads import build_model

    encoder = _encoder(arch)
    model = build_model("xnli", encoder, num_labels=3).eval()
    feats = []
    for i, f in enumerate(_features(10, seed=5, vocab=80)):
        n = len(f["input_ids"])
        g = {"input_ids": f["input_ids"], "attention_mask": f["attention_mask"], "labels": i % 3}
        if arch == "bert":
            g["token_type_ids"] = [0] * (n // 2) + [1] * (n - n // 2)
        feats.append(g)

    class Tok:
        pad_token_id = 1

    plain, packed = collate(feats, Tok()), packed_collator(encoder)(feats)
    assert packed["labels"].tolist() == [i % 3 for i in range(10)]
    out_plain, out_packed = model(**plain), model(**packed)
    assert out_packed.logits.shape == out_plain.logits.shape == (10, 3)
    assert torch.allclose(out_packed.logits, out_plain.logits, atol=1e-5)
    assert out_packed.loss.item() == pytest.approx(out_plain.loss.item(), rel=1e-5)
    if arch == "bert":  # the segments matter: without them the logits differ
        no_segments = {k: v for k, v in packed.items() if k != "token_type_ids"}
        no_segments["token_type_ids"] = torch.zeros_like(packed["input_ids"])
        assert not torch.allclose(model(**no_segments).logits, out_plain.logits, atol=1e-5)
    g_plain, g_packed = _gradients(model, plain), _gradients(model, packed)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(g_plain, g_packed))


def test_packing_needs_sdpa():
    from transformers import BertConfig, BertModel

    encoder = BertModel(BertConfig(vocab_size=20, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                   intermediate_size=16, attn_implementation="eager"))
    with pytest.raises(ConfigError, match="sdpa"):
        packed_collator(encoder)
    batch = PackedCollator(2, token_types=True)([{"input_ids": [5, 6, 7]}, {"input_ids": [8, 9]}])
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9]] and "labels" not in batch
    assert batch["position_ids"].tolist() == [[2, 3, 4, 2, 3]]
    assert batch["cu_seq_lens_q"].tolist() == [0, 3, 5] and batch["max_length_q"] == 3
    assert batch["token_type_ids"].tolist() == [[0] * 5]


def test_packed_row_longer_than_the_position_table():
    """A packed row may hold more tokens than the encoder has positions (each sequence fits)."""
    from transformers import BertConfig, BertModel

    from xstilts.models.heads import build_model

    encoder = BertModel(BertConfig(vocab_size=80, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                   intermediate_size=32, max_position_embeddings=48, attn_implementation="sdpa"),
                        add_pooling_layer=False)
    model = build_model("udpos", encoder, num_labels=5)
    batch = packed_collator(encoder)(_features(10, seed=1, vocab=80))
    assert batch["input_ids"].shape[1] > 48
    out = model(**batch)
    out.loss.backward()
    assert torch.isfinite(out.loss)


def test_blocked_attention_equals_per_sequence_attention():
    """The accelerator path (one padded block) and the CPU path (one call per sequence) agree."""
    from torch.nn.functional import scaled_dot_product_attention

    from xstilts.models.packing import _blocked_attention, packed_attention

    torch.manual_seed(0)
    lengths = [5, 1, 9, 3]
    q, k, v = (torch.randn(1, 2, sum(lengths), 4) for _ in range(3))
    cu = torch.tensor([0, 5, 6, 15, 18], dtype=torch.int32)
    blocked = _blocked_attention(q, k, v, cu, max(lengths), 0.0, None)
    module = torch.nn.Module().eval()
    per_sequence, _ = packed_attention(module, q, k, v, None, cu_seq_lens_q=cu, max_length_q=9)
    assert blocked.shape == per_sequence.shape == (1, 18, 2, 4)
    assert torch.allclose(blocked, per_sequence, atol=1e-6)
    start = 0
    for n in lengths:  # and both are each sequence attending to itself alone
        s = slice(start, start + n)
        alone = scaled_dot_product_attention(q[:, :, s], k[:, :, s], v[:, :, s]).transpose(1, 2)
        assert torch.allclose(per_sequence[:, s], alone, atol=1e-6)
        start += n


def test_blocked_layout_is_computed_once_per_batch(monkeypatch):
    """The blocked form's slots and key mask are computed once per batch, not once per layer, and
    a new batch gets its own (a stale layout would misplace every token: checked against the
    per-sequence form, batch after batch)."""
    from xstilts.models import packing
    from xstilts.models.heads import build_model

    model = build_model("udpos", _encoder("xlm-roberta"), num_labels=5).eval()
    collate = packing.packed_collator(model.encoder)
    computed = []
    real_slots = packing._slots
    monkeypatch.setattr(packing, "_slots", lambda *a: computed.append(1) or real_slots(*a))
    for seed in range(3):  # batches of different sizes and lengths
        batch = collate(_features(4 + seed, seed, 80))
        batch.pop("labels")
        with torch.no_grad():
            monkeypatch.setattr(packing, "per_sequence", lambda query: False)
            blocked = model(**batch).logits
            monkeypatch.setattr(packing, "per_sequence", lambda query: True)
            per_sequence = model(**batch).logits
        assert len(computed) == seed + 1  # 2 layers, one computation per batch
        assert torch.allclose(blocked, per_sequence, atol=1e-5)


def test_packed_qa_loss_is_each_sequence_alone():
    """QA's span loss over a packed row is each sequence's loss as if run alone (no padding), and
    its gradients are the mean of theirs; a position beyond its own sequence is ignored."""
    from xstilts.models.heads import build_model

    encoder = _encoder("xlm-roberta")
    model = build_model("xquad", encoder).eval()
    feats = []
    for i, f in enumerate(_features(6, seed=7, vocab=80)):
        n = len(f["input_ids"])
        feats.append({"input_ids": f["input_ids"], "attention_mask": f["attention_mask"],
                      "start_positions": (3 * i) % n, "end_positions": min(n - 1, (3 * i) % n + 2)})
    packed = packed_collator(encoder)(feats)
    assert packed["start_positions"].shape == (6,)
    out = model(**packed)
    assert out.start_logits.shape == (1, sum(len(f["input_ids"]) for f in feats))

    def alone(f):
        return model(input_ids=torch.tensor([f["input_ids"]]), attention_mask=torch.tensor([f["attention_mask"]]),
                     start_positions=torch.tensor([f["start_positions"]]),
                     end_positions=torch.tensor([f["end_positions"]]))

    singles = [alone(f) for f in feats]
    assert out.loss.item() == pytest.approx(sum(o.loss.item() for o in singles) / 6, rel=1e-5)
    g_packed = _gradients(model, packed)
    model.zero_grad()
    (sum(alone(f).loss for f in feats) / 6).backward()
    g_alone = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(g_packed, g_alone))
    # a start beyond its own (short) sequence is ignored, not scored against padding
    short = min(range(6), key=lambda i: len(feats[i]["input_ids"]))
    bad = dict(packed, start_positions=packed["start_positions"].clone())
    bad["start_positions"][short] = packed["max_length_q"] - 1
    assert len(feats[short]["input_ids"]) < packed["max_length_q"]
    assert torch.isfinite(model(**bad).loss)


@pytest.mark.parametrize("arch", ["xlm-roberta", "bert"])
def test_packed_multiple_choice_equals_the_padded_batch(arch):
    """Every choice of every example is one sequence of the row; the head regroups them."""
    from xstilts.data.features import collate
    from xstilts.models.heads import build_model

    encoder = _encoder(arch)
    model = build_model("commonsenseqa", encoder).eval()
    rows = _features(20, seed=11, vocab=80)
    feats = []
    for e in range(5):  # 5 examples x 4 choices of different lengths
        choices = [r["input_ids"] for r in rows[4 * e: 4 * e + 4]]
        f = {"input_ids": choices, "attention_mask": [[1] * len(c) for c in choices], "labels": e % 4}
        if arch == "bert":
            f["token_type_ids"] = [[0] * (len(c) // 2) + [1] * (len(c) - len(c) // 2) for c in choices]
        feats.append(f)

    class Tok:
        pad_token_id = 1

    plain, packed = collate(feats, Tok()), packed_collator(encoder)(feats)
    assert plain["input_ids"].shape[:2] == (5, 4)
    assert packed["input_ids"].shape == (1, sum(len(r["input_ids"]) for r in rows))
    assert packed["num_choices"] == 4 and packed["cu_seq_lens_q"].numel() == 21
    assert packed["labels"].tolist() == [0, 1, 2, 3, 0]
    out_plain, out_packed = model(**plain), model(**packed)
    assert out_packed.logits.shape == out_plain.logits.shape == (5, 4)
    assert torch.allclose(out_packed.logits, out_plain.logits, atol=1e-5)
    assert out_packed.loss.item() == pytest.approx(out_plain.loss.item(), rel=1e-5)
    g_plain, g_packed = _gradients(model, plain), _gradients(model, packed)
    assert len(g_plain) == len(g_packed)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(g_plain, g_packed))
    with pytest.raises(ValueError, match=r"mixes examples with \[3, 4\] choices"):
        packed_collator(encoder)([feats[0], {**feats[1], "input_ids": feats[1]["input_ids"][:3]}])


def test_phase1_head_parts_pack_unless_told_not_to():
    """Intermediate tasks with a head train on packed rows by default (same loss as padded), and
    score their dev examples packed; ``pack_sequences: false`` or an encoder that cannot pack
    gives padded batches, and the part says why."""
    from transformers import BertConfig, BertModel

    from xstilts.data.examples import MultipleChoiceExample
    from xstilts.models.tiny import build_tiny_model
    from xstilts.study.run_config import RunConfig
    from xstilts.tasks import get_task
    from xstilts.train.formulations import FormulationInput, build_head_part

    words = "the cat sat on a mat where is it red blue green dog ran"
    encoder, tokenizer = build_tiny_model(extra_text=[words], vocab_size=300)
    examples = [MultipleChoiceExample(id=str(i), context="the cat sat on a mat", question="where is it " * (i % 3),
                                      choices=["mat", "red dog", "on a blue mat", "green"], label=i % 4)
                for i in range(6)]  # fmt: skip
    task = get_task("commonsenseqa")
    settings = RunConfig(model="m", data_dir="d", out="o", intermediate="commonsenseqa").phase_settings("intermediate", task.kind.value)
    assert settings["pack_sequences"] is True

    def part(enc, **override):
        return build_head_part(FormulationInput(task=task, encoder=enc, tokenizer=tokenizer, train_examples=examples,
                                                dev_examples=examples, settings={**settings, **override}))

    packed = part(encoder)
    assert packed.info["packed"] is True
    batch = packed.collate(packed.train_features[:3])
    assert batch["input_ids"].shape[0] == 1 and batch["num_choices"] == 4
    packed.model.eval()
    padded = part(encoder, pack_sequences=False)
    assert padded.info["packed"] is False and "cu_seq_lens_q" not in padded.collate(padded.train_features[:3])
    padded.model.load_state_dict(packed.model.state_dict())
    padded.model.eval()
    loss_packed = packed.model(**batch).loss
    loss_padded = padded.model(**padded.collate(padded.train_features[:3])).loss
    assert loss_packed.item() == pytest.approx(loss_padded.item(), rel=1e-5)
    assert packed.evaluate(packed.model) == padded.evaluate(padded.model)
    eager = BertModel(BertConfig(vocab_size=300, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                 intermediate_size=16, attn_implementation="eager"))
    assert "sdpa" in part(eager).info["packed"]
