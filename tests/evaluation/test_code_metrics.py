"""Code metrics with hand-computed values: exact match, sacrebleu BLEU on code tokens, CodeXGLUE's
smoothed BLEU-4, CodeBLEU (the codebleu package), MRR and the unbiased pass@k estimator."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

from xstilts.errors import ConfigError
from xstilts.evaluation.code_metrics import (
    bleu,
    code_generation_scores,
    code_tokens,
    codebleu,
    exact_match,
    mean_reciprocal_rank,
    pass_at_k,
    pass_at_k_table,
    retrieval_mrr,
    smoothed_bleu,
)


def test_exact_match_normalises_whitespace_only():
    preds = ["x  =  1\n", "a=1", "def f():\n    return 1", "y"]
    refs = ["x = 1", "a = 1", "def f(): return 1", "z"]
    assert exact_match(preds, refs) == pytest.approx(50.0)  # 1st and 3rd match
    with pytest.raises(ConfigError):
        exact_match(["a"], [])


def test_code_tokens_split_punctuation():
    assert code_tokens("result=foo(a,b)") == ["result", "=", "foo", "(", "a", ",", "b", ")"]
    assert code_tokens("x_1 . y2") == ["x_1", ".", "y2"]


def test_bleu_on_code_tokens_ignores_spacing():
    preds = ["result=foo(a,b) + bar(c)"]
    refs = ["result = foo(a, b) + bar( c )"]
    assert bleu(preds, refs) == pytest.approx(100.0)
    assert bleu(preds, refs, tokenize="none") < 20.0  # whitespace tokens barely match
    assert bleu(["completely different tokens here now"], refs) < 5.0


def test_smoothed_bleu_hand_values():
    assert smoothed_bleu(["a b c d"], ["a b c d"]) == pytest.approx(100.0)
    # Short candidate: every order matches fully ((m+1)/(p+1) = 1, 4-grams 1/1); BP = exp(1 - 4/3).
    assert smoothed_bleu(["a b c"], ["a b c d"]) == pytest.approx(100 * math.exp(-1 / 3))
    # "a x" vs "a b": p1 = 2/3, p2 = 1/2, p3 = p4 = 1/1; equal length so BP = 1.
    assert smoothed_bleu(["a x"], ["a b"]) == pytest.approx(100 * (1 / 3) ** 0.25)
    # Corpus-level sums, not an average of sentence scores.
    both = smoothed_bleu(["a b c d", "a x"], ["a b c d", "a b"])
    p = [(4 + 1 + 1) / (4 + 2 + 1), (3 + 0 + 1) / (3 + 1 + 1), (2 + 1) / (2 + 1), (1 + 1) / (1 + 1)]
    assert both == pytest.approx(100 * math.prod(p) ** 0.25)
    assert smoothed_bleu([""], ["a"]) == 0.0


def test_codebleu_matches_the_package_readme_example():
    # codebleu's README: prediction "def add ( a , b ) :\n return a + b" against
    # "def sum ( first , second ) :\n return second + first" -> codebleu 0.5537.
    got = codebleu(["def add ( a , b ) :\n return a + b"], ["def sum ( first , second ) :\n return second + first"], "python")
    assert got == pytest.approx(55.37, abs=0.01)
    same = "def f(x):\n    if x > 1:\n        return x * 2\n    return 0"
    assert codebleu([same], [same], "python") == pytest.approx(100.0)
    java = "int f ( int a ) { return a + 1 ; }"
    assert codebleu([java], [java], "java") == pytest.approx(100.0)
    with pytest.raises(ConfigError, match="tree-sitter grammar"):
        codebleu(["x"], ["x"], "haskell")


def test_code_generation_scores_keys():
    s = code_generation_scores(["x = 1"], ["x = 1"], "python")
    assert set(s) == {"exact_match", "bleu", "smoothed_bleu4", "codebleu"}
    assert s["exact_match"] == 100.0
    assert "codebleu" not in code_generation_scores(["x"], ["x"], "go")


def test_mrr_ties_count_against_the_query():
    scores = [[3, 1, 2], [0, 1, 2], [5, 5, 5]]
    assert mean_reciprocal_rank(scores) == pytest.approx(100 * (1 + 1 / 2 + 1 / 3) / 3)
    assert mean_reciprocal_rank([[1.0] * 4] * 4) == pytest.approx(25.0)
    with pytest.raises(ConfigError):
        mean_reciprocal_rank([[1, 2]])


def test_retrieval_mrr_pools():
    import numpy as np

    eye = np.eye(4)
    assert retrieval_mrr(eye, eye, pool_size=2) == pytest.approx(100.0)
    q = np.eye(4)
    c = np.array([[1, 0, 0, 0], [0.9, 1, 0, 0], [0.9, 0.9, 1, 0], [0.9, 0.9, 0.9, 1.0]])
    # score(q_i, c_j) = c[j][i]: every gold code has the highest score in its column -> all rank 1.
    assert retrieval_mrr(q, c, pool_size=4) == pytest.approx(100.0)
    assert retrieval_mrr(q, c[::-1], pool_size=4) < 100.0


def _exact(n, c, k):
    if n - c < k:
        return 1.0
    return float(1 - Fraction(math.comb(n - c, k), math.comb(n, k)))


@pytest.mark.parametrize("n,c,k", [(5, 2, 1), (5, 2, 2), (10, 0, 3), (10, 10, 1), (200, 13, 10), (200, 100, 100)])
def test_pass_at_k_equals_binomial_formula(n, c, k):
    assert pass_at_k(n, c, k) == pytest.approx(_exact(n, c, k), abs=1e-12)


def test_pass_at_k_hand_values_and_table():
    assert pass_at_k(5, 2, 1) == pytest.approx(0.4)
    assert pass_at_k(5, 2, 2) == pytest.approx(0.7)  # 1 - C(3,2)/C(5,2) = 1 - 3/10
    with pytest.raises(ValueError):
        pass_at_k(3, 1, 4)
    table = pass_at_k_table([("a", 5, 2), ("b", 1, 1)], ks=[1, 2])
    assert table["overall"] == {"pass@1": pytest.approx(70.0)}  # pass@2 left out: b has 1 sample
    assert table["problems"]["a"]["pass@2"] == pytest.approx(70.0)
    assert "pass@2" not in table["problems"]["b"]
