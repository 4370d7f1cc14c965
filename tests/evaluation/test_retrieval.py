"""Pooling, Tatoeba nearest neighbours and BUCC margin mining, checked against hand-computed
answers and independent numpy implementations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from xstilts.errors import ConfigError, MissingDataError
from xstilts.evaluation import retrieval as R

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Hi.",
    "Der schnelle braune Fuchs springt über den faulen Hund, und dann schläft er lange.",
    "敏捷的棕色狐狸。",
    "Быстрая лиса.",
    "Con cáo nâu nhanh nhẹn nhảy qua con chó lười.",
    "1234567890",
]


@pytest.fixture(scope="module")
def tiny():
    from xstilts.models.tiny import build_tiny_model

    encoder, tokenizer = build_tiny_model(num_layers=2)
    return encoder.eval(), tokenizer


def _manual(encoder, tokenizer, sentences, layer, pooling, prefix=""):
    """One sentence at a time (no padding at all), straight from output_hidden_states."""
    import torch

    rows = []
    with torch.no_grad():
        for s in sentences:
            batch = tokenizer([prefix + s], return_tensors="pt")
            h = encoder(**batch, output_hidden_states=True).hidden_states[layer][0].numpy().astype(np.float64)
            v = h.mean(axis=0) if pooling == "mean" else h[0]
            rows.append(v / np.linalg.norm(v))
    return np.array(rows)


# ----------------------------------------------------------------------------- layers


@pytest.mark.parametrize(("depth", "layer"), [(24, 14), (12, 8), (6, 5), (2, 2), (1, 1), (32, 18)])
def test_default_layer_follows_xtreme_anchors(depth, layer):
    assert R.default_layer(depth) == layer


def test_layer_numbering_and_range(tiny):
    encoder, _ = tiny
    assert R.resolve_layer(encoder, None) == 2
    assert R.resolve_layer(encoder, 0) == 0
    assert R.resolve_layer(encoder, -1) == 2
    assert R.resolve_layer(encoder, -3) == 0
    for bad in (3, -4):
        with pytest.raises(ConfigError, match="out of range .* 2 layers"):
            R.resolve_layer(encoder, bad)


@pytest.mark.parametrize("layer", [0, 1, 2])
@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_embed_matches_hidden_states_of_the_layer(tiny, layer, pooling):
    encoder, tokenizer = tiny
    got = R.embed(encoder, tokenizer, SENTENCES, layer=layer, pooling=pooling, batch_size=3, progress=False)
    assert got.dtype == np.float32 and got.shape == (len(SENTENCES), 32)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(got, _manual(encoder, tokenizer, SENTENCES, layer, pooling), atol=2e-5)


def test_layers_differ_and_batching_keeps_order(tiny):
    encoder, tokenizer = tiny
    by_layer = R.embed_layers(encoder, tokenizer, SENTENCES, layers=[0, 1, -1], batch_size=2, progress=False)
    assert not np.allclose(by_layer[0], by_layer[1]) and not np.allclose(by_layer[1], by_layer[-1])
    one_batch = R.embed(encoder, tokenizer, SENTENCES, layer=-1, batch_size=64, progress=False)
    np.testing.assert_allclose(by_layer[-1], one_batch, atol=2e-5)
    single = R.embed(encoder, tokenizer, SENTENCES[2:3], layer=-1, progress=False)
    np.testing.assert_allclose(single[0], one_batch[2], atol=2e-5)


def test_embedding_batches_are_bounded_by_tokens(tiny):
    """``max_tokens`` bounds each batch's padded tokens (0: ``batch_size`` alone); the embeddings
    stay those of one sentence at a time."""
    encoder, tokenizer = tiny
    shapes: list[tuple[int, ...]] = []
    hook = encoder.register_forward_pre_hook(
        lambda m, a, kw: shapes.append(tuple(kw["input_ids"].shape)), with_kwargs=True
    )
    try:
        got = {}
        for bound in (0, 40, "default"):
            shapes.clear()
            kw = {} if bound == "default" else {"max_tokens": bound}
            got[bound] = (R.embed(encoder, tokenizer, SENTENCES, layer=1, progress=False, **kw), list(shapes))
    finally:
        hook.remove()
    assert len(got[0][1]) == 1 and len(got["default"][1]) == 1  # default bound on CPU: 1024 tokens, all fit
    bounded = got[40][1]
    assert len(bounded) > 2 and sum(r for r, _ in bounded) == len(SENTENCES)
    assert all(rows * width <= 40 or rows == 1 for rows, width in bounded)
    assert [w for _, w in bounded] == sorted((w for _, w in bounded), reverse=True)  # longest first
    manual = _manual(encoder, tokenizer, SENTENCES, 1, "mean")
    for emb, _ in got.values():
        np.testing.assert_allclose(emb, manual, atol=2e-5)
    with pytest.raises(ConfigError, match="max_tokens"):
        R.embed(encoder, tokenizer, SENTENCES, max_tokens=-1, progress=False)


def test_embedding_precision(tiny):
    """``auto`` adds no autocast on CPU (the float32 embeddings exactly); ``bf16`` runs the encoder
    under autocast, pools in float32 and stays close; an unknown precision fails at once."""
    import torch

    encoder, tokenizer = tiny
    seen: list[bool] = []
    hook = encoder.register_forward_pre_hook(lambda m, a: seen.append(torch.is_autocast_enabled("cpu")))
    try:
        got = {p: R.embed(encoder, tokenizer, SENTENCES, layer=2, precision=p, progress=False)
               for p in ("auto", "no", "bf16")}  # fmt: skip
    finally:
        hook.remove()
    assert seen == [False, False, True]
    np.testing.assert_array_equal(got["auto"], got["no"])
    assert got["bf16"].dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got["bf16"], axis=1), 1.0, atol=1e-5)
    assert (got["bf16"] * got["no"]).sum(axis=1).min() > 0.99  # cosine to the float32 embedding
    with pytest.raises(ConfigError, match="precision"):
        R.embed(encoder, tokenizer, SENTENCES, precision="fp8", progress=False)


def test_prefix_is_prepended(tiny):
    encoder, tokenizer = tiny
    got = R.embed(encoder, tokenizer, ["Hi."], layer=1, prefix="query: ", progress=False)
    np.testing.assert_allclose(got, _manual(encoder, tokenizer, ["query: Hi."], 1, "mean"), atol=2e-5)


def test_bad_settings_and_empty_input(tiny):
    encoder, tokenizer = tiny
    with pytest.raises(ConfigError, match="pooling"):
        R.embed(encoder, tokenizer, ["x"], layer=1, pooling="max", progress=False)
    assert R.embed(encoder, tokenizer, [], layer=1, progress=False).shape == (0, 32)


# ----------------------------------------------------------------------------- nearest neighbours


def _unit(rows):
    a = np.asarray(rows, dtype=np.float32)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def test_tatoeba_searches_english_against_the_other_language_by_hand():
    source = _unit([[1, 0], [0, 1], [-1, 0]])  # three non-English sentences
    english = _unit([[0.9, 0.1], [0.1, 0.9], [-1, 0.2], [0.6, 0.8]])  # four English ones
    # [0.6, 0.8]: cos 0.6 with source 0, 0.8 with source 1 -> 1
    assert R.tatoeba_predictions(source, english) == [0, 1, 2, 1]


def test_exact_ties_go_to_the_lowest_index_even_beyond_the_first_neighbours():
    rng = np.random.default_rng(3)
    source = _unit(rng.normal(size=(40, 8)))
    source[[5, 17, 30]] = source[2]  # a sentence repeated four times: bit-identical embeddings
    source[20:32] = source[0]  # twelve copies of another (more than faiss is asked for)
    source[0] = source[21]
    english = np.concatenate([source[[2]] + 0.01, source[[0]] + 0.01, source[[7]]])
    assert R.tatoeba_predictions(source, _unit(english)) == [2, 0, 7]


def test_tatoeba_matches_numpy_cosine_argmax_for_uneven_sizes():
    rng = np.random.default_rng(0)
    source, english = _unit(rng.normal(size=(205, 24))), _unit(rng.normal(size=(190, 24)))
    want = (english.astype(np.float64) @ source.T.astype(np.float64)).argmax(axis=1)
    assert R.tatoeba_predictions(source, english) == [int(i) for i in want]


def test_knn_matches_numpy():
    rng = np.random.default_rng(1)
    q, db = _unit(rng.normal(size=(30, 8))), _unit(rng.normal(size=(50, 8)))
    scores, idx = R.knn(q, db, 4)
    full = q.astype(np.float64) @ db.T.astype(np.float64)
    np.testing.assert_array_equal(idx, np.argsort(-full, axis=1, kind="stable")[:, :4])
    np.testing.assert_allclose(scores, np.sort(full, axis=1)[:, ::-1][:, :4], atol=1e-5)
    s, i = R.knn(q[:2], db[:3], 10)
    assert s.shape == (2, 3) and i.shape == (2, 3)


# ----------------------------------------------------------------------------- margin mining


def test_margin_by_hand():
    x = _unit([[1, 0], [0, 1]])
    y = _unit([[0.8, 0.6], [0.6, 0.8]])
    # k=2: every neighbourhood mean is (0.8 + 0.6) / 2 = 0.7, so the best score is 0.8 / 0.7
    mined = R.margin_mine(x, y, k=2)
    assert [(p.source, p.target) for p in mined] == [(0, 0), (1, 1)]
    assert mined[0].score == pytest.approx(0.8 / 0.7, rel=1e-5)


def _numpy_margin_mine(x, y, k):
    """Independent: full cosine matrix, neighbourhood means from sorted rows/columns."""
    C = x.astype(np.float64) @ y.T.astype(np.float64)
    kx, ky = min(k, len(y)), min(k, len(x))
    fwd_nn = np.argsort(-C, axis=1, kind="stable")[:, :kx]
    bwd_nn = np.argsort(-C.T, axis=1, kind="stable")[:, :ky]
    fwd_mean = np.take_along_axis(C, fwd_nn, axis=1).mean(axis=1)
    bwd_mean = np.take_along_axis(C.T, bwd_nn, axis=1).mean(axis=1)
    M = C / ((fwd_mean[:, None] + bwd_mean[None, :]) / 2)
    cands = []
    for i in range(len(x)):
        j = max(fwd_nn[i], key=lambda j: M[i, j])
        cands.append((M[i, j], i, j))
    for j in range(len(y)):
        i = max(bwd_nn[j], key=lambda i: M[i, j])
        cands.append((M[i, j], i, j))
    order = sorted(range(len(cands)), key=lambda n: -cands[n][0])
    used_x, used_y, out = set(), set(), []
    for n in order:
        score, i, j = cands[n]
        if i not in used_x and j not in used_y:
            used_x.add(i)
            used_y.add(j)
            if score > 0:
                out.append((i, j, score))
    return out


def test_margin_mining_matches_a_direct_numpy_formula():
    rng = np.random.default_rng(2)
    y = _unit(rng.normal(size=(40, 16)))
    # 25 sources: noisy copies of targets 0..24, plus 10 unrelated sentences
    x = _unit(np.concatenate([y[:25] + 0.1 * rng.normal(size=(25, 16)), rng.normal(size=(10, 16))]))
    got = [(p.source, p.target, p.score) for p in R.margin_mine(x, y, k=4)]
    want = _numpy_margin_mine(x, y, 4)
    assert [(i, j) for i, j, _ in got] == [(i, j) for i, j, _ in want]
    np.testing.assert_allclose([s for *_, s in got], [s for *_, s in want], rtol=1e-4)
    assert {(i, j) for i, j, _ in got[:20]} <= {(i, i) for i in range(25)}  # the best are the copies


def test_bucc_candidates_unify_texts_and_drop_ambiguous_ids():
    vectors = {"a": [1, 0, 0], "b": [0, 1, 0], "c": [0, 0, 1], "A": [1, 0.1, 0], "B": [0, 1, 0.1], "C": [0.1, 0, 1]}
    calls = []

    def embed_fn(texts):
        calls.append(list(texts))
        return _unit([vectors[t] for t in texts])

    source = {"s1": "a", "s2": "b", "s3": "c", "s4": "c"}  # "c" carries two ids -> dropped
    target = {"t1": "A", "t2": "B", "t3": "C"}
    got = R.bucc_candidates(source, target, embed_fn, k=2)
    assert calls[0] == ["a", "b", "c"]  # embedded once per unique text
    assert set(got) == {("s1", "t1"), ("s2", "t2")}
    assert all(score > 1 for score in got.values())


def test_bucc_threshold_from_dev_is_applied_to_test_by_hand(tmp_path):
    """A hand-made embedding table. With k=2: the true pairs score about
    0.999 / ((0.749 + 0.524) / 2) = 1.57, the false pair dx-DX only 0.5 / ((0.275 + 0.5) / 2) = 1.29,
    so the dev threshold falls between them; test repeats the vectors under other ids."""
    from xstilts.tasks import get_task

    table = {
        "d1": [1, 0, 0, 0], "D1": [1, 0.05, 0, 0], "d2": [0, 1, 0, 0], "D2": [0, 1, 0.05, 0],
        "dx": [0, 0, 1, 0], "DX": [0.5, 0.5, 0.5, 0.5],
    }
    _write_bucc(tmp_path, "dev", [("de-1", "d1"), ("de-2", "d2"), ("de-3", "dx")],
                [("en-1", "D1"), ("en-2", "D2"), ("en-3", "DX")], [("de-1", "en-1"), ("de-2", "en-2")])
    _write_bucc(tmp_path, "test", [("de-7", "dx"), ("de-8", "d2"), ("de-9", "d1")],
                [("en-7", "D2"), ("en-8", "DX"), ("en-9", "D1")], [("de-9", "en-9")])
    embed_fn = lambda ts: _unit([table[t] for t in ts])  # noqa: E731
    dev_candidates = R.bucc_candidates(
        {"1": "d1", "2": "d2", "3": "dx"}, {"1": "D1", "2": "D2", "3": "DX"}, embed_fn, k=2
    )
    assert dev_candidates["1", "1"] == pytest.approx(1.569, abs=2e-3)
    assert dev_candidates["3", "3"] == pytest.approx(1.290, abs=2e-3)
    result = R.predict_bucc_language(get_task("bucc2018"), tmp_path, "de", embed_fn, k=2)
    assert result.dev_f1 == pytest.approx(100.0)
    assert 1.29 < result.threshold < 1.56
    assert sorted(result.pairs) == [("de-8", "en-7"), ("de-9", "en-9")]


def _write_bucc(root: Path, split: str, source, target, gold):
    folder = root / "bucc2018"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"de-en.{split}.de").write_text("".join(f"{i}\t{s}\n" for i, s in source), encoding="utf-8")
    (folder / f"de-en.{split}.en").write_text("".join(f"{i}\t{s}\n" for i, s in target), encoding="utf-8")
    (folder / f"de-en.{split}.gold").write_text("".join(f"{a}\t{b}\n" for a, b in gold), encoding="utf-8")


# ----------------------------------------------------------------------------- predict_retrieval


def _write_tatoeba(root: Path, lang3: str, xx: list[str], en: list[str]) -> None:
    folder = root / "tatoeba" / "v1"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"tatoeba.{lang3}-eng.{lang3}").write_text("\n".join(xx) + "\n", encoding="utf-8")
    (folder / f"tatoeba.{lang3}-eng.eng").write_text("\n".join(en) + "\n", encoding="utf-8")


def test_predict_tatoeba_equals_an_independent_implementation(tmp_path, tiny):
    from xstilts.evaluation.layout import read_predictions

    encoder, tokenizer = tiny
    xx = SENTENCES
    en = ["The quick fox.", "Hello.", "The fast brown fox jumps over the lazy dog, then sleeps.",
          "A quick brown fox.", "A quick fox.", "The brown fox jumps over the dog.", "Numbers"]
    _write_tatoeba(tmp_path / "data", "deu", xx, en)
    paths = R.predict_retrieval("tatoeba", encoder, tokenizer, tmp_path / "data", None, tmp_path / "out", progress=False)
    assert list(paths) == ["de"] and paths["de"] == tmp_path / "out" / "tatoeba" / "test-de.tsv"
    got = read_predictions(paths["de"], "tatoeba")
    layer = R.default_layer(2)
    S, E = _manual(encoder, tokenizer, xx, layer, "mean"), _manual(encoder, tokenizer, en, layer, "mean")
    assert got == [int(i) for i in (E @ S.T).argmax(axis=1)]


def test_predict_tatoeba_on_short_real_files(shared_data, tmp_path, tiny):
    """jav has 205 lines and swh 390: nothing assumes 1000."""
    from xstilts.evaluation.layout import read_predictions
    from xstilts.evaluation.scorer import score_language

    encoder, tokenizer = tiny
    paths = R.predict_retrieval("tatoeba", encoder, tokenizer, shared_data, ["jv", "sw"], tmp_path, layer=1,
                                batch_size=128, progress=False)
    for lang, n in (("jv", 205), ("sw", 390)):
        predictions = read_predictions(paths[lang], "tatoeba")
        assert len(predictions) == n and all(0 <= p < n for p in predictions)
        scores = score_language("tatoeba", lang, list(range(n)), predictions)
        accuracy = 100 * float(np.mean(np.array(predictions) == np.arange(n)))
        assert list(scores.values())[0] == pytest.approx(accuracy)


def test_predict_bucc_end_to_end_with_a_tiny_model(tmp_path, tiny):
    from xstilts.evaluation.layout import read_predictions

    encoder, tokenizer = tiny
    words = ["Berlin 1990", "Paris 2001", "Tokyo 1964"]
    _write_bucc(tmp_path, "dev", [(f"de-{i}", w) for i, w in enumerate(words[:3])],
                [(f"en-{i}", w) for i, w in enumerate(words[:3])], [(f"de-{i}", f"en-{i}") for i in range(3)])
    # test: the same sentences under shuffled ids, so its margins equal dev's
    _write_bucc(tmp_path, "test", [(f"de-{i}", w) for i, w in enumerate(words[:3])],
                [(f"en-{i}", w) for i, w in enumerate(reversed(words[:3]))],
                [(f"de-{i}", f"en-{2 - i}") for i in range(3)])
    paths = R.predict_retrieval("bucc2018", encoder, tokenizer, tmp_path, ["de"], tmp_path / "out", progress=False)
    got = read_predictions(paths["de"], "bucc2018")
    assert sorted(got) == [("de-0", "en-2"), ("de-1", "en-1"), ("de-2", "en-0")]


def test_predict_retrieval_refuses_other_tasks_and_missing_data(tmp_path, tiny):
    encoder, tokenizer = tiny
    with pytest.raises(ConfigError, match="not a retrieval task"):
        R.predict_retrieval("xnli", encoder, tokenizer, tmp_path, ["de"], tmp_path)
    with pytest.raises(MissingDataError):
        R.predict_retrieval("tatoeba", encoder, tokenizer, tmp_path, None, tmp_path)
