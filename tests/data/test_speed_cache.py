"""Cached tokenisation returns exactly the fresh features, and misses when anything changes."""

from __future__ import annotations

import pytest

pytest.importorskip("tokenizers")


@pytest.fixture(scope="module")
def tok():
    from xstilts.models.tiny import build_tiny_tokenizer

    return build_tiny_tokenizer()


def test_cached_features_equal_fresh_and_are_read_back(shared_data, tok, tmp_path, monkeypatch):
    from xstilts.data import features as F
    from xstilts.data import feature_cache
    from xstilts.data.feature_cache import cached_featurize
    from xstilts.data.readers import read_examples

    examples = read_examples("udpos", shared_data, "train", "en")[:50]
    fresh = F.featurize("udpos", examples, tok, for_training=True, max_length=64)
    first = cached_featurize("udpos", examples, tok, cache_dir=tmp_path, for_training=True, max_length=64)
    assert first == fresh
    assert len(list(tmp_path.glob("features-*.pkl"))) == 1
    calls = []
    real = F.featurize
    monkeypatch.setattr(feature_cache, "featurize", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = cached_featurize("udpos", examples, tok, cache_dir=tmp_path, for_training=True, max_length=64)
    assert again == fresh and calls == []  # a hit: no tokenisation
    # any change of settings or examples is a miss with its own entry
    other = cached_featurize("udpos", examples, tok, cache_dir=tmp_path, for_training=True, max_length=32)
    assert calls == [1] and other != fresh
    examples[0].tokens[0] = examples[0].tokens[0] + "x"
    cached_featurize("udpos", examples, tok, cache_dir=tmp_path, for_training=True, max_length=64)
    assert calls == [1, 1]
    assert len(list(tmp_path.glob("features-*.pkl"))) == 3


def test_tokenizer_changes_the_key(tok):
    from xstilts.data.feature_cache import tokenizer_fingerprint
    from xstilts.models.tiny import build_tiny_tokenizer

    assert tokenizer_fingerprint(tok) == tokenizer_fingerprint(build_tiny_tokenizer())
    assert tokenizer_fingerprint(tok) != tokenizer_fingerprint(
        build_tiny_tokenizer(extra_text=["quokka zebra xylophone juxtaposition"] * 20)
    )


def test_no_cache_dir_means_plain_featurize(shared_data, tok):
    from xstilts.data import feature_cache
    from xstilts.data.feature_cache import cached_featurize
    from xstilts.data.features import featurize
    from xstilts.data.readers import read_examples

    examples = read_examples("xquad", shared_data, "test", "en")[:5]
    assert cached_featurize("xquad", examples, tok, cache_dir=None) == featurize("xquad", examples, tok)


def test_a_damaged_entry_is_rebuilt(shared_data, tok, tmp_path):
    from xstilts.data import feature_cache
    from xstilts.data.feature_cache import cached_featurize
    from xstilts.data.readers import read_examples

    examples = read_examples("udpos", shared_data, "train", "en")[:5]
    good = cached_featurize("udpos", examples, tok, cache_dir=tmp_path)
    (entry,) = tmp_path.glob("features-*.pkl")
    entry.write_bytes(b"not a pickle")
    assert cached_featurize("udpos", examples, tok, cache_dir=tmp_path) == good
