"""Seed-level statistics: per-seed deltas, the t-interval over seeds, Holm, learnt thresholds."""

from __future__ import annotations

import math

import pytest

from xstilts.study.stats import (
    adjust_family,
    compare_over_seeds,
    holm,
    is_learnt,
    learnt_threshold,
    per_seed_deltas,
)


def test_per_seed_delta_averages_the_shared_languages_of_each_seed():
    treat = {(1, "de"): 60.0, (1, "fr"): 70.0, (1, "ja"): 10.0, (2, "de"): 61.0, (3, "de"): 5.0}
    ctrl = {(1, "de"): 58.0, (1, "fr"): 64.0, (2, "de"): 61.5, (4, "de"): 0.0}
    # seed 1: ja has no baseline, so (2 + 6) / 2; seed 2: -0.5; seeds 3 and 4 are unpaired
    assert per_seed_deltas(treat, ctrl) == {1: 4.0, 2: -0.5}


@pytest.mark.parametrize("n", [1, 2])
def test_fewer_than_three_seeds_get_no_interval_and_no_test(n):
    c = compare_over_seeds({s: 5.0 + s for s in range(1, n + 1)})
    assert c.n_seeds == n and not c.has_interval and c.p is None and not c.significant
    assert "training noise cannot be separated from the effect" in c.note


def test_identical_seeds_give_a_zero_width_interval_and_no_test():
    c = compare_over_seeds({1: 2.0, 2: 2.0, 3: 2.0})
    assert (c.low, c.high, c.mean) == (2.0, 2.0, 2.0)
    assert c.p is None and not c.significant and "unmeasured" in c.note


def test_t_interval_by_hand():
    # deltas 1, 2, 3: mean 2, sd 1, se 1/sqrt(3); t(0.975, 2) = 4.302653; t = 2 sqrt(3)
    c = compare_over_seeds({1: 1.0, 2: 2.0, 3: 3.0})
    half = 4.302652729911275 / math.sqrt(3)
    assert c.low == pytest.approx(2 - half, abs=1e-9) and c.high == pytest.approx(2 + half, abs=1e-9)
    # two-sided p of t = 3.4641 with 2 df: 1 - t / sqrt(t^2 + 2) (closed form for 2 df)
    t = 2 * math.sqrt(3)
    assert c.p == pytest.approx(1 - t / math.sqrt(t * t + 2), abs=1e-12)
    assert not c.significant  # p = 0.074
    c = compare_over_seeds({1: 3.0, 2: 3.1, 3: 2.9, 4: 3.05})
    assert c.p < 0.001 and c.significant and c.low > 0


def test_holm_by_hand():
    # sorted 0.01 (x3 = 0.03), 0.03 (x2 = 0.06), 0.04 (x1 = 0.04, but never below the previous: 0.06)
    adjusted = holm([0.01, 0.04, 0.03, None])
    assert adjusted[:3] == pytest.approx([0.03, 0.06, 0.06]) and adjusted[3] is None
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_a_family_adjustment_can_remove_a_star_and_records_the_family_size():
    strong = compare_over_seeds({1: 3.0, 2: 3.1, 3: 2.9, 4: 3.05})
    weak = compare_over_seeds({1: 1.0, 2: 1.5, 3: 0.3, 4: 1.6, 5: 0.1})  # p = 0.042 alone
    assert weak.significant
    out = adjust_family({"a": strong, "b": weak, "c": weak, "d": compare_over_seeds({1: 1.0})})
    assert out["a"].significant and out["a"].family_size == 3
    assert not out["b"].significant and out["b"].p_adjusted == pytest.approx(min(1.0, 2 * weak.p))
    assert out["d"].p_adjusted is None and out["d"].family_size is None


def test_learnt_is_ten_percent_of_the_way_to_a_perfect_score():
    assert learnt_threshold(0.0) == 10.0 and learnt_threshold(20.0) == 28.0
    assert is_learnt(2.29, 0.0) is False and is_learnt(30.0, 0.0) is True
    assert is_learnt(27.9, 20.0) is False and is_learnt(28.0, 20.0) is True
    assert is_learnt(None, 0.0) is None and is_learnt(50.0, None) is None
