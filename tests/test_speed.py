"""Speed switches that claim to change nothing numerically, checked against the switch turned off.

Tiny XLM-R (local tokenizer) with a tagging head, dropout off, on real UDPOS English sentences;
a fixed batch plan so that both runs see exactly the same batches.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

REPO = Path(__file__).resolve().parents[1]


class FixedPlanner:
    """The same batches every epoch (so two runs differ only in the switch under test)."""

    def __init__(self, batches):
        self.batches = [list(b) for b in batches]

    def plan(self, epoch):
        return [list(b) for b in self.batches]

    def describe(self):
        return {"kind": "fixed", "batches": len(self.batches)}


@pytest.fixture(scope="module")
def setup(shared_data, tmp_path_factory):
    from xstilts.data.features import featurize
    from xstilts.data.readers import read_examples
    from xstilts.models.tiny import build_tiny_model

    examples = read_examples("udpos", shared_data, "train", "en")[:48]
    folder = tmp_path_factory.mktemp("tiny")
    build_tiny_model(
        folder, hidden_size=32, num_layers=2, extra_text=[" ".join(e.tokens) for e in examples]
    )
    features = featurize("udpos", examples, _tokenizer(folder), for_training=True)
    return folder, features


def _tokenizer(folder):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder))


def _model(folder, attn="sdpa"):
    from transformers import AutoModel

    from xstilts.models.heads import build_model

    encoder = AutoModel.from_pretrained(str(folder), attn_implementation=attn)
    torch.manual_seed(0)
    model = build_model("udpos", encoder, dropout=0.0)
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    return model


def _padded_collate(tokenizer, length=128):
    from xstilts.data.features import collate

    def fn(features):
        batch = collate(features, tokenizer)
        width = batch["input_ids"].shape[1]
        out = {}
        for k, v in batch.items():
            fill = tokenizer.pad_token_id if k == "input_ids" else -100 if k == "labels" else 0
            out[k] = torch.nn.functional.pad(v, (0, length - width), value=fill)
        return out

    return fn


def _train(folder, features, tmp_path, name, *, batches, collate_fn=None, pack=False, **overrides):
    """Train a fresh tiny tagger over ``batches``; ``pack``: on packed rows (its own collator)."""
    from xstilts.data.features import make_collate
    from xstilts.models.packing import packed_collator
    from xstilts.train.loop import train
    from xstilts.train.train_config import TrainConfig

    tokenizer = _tokenizer(folder)
    model = _model(folder)
    if pack:
        collate_fn = packed_collator(model.encoder)
    config = TrainConfig(
        learning_rate=1e-3, batch_size=8, epochs=1, progress=False, tensorboard=False,
        log_every=0, cpu=True, **overrides,
    )  # fmt: skip
    result = train(
        model, features, collate_fn or make_collate(tokenizer), config,
        out_dir=tmp_path / name, planner=FixedPlanner(batches),
    )  # fmt: skip
    return model, result


def _max_diff(a, b) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    return max(float((sa[k].float() - sb[k].float()).abs().max()) for k in sa)


def _moved(model, folder) -> float:
    """How far training moved the weights (a scale for the tolerances)."""
    return _max_diff(model, _model(folder))


def _batches(features, size=8):
    idx = list(range(len(features)))
    return [idx[i : i + size] for i in range(0, len(idx), size)]


def test_dynamic_padding_gives_the_weights_of_padding_to_max_length(setup, tmp_path):
    folder, features = setup
    batches = _batches(features)
    dyn, _ = _train(folder, features, tmp_path, "dyn", batches=batches)
    pad, _ = _train(
        folder, features, tmp_path, "pad", batches=batches,
        collate_fn=_padded_collate(_tokenizer(folder)),
    )  # fmt: skip
    moved = _moved(dyn, folder)
    assert moved > 1e-3  # training did change the weights
    assert _max_diff(dyn, pad) < 1e-6  # float rounding (measured: 7e-8)
    # control: the same batches in another order give clearly different weights
    other, _ = _train(folder, features, tmp_path, "other", batches=[b[::-1] for b in batches][::-1])
    assert _max_diff(dyn, other) > 1e-4


def test_order_inside_a_batch_changes_nothing(setup, tmp_path):
    folder, features = setup
    batches = _batches(features)
    a, ra = _train(folder, features, tmp_path, "a", batches=batches)
    b, rb = _train(folder, features, tmp_path, "b", batches=[x[::-1] for x in batches])
    assert _max_diff(a, b) < 1e-6
    assert ra.train_loss == pytest.approx(rb.train_loss, rel=1e-6)


def test_length_grouping_keeps_every_example_once_and_only_reorders():
    from xstilts.train.batching import LengthGroupedPlanner

    lengths = [5, 40, 7, 33, 12, 9, 28, 3, 17, 22, 8, 30, 11]
    grouped = LengthGroupedPlanner(lengths, 4, seed=3, group_by_length=True).plan(0)
    plain = LengthGroupedPlanner(lengths, 4, seed=3, group_by_length=False).plan(0)
    assert sorted(i for b in grouped for i in b) == list(range(len(lengths)))
    assert sorted(i for b in plain for i in b) == list(range(len(lengths)))
    assert [len(b) for b in sorted(grouped, key=len)] == [len(b) for b in sorted(plain, key=len)]

    def padded(plan):
        return sum(max(lengths[i] for i in b) * len(b) for b in plan)

    assert padded(grouped) < padded(plain)  # what grouping is for


def test_fused_adamw_matches_the_per_tensor_loop(setup, tmp_path):
    folder, features = setup
    batches = _batches(features)
    fused, _ = _train(folder, features, tmp_path, "fused", batches=batches)
    loop, _ = _train(folder, features, tmp_path, "loop", batches=batches, fused_optimizer=False)
    assert _max_diff(fused, loop) < 1e-6


def test_dataloader_workers_give_identical_weights(setup, tmp_path):
    folder, features = setup
    batches = _batches(features)
    inline, _ = _train(folder, features, tmp_path, "inline", batches=batches)
    workers, _ = _train(
        folder, features, tmp_path, "workers", batches=batches, dataloader_workers=2,
        pin_memory=False,
    )  # fmt: skip
    assert _max_diff(inline, workers) == 0.0


def test_collated_batches_in_plan_order_with_and_without_workers():
    from xstilts.train.batching import collated_batches

    feats = [{"x": i} for i in range(10)]
    plan = [[3, 1], [0], [9, 8, 7], [2]]

    def fn(fs):
        return [f["x"] for f in fs]

    assert list(collated_batches(feats, plan, fn)) == [[3, 1], [0], [9, 8, 7], [2]]
    assert list(collated_batches(feats, plan, fn, workers=2)) == [[3, 1], [0], [9, 8, 7], [2]]


def test_sdpa_and_eager_attention_give_the_same_logits(setup):
    from xstilts.data.features import collate

    folder, features = setup
    batch = collate(features[:16], _tokenizer(folder))  # padded rows included
    batch.pop("labels")
    sdpa, eager = _model(folder, "sdpa").eval(), _model(folder, "eager").eval()
    with torch.no_grad():
        a, b = sdpa(**batch).logits, eager(**batch).logits
    mask = batch["attention_mask"].bool()
    assert torch.allclose(a[mask], b[mask], atol=1e-5)


@pytest.mark.parametrize("pack", [None, False])
def test_fast_prediction_gives_the_tags_of_the_padded_loop(setup, shared_data, pack):
    sys.path.insert(0, str(REPO / "bench"))
    from predict import plain_tagging  # bench/predict.py's reference loop

    from xstilts.data.readers import read_examples
    from xstilts.evaluation.predict import PredictOptions, predict_examples
    from xstilts.models.packing import ATTENTION

    folder, _ = setup
    tok = _tokenizer(folder)
    model = _model(folder)
    examples = read_examples("udpos", shared_data, "test", "de")[:40]
    fast = predict_examples("udpos", model, tok, examples, PredictOptions(batch_size=7, device="cpu", pack=pack))
    # None: packed rows where the encoder allows it, as here (SDPA)
    assert (model.encoder.config._attn_implementation == ATTENTION) == (pack is None)
    slow = plain_tagging(model, tok, examples, batch_size=7)
    assert fast == slow
    assert len({t for row in fast for t in row}) > 1  # not a constant prediction


@pytest.mark.slow
@pytest.mark.parametrize("pack", [False, "per sequence", "blocked"])
def test_compiled_forward_gives_the_same_weights(setup, tmp_path, monkeypatch, pack):
    """`compile=True` trains as the eager model does: on padded batches, and on packed rows with
    either form of packed attention (per sequence, as on CPU; blocked, as on GPUs)."""
    import shutil

    from xstilts.models import packing

    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("torch.compile on CPU needs a C compiler")
    if pack == "blocked":
        monkeypatch.setattr(packing, "per_sequence", lambda query: False)
    folder, features = setup
    batches = _batches(features)[:3]
    eager, _ = _train(folder, features, tmp_path, "eager", batches=batches)
    compiled, _ = _train(folder, features, tmp_path, "compiled", batches=batches, compile=True, pack=bool(pack))
    assert _max_diff(eager, compiled) < 1e-2 * _moved(eager, folder)


@pytest.mark.parametrize("tied", [False, True])
def test_kept_embedding_grads_are_the_dense_gradient(tied):
    """Sparse rows added into the kept buffer, clipped and zeroed row by row, equal the dense
    path: two micro-batches accumulated, clipped with torch's clip_grad_norm_; tied weights (a
    dense gradient on the same table) included."""
    from xstilts.train.embedding_grads import KeptEmbeddingGrads

    def make():
        torch.manual_seed(0)
        emb = torch.nn.Embedding(50, 6, padding_idx=1)
        head = torch.nn.Linear(6, 50, bias=False)
        if tied:
            head.weight = emb.weight  # as in masked-LM heads
        return torch.nn.ModuleDict({"emb": emb, "head": head})

    batches = [torch.tensor([[3, 7, 1, 3, 9], [1, 1, 4, 49, 7]]), torch.tensor([[5, 3, 2, 8, 1]])]

    def step(model, clip):
        for ids in batches:
            (model["head"](model["emb"](ids)).logsumexp(-1).mean() * 4).backward()
        return clip(model.parameters(), 0.5)

    dense_model = make()
    dense_norm = step(dense_model, torch.nn.utils.clip_grad_norm_)
    model = make()
    kept = KeptEmbeddingGrads(model, min_rows=10)
    emb = model["emb"]
    buffer = kept.buffers[id(emb.weight)]
    for _ in range(2):  # the second step starts from the buffer zeroed row by row
        model.zero_grad(set_to_none=True)  # as the optimizer does
        kept.reset()
        assert not buffer.any()
        norm = step(model, kept.clip_grad_norm_)
        assert dense_norm > 0.5  # the clipping did scale
        assert norm == pytest.approx(float(dense_norm), rel=1e-6)
        assert emb.weight.grad is buffer and not buffer.is_sparse
        for (name, p), q in zip(model.named_parameters(), dense_model.parameters()):
            assert torch.allclose(p.grad, q.grad, atol=1e-7), name
        assert (kept.rows[id(emb.weight)] is None) == tied
    kept.close()
    assert not emb.sparse and emb.weight.grad is None
    assert KeptEmbeddingGrads(model, min_rows=51).modules == []  # small tables stay dense


def test_sparse_embedding_grads_give_identical_weights(setup, tmp_path, monkeypatch):
    from xstilts.train import embedding_grads

    folder, features = setup
    batches = _batches(features)
    dense, _ = _train(folder, features, tmp_path, "dense", batches=batches, sparse_embedding_grads=False)
    monkeypatch.setattr(embedding_grads, "MIN_ROWS", 100)  # the tiny vocabulary qualifies
    engaged = []
    monkeypatch.setattr(embedding_grads.KeptEmbeddingGrads, "close",
                        lambda self: engaged.append(len(self.modules)) or None)
    kept, _ = _train(folder, features, tmp_path, "kept", batches=batches)
    assert engaged and engaged[0] >= 1  # tables went sparse (the default for one CPU process)
    assert _max_diff(dense, kept) < 1e-6


def test_packed_qa_prediction_gives_the_answers_of_unpacked_batches(setup, shared_data):
    from transformers import AutoModel

    from xstilts.data.readers import read_examples
    from xstilts.evaluation.predict import PredictOptions, predict_examples
    from xstilts.models.heads import build_model

    folder, _ = setup
    tok = _tokenizer(folder)
    examples = read_examples("xquad", shared_data, "test", "en")[:12]
    answers = {}
    for pack in (None, False):
        torch.manual_seed(0)
        model = build_model("xquad", AutoModel.from_pretrained(str(folder), attn_implementation="sdpa"))
        answers[pack] = predict_examples("xquad", model, tok, examples, PredictOptions(
            batch_size=5, max_length=128, doc_stride=64, device="cpu", pack=pack))
    assert answers[None] == answers[False]
    assert len(answers[None]) == 12 and len(set(answers[None].values())) > 1


@pytest.mark.parametrize("task, form", [("udpos", "per sequence"), ("udpos", "blocked"),
                                        ("commonsenseqa", "per sequence")])  # fmt: skip
def test_packed_training_gives_the_weights_of_padded_batches(setup, shared_data, tmp_path, monkeypatch,
                                                            task, form):
    """A whole epoch on packed rows (tagging; multiple choice: a sequence per choice) trains the
    weights that the same batches padded do, up to float rounding; ``blocked``: with the form of
    packed attention that accelerators run (a masked block of sequences), forced here on CPU.

    Multiple choice is compared with its own rounding floor: its loss is a softmax over an
    example's choices, so gradients of what the choices share nearly cancel (the score bias's
    exactly), and Adam scales such rounding-sized gradients up to full steps. Reversing the order
    inside each padded batch, which changes nothing but rounding, moves the weights by ~5e-4 here;
    packing must stay within twice that (how rounding falls differs between CPUs), and a different
    batch order must be far outside it."""
    from transformers import AutoModel

    from xstilts.data.features import featurize, make_collate
    from xstilts.data.readers import read_examples
    from xstilts.models import packing
    from xstilts.models.heads import build_model
    from xstilts.models.packing import packed_collator
    from xstilts.train.loop import train
    from xstilts.train.train_config import TrainConfig

    if form == "blocked":
        monkeypatch.setattr(packing, "per_sequence", lambda query: False)
    folder, features = setup
    tok = _tokenizer(folder)
    size = 8
    if task == "commonsenseqa":  # 5 choices of different lengths each
        examples = read_examples(task, shared_data, "dev", "en")[:24]
        features, size = featurize(task, examples, tok, max_length=128, for_training=True), 4
        lengths = {len(c) for f in features for c in f["input_ids"]}
        assert len(lengths) > 5 and max(lengths) < 128  # padded batches really pad

    def run(name, pack, batches):
        encoder = AutoModel.from_pretrained(str(folder), attn_implementation="sdpa")
        torch.manual_seed(0)
        model = build_model(task, encoder, dropout=0.0)
        for m in model.modules():
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0
        collate = packed_collator(encoder) if pack else make_collate(tok)
        config = TrainConfig(learning_rate=1e-3, batch_size=size, epochs=1, progress=False, tensorboard=False,
                             log_every=0, cpu=True)  # fmt: skip
        train(model, features, collate, config, out_dir=tmp_path / name, planner=FixedPlanner(batches))
        return model

    batches = _batches(features, size)
    packed, padded = run("packed", True, batches), run("padded", False, batches)
    start = build_model(task, AutoModel.from_pretrained(str(folder)), dropout=0.0)
    assert _max_diff(padded.encoder, start.encoder) > 1e-3  # training moved the encoder
    if task == "udpos":
        assert _max_diff(packed, padded) < 1e-6  # measured: 5e-8
        return
    floor = _max_diff(run("reversed", False, [b[::-1] for b in batches]), padded)
    other = _max_diff(run("other", False, [b[::-1] for b in batches][::-1]), padded)
    # measured (packed, floor, other): 5e-5, 5e-4, 7e-3 on one CPU; 6.8e-4, 5.3e-4, 6.7e-3 on an AMD EPYC
    assert _max_diff(packed, padded) <= 2 * floor < other / 5
