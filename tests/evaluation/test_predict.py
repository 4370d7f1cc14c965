"""Zero-shot prediction with tiny models: tagging and QA end to end, QA decoding, the CLI."""

from __future__ import annotations

import random
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from conftest import shared_file

from xstilts.data.examples import QAAnswer, QAExample, TaggingExample
from xstilts.data.features import collate, featurize
from xstilts.evaluation.predict import PredictOptions, predict_examples, predict_task
from xstilts.evaluation.qa_decode import best_spans, decode_answers
from xstilts.models.heads import build_model
from xstilts.models.tiny import build_tiny_model

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny_tagger(tmp_path_factory):
    encoder, tok = build_tiny_model(seed=0)
    model = build_model("udpos", encoder)
    folder = tmp_path_factory.mktemp("udpos-model")
    model.save(folder, tokenizer=tok)
    return folder, model, tok


# ---------------------------------------------------------------------------- tagging


def test_tagging_prediction_one_tag_per_word(tiny_tagger):
    _, model, tok = tiny_tagger
    long = ("The quick brown fox jumps over the lazy dog . 狐狸 跳 " * 30).split()
    examples = [
        TaggingExample("long", long),
        TaggingExample("odd", ["fox", "", " ", "\u200b", "dog"]),
        TaggingExample("one", ["狐狸"]),
    ]
    preds = predict_examples("udpos", model, tok, examples, options=PredictOptions(max_length=32, batch_size=4))
    assert [len(p) for p in preds] == [len(long), 5, 1]
    assert all(t in model.labels for p in preds for t in p)
    # windowed prediction of a long sentence = the same words predicted one window at a time
    feats = featurize("udpos", examples[:1], tok, max_length=32)
    model.eval()
    expected = [None] * len(long)
    with torch.no_grad():
        for f in feats:
            logits = model(**collate([f], tok)).logits[0]
            for p, w in f["word_positions"]:
                expected[w] = model.labels[logits[p].argmax().item()]
    assert preds[0] == expected


def test_predict_udpos_end_to_end_and_score(tmp_path):
    """Train a tiny tagger briefly on real English UD data; predict and score real test files."""
    train_file = shared_file("udpos/xtreme-format/download/udpos/train-en.tsv")
    data_dir = train_file.parents[2]
    from xstilts.data.readers import read_examples
    from xstilts.evaluation.layout import gold_from_examples, read_predictions
    from xstilts.evaluation.scorer import score_language

    train = read_examples("udpos", data_dir, "train", "en")[:400]
    encoder, tok = build_tiny_model(seed=0, extra_text=[" ".join(e.tokens) for e in train])
    model = build_model("udpos", encoder)
    test_en = read_examples("udpos", data_dir, "test", "en")
    gold = gold_from_examples("udpos", test_en)
    before = score_language("udpos", "en", gold, predict_examples("udpos", model, tok, test_en))[
        "f1"
    ]

    feats = featurize("udpos", train, tok, max_length=64, for_training=True)
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3)
    rng = random.Random(0)
    model.train()
    for _ in range(150):
        loss = model(**collate(rng.sample(feats, 32), tok)).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    folder = tmp_path / "model"
    model.save(folder, tokenizer=tok)

    out = tmp_path / "preds"
    written = predict_task("udpos", folder, data_dir, out, ["en", "zh", "fr"], progress=False)
    assert set(written) == {"en", "zh", "fr"}
    scores = {}
    for lang, path in written.items():
        assert path == out / "udpos" / f"test-{lang}.tsv"
        examples = read_examples("udpos", data_dir, "test", lang)
        predictions = read_predictions(path, "udpos")
        assert [len(p) for p in predictions] == [len(e.tokens) for e in examples]
        scores[lang] = score_language(
            "udpos", lang, gold_from_examples("udpos", examples), predictions
        )["f1"]
    assert before < 20 and scores["en"] > 50, (before, scores)
    # every language present by default
    from xstilts.data.readers import available

    written_all = predict_task("udpos", folder, data_dir, tmp_path / "all", progress=False)
    assert sorted(written_all) == sorted(available("udpos", data_dir)["test"])


def test_predict_panx_dev_split(tmp_path):
    """PAN-X test labels are hidden: the dev split is predicted (into the test-{lang} files)."""
    dev_zh = shared_file("panx/download/panx/dev-zh.tsv")
    data_dir = dev_zh.parents[1]
    from xstilts.data.readers import read_examples
    from xstilts.evaluation.layout import gold_from_examples, read_predictions
    from xstilts.evaluation.scorer import score_language

    encoder, tok = build_tiny_model(seed=0)
    folder = tmp_path / "panx-model"
    build_model("panx", encoder).save(folder, tokenizer=tok)
    written = predict_task(
        "panx", folder, data_dir, tmp_path / "out", ["zh", "ja"], split="dev", progress=False
    )
    for lang, path in written.items():
        examples = read_examples("panx", data_dir, "dev", lang)
        predictions = read_predictions(path, "panx")
        assert [len(p) for p in predictions] == [len(e.tokens) for e in examples]
        assert set(t for p in predictions for t in p) <= set(build_model("panx", encoder).labels)
        f1 = score_language("panx", lang, gold_from_examples("panx", examples), predictions)["f1"]
        assert 0.0 <= f1 <= 100.0


# ---------------------------------------------------------------------------- QA


def _long_qa_example():
    filler = "The quick brown fox jumps over the lazy dog. "
    ctx = filler * 6 + "The treaty was signed in Paris in 1763. " + filler * 2
    return QAExample(
        "q", "Where was the treaty signed?", ctx, [QAAnswer("Paris", ctx.index("Paris"))]
    )


def test_frcode_picks_answer_from_later_window(tiny_tagger):
    _, _, tok = tiny_tagger
    ex = _long_qa_example()
    feats = featurize("xquad", [ex], tok, max_length=48, doc_stride=16, for_training=True)
    starts, ends = [], []
    target = None
    for i, f in enumerate(feats):
        s = np.zeros(len(f["input_ids"]))
        e = np.zeros(len(f["input_ids"]))
        if f["start_positions"] and f["max_context"][f["start_positions"]] and target is None:
            target = i
            s[f["start_positions"]] = 5.0
            e[f["end_positions"]] = 5.0
        s[0] = e[0] = 9.0  # CLS is never an answer
        starts.append(s)
        ends.append(e)
    assert target is not None and target > 0
    assert decode_answers([ex], feats, starts, ends) == {"q": "Paris"}


def test_best_spans_rules():
    ctx = "北京是中国的首都"
    offsets = [None] + [(i, i + 1) for i in range(len(ctx))] + [None]
    start = np.array([0, 0, 0, 0, 3.0, 0, 0, 1.0, 0, 0])
    end = np.array([0, 0, 0, 0, 0, 2.0, 0, 0, 4.0, 0])
    spans = best_spans(start, end, offsets, ctx, n_best=3, max_answer_length=30)
    assert spans[0].text == "中国的首都" and spans[0].score == 7.0
    assert best_spans(start, end, offsets, ctx, n_best=3, max_answer_length=2)[0].text == "中国"
    # a start whose window is not its max-context window is skipped
    mc = [True] * 10
    mc[4] = False
    assert best_spans(start, end, offsets, ctx, max_context=mc, n_best=3)[0].text == "首都"
    # an end before the start never pairs with it
    assert all(sp.end_char > sp.start_char for sp in spans)


def test_qa_model_finds_answer_in_later_window(tiny_tagger):
    """A tiny QA model overfit on one long context answers from the right window."""
    _, _, tok = tiny_tagger
    ex = _long_qa_example()
    encoder, _ = build_tiny_model(seed=1)
    model = build_model("xquad", encoder)
    feats = featurize("xquad", [ex], tok, max_length=48, doc_stride=16, for_training=True)
    assert len(feats) >= 4 and any(f["start_positions"] for f in feats[1:])
    batch = collate(feats, tok)
    torch.manual_seed(0)  # dropout masks
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3)
    model.train()
    for _ in range(100):
        loss = model(**batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert predict_examples("xquad", model, tok, [ex], options=PredictOptions(max_length=48, doc_stride=16)) == {
        "q": "Paris"
    }


def test_predict_xquad_files_answers_are_context_substrings(tiny_tagger, tmp_path):
    xquad_zh = shared_file("xquad/xquad.zh.json")
    data_dir = xquad_zh.parents[1]
    from xstilts.data.readers import read_examples
    from xstilts.evaluation.layout import read_predictions

    encoder, tok = build_tiny_model(seed=0)
    model = build_model("xquad", encoder)
    folder = tmp_path / "qa"
    model.save(folder, tokenizer=tok)
    written = predict_task("xquad", folder, data_dir, tmp_path / "out", ["zh"],
                           options=PredictOptions(max_length=128, batch_size=64), progress=False)
    predictions = read_predictions(written["zh"], "xquad")
    examples = read_examples("xquad", data_dir, "test", "zh")
    assert set(predictions) == {e.id for e in examples}
    for e in examples:
        answer = predictions[e.id]
        assert answer and answer == answer.strip() and answer in e.context


# ---------------------------------------------------------------------------- CLI


def test_cli_predict_and_errors(tiny_tagger, tmp_path, capsys):
    folder, _, _ = tiny_tagger
    test_fr = shared_file("udpos/xtreme-format/download/udpos/test-fr.tsv")
    from xstilts.cli import main

    out = tmp_path / "out"

    def predict(model, languages: str, *extra: str) -> int:
        return main(["predict", "--model", str(model), "--task", "udpos", "--data-dir", str(test_fr.parents[2]),
                     "--out", str(out), "--languages", languages, *extra])

    rc = predict(folder, "fr,en", "--no-progress")
    assert rc == 0
    first = (out / "udpos" / "test-fr.tsv").read_text()
    # the batch bounds change the batches, not the predictions
    assert predict(folder, "fr", "--no-progress", "--max-tokens", "50", "--batch-size", "3") == 0
    assert (out / "udpos" / "test-fr.tsv").read_text() == first
    assert predict(folder, "fr", "--no-progress", "--max-tokens", "-1") == 2
    assert (out / "udpos" / "test-fr.tsv").is_file() and (out / "udpos" / "test-en.tsv").is_file()
    assert "fr\t" in capsys.readouterr().out
    # a plain encoder folder cannot predict a task with a head: one-line error, status 2
    plain = tmp_path / "plain"
    build_tiny_model(plain)
    rc = predict(plain, "fr")
    err = capsys.readouterr().err
    assert rc == 2 and "not a trained task model" in err and "Traceback" not in err
    rc = predict(folder, "xx")
    assert rc == 2 and "no language xx" in capsys.readouterr().err


def _random_sentences(seed: int, n: int, most_words: int) -> list[TaggingExample]:
    rng = random.Random(seed)
    vocab = "The quick brown fox jumps over the lazy dog 狐狸 跳 Der Fuchs".split()
    return [TaggingExample(str(i), [rng.choice(vocab) for _ in range(rng.randint(1, most_words))])
            for i in range(n)]  # fmt: skip


@contextmanager
def _input_shapes(model):
    """The shape of ``input_ids`` of every forward call of ``model`` inside the block."""
    shapes: list[tuple[int, ...]] = []
    hook = model.register_forward_pre_hook(
        lambda m, a, kw: shapes.append(tuple(kw["input_ids"].shape)), with_kwargs=True
    )
    try:
        yield shapes
    finally:
        hook.remove()


def test_batching_does_not_change_predictions(tiny_tagger):
    """Length-sorted, padded batches give what one example at a time gives (masks are right)."""
    _, model, tok = tiny_tagger
    examples = _random_sentences(seed=0, n=12, most_words=40)
    one = predict_examples("udpos", model, tok, examples, options=PredictOptions(batch_size=1, max_length=32))
    many = predict_examples("udpos", model, tok, examples, options=PredictOptions(batch_size=8, max_length=32))
    assert one == many and [len(p) for p in many] == [len(e.tokens) for e in examples]
    ex = _long_qa_example()
    qa = build_model("xquad", model.encoder)
    other = QAExample("short", "Who?", "The king signed it.", [])
    a = predict_examples("xquad", qa, tok, [ex, other], PredictOptions(batch_size=1, max_length=48, doc_stride=16))
    b = predict_examples("xquad", qa, tok, [ex, other], PredictOptions(batch_size=16, max_length=48, doc_stride=16))
    assert a == b and set(a) == {"q", "short"}


def test_batches_are_bounded_by_tokens(tiny_tagger):
    """A batch holds at most ``max_tokens`` padded tokens; by default 1024 on CPU (16384 on
    accelerators); 0 lifts the bound. The bound changes
    how many batches run, never the predictions."""
    from xstilts.data.batching import PREDICT_BATCH_SIZE, prediction_max_tokens
    from xstilts.errors import ConfigError

    assert PREDICT_BATCH_SIZE == 512
    assert [prediction_max_tokens(None, d) for d in ("cpu", "cuda", "mps")] == [1024, 16384, 16384]
    assert prediction_max_tokens(0, "cuda") is None and prediction_max_tokens(77, "cpu") == 77
    _, model, tok = tiny_tagger
    examples = _random_sentences(seed=1, n=40, most_words=30)
    runs = {}
    for name, kw in {"default": {}, "64": {"max_tokens": 64}, "none": {"max_tokens": 0},
                     "sentences": {"max_tokens": 0, "batch_size": 7}}.items():  # fmt: skip
        with _input_shapes(model) as shapes:
            tags = predict_examples("udpos", model, tok, examples, PredictOptions(max_length=32, pack=False, **kw))
        runs[name] = (tags, shapes)
    tags = [r[0] for r in runs.values()]
    assert all(t == tags[0] for t in tags)
    ((n, _),) = runs["none"][1]  # no token bound: all features (long sentences give several) at once
    assert n > 40 and [rows for rows, _ in runs["sentences"][1]] == [7] * (n // 7) + [n % 7] * (n % 7 > 0)
    for name, bound in (("default", 1024), ("64", 64)):
        batches = runs[name][1]
        assert sum(rows for rows, _ in batches) == n
        assert all(rows * width <= bound or rows == 1 for rows, width in batches)
    assert 1 < len(runs["default"][1]) < len(runs["sentences"][1]) < len(runs["64"][1])
    # packed rows obey the same bound (a packed row holds no more than the padded batch did)
    with _input_shapes(model) as shapes:
        packed = predict_examples("udpos", model, tok, examples,
                                  PredictOptions(max_length=32, pack=True, max_tokens=64))
    assert packed == tags[0] and len(shapes) == len(runs["64"][1])
    assert all(rows == 1 and width <= 64 for rows, width in shapes)
    with pytest.raises(ConfigError, match="max_tokens must be >= 0"):
        predict_examples("udpos", model, tok, examples, options=PredictOptions(max_tokens=-1))


def test_prediction_precision(tiny_tagger):
    """``auto`` adds no autocast on CPU (float32: the same tags as ``no``); ``bf16`` runs every
    forward pass under autocast and agrees on almost every word; a bad value fails at once."""
    from xstilts.errors import ConfigError

    _, model, tok = tiny_tagger
    rng = random.Random(1)
    vocab = "The quick brown fox jumps over the lazy dog 狐狸 跳 Der Fuchs".split()
    examples = [TaggingExample(str(i), [rng.choice(vocab) for _ in range(rng.randint(1, 30))]) for i in range(40)]
    seen: list[tuple[bool, torch.dtype]] = []
    hook = model.register_forward_hook(
        lambda mod, args, out: seen.append((torch.is_autocast_enabled("cpu"), out.logits.dtype))
    )
    try:
        runs = {p: predict_examples("udpos", model, tok, examples, options=PredictOptions(batch_size=8, precision=p))
                for p in ("no", "auto", "bf16")}  # fmt: skip
    finally:
        hook.remove()
    assert seen[:5] + seen[5:10] == [(False, torch.float32)] * 10  # 5 batches each for no and auto
    assert seen[10:] == [(True, torch.bfloat16)] * 5
    assert runs["auto"] == runs["no"]
    words = [(a, b) for pa, pb in zip(runs["no"], runs["bf16"]) for a, b in zip(pa, pb)]
    assert len(words) > 300 and sum(a == b for a, b in words) >= 0.95 * len(words)
    with pytest.raises(ConfigError, match="precision must be one of"):
        predict_examples("udpos", model, tok, examples, options=PredictOptions(precision="fp8"))


def test_each_batch_is_read_only_after_the_next_is_queued(tiny_tagger, monkeypatch):
    """On a GPU a batch's outputs come back by a non-blocking copy that is waited for only after
    the next batch has been launched (collation overlaps the model). With that path stood in for
    on CPU (an event that logs its wait), the order is forward 1, forward 2, wait 1, forward 3,
    wait 2, ..., and the predictions are those of the plain path."""
    import xstilts.evaluation.predict as predict

    _, model, tok = tiny_tagger
    rng = random.Random(2)
    vocab = "The quick brown fox jumps over the lazy dog".split()
    examples = [TaggingExample(str(i), [rng.choice(vocab) for _ in range(rng.randint(1, 12))]) for i in range(20)]
    plain = predict_examples("udpos", model, tok, examples, options=PredictOptions(batch_size=6))
    log: list[str] = []

    class Event:
        def __init__(self, n):
            self.n = n

        def synchronize(self):
            log.append(f"wait {self.n}")

    def fetch(kept, device):
        return tuple(t.clone() for t in kept), Event(log.count("forward"))

    monkeypatch.setattr(predict, "_fetch", fetch)
    hook = model.register_forward_hook(lambda *a: log.append("forward"))
    try:
        pipelined = predict_examples("udpos", model, tok, examples, options=PredictOptions(batch_size=6))
    finally:
        hook.remove()
    assert log == ["forward", "forward", "wait 1", "forward", "wait 2", "forward", "wait 3", "wait 4"]
    assert pipelined == plain
