"""Statistics of a study, with the training run (the seed) as the unit of replication.

Why the seed: every language of one run is scored by the *same* trained model, so the languages
of a run are not independent replicates of the effect of an intermediate task; resampling them
(as this project's report did before) reports one run's training noise as an effect. What is
replicated is the training run, so:

1. per seed ``s``, ``Δ_s`` = mean over the languages scored in both arms of (setting − baseline),
   the baseline being the ``none`` run with the same seed (the same target fine-tuning seed);
2. over seeds, a **paired t-interval**: ``mean(Δ) ± t(0.975, n−1) · sd(Δ) / √n`` with the
   two-sided paired t-test's p-value. Why t and not a bootstrap over seeds: with the 3–5 seeds a
   study can afford, a bootstrap has only a handful of distinct resamples (10 for 3 seeds) and
   its percentile interval is too narrow (it ignores the uncertainty of the spread itself); the
   t-interval is exact when the per-seed deltas are roughly normal, and honest about small n;
3. fewer than :data:`MIN_SEEDS` seeds: no interval and no test — training noise cannot be
   separated from the effect. Seeds whose deltas are all equal (zero spread, e.g. the same run
   repeated) get a zero-width interval and no test either: identical runs measure no noise;
4. the many comparisons of a grid are controlled with **Holm**'s step-down method over the
   family of comparisons a table makes; a star means Holm-adjusted p < 0.05, and the number of
   comparisons in the family is printed with it.

"Not learnt": a run's score is compared with a trivial reference (majority tag or label, all-``O``,
chance); it counts as learnt only when it is at least :data:`LEARNT_FRACTION` of the way from the
reference to a perfect 100.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Hashable

import numpy as np
from scipy import stats as scipy_stats

MIN_SEEDS = 3
ALPHA = 0.05
# A score counts as learnt when it is at least this share of the way from the trivial reference
# to 100 (e.g. PAN-X, all-O = 0: at least 10 F1; UDPOS, majority tag ~ 20: at least 28).
LEARNT_FRACTION = 0.10


@dataclass(frozen=True)
class SeedComparison:
    """Δ (treatment − control) over seeds: the per-seed deltas, their mean, interval and test."""

    per_seed: dict[int, float]
    mean: float
    low: float | None = None
    high: float | None = None
    p: float | None = None
    p_adjusted: float | None = None  # Holm, within the family of comparisons it was made in
    family_size: int | None = None
    note: str = ""

    @property
    def n_seeds(self) -> int:
        return len(self.per_seed)

    @property
    def has_interval(self) -> bool:
        return self.low is not None and self.high is not None

    @property
    def significant(self) -> bool:
        """Holm-adjusted p below ALPHA (a comparison outside a family uses its own p)."""
        p = self.p_adjusted if self.p_adjusted is not None else self.p
        return p is not None and p < ALPHA


def per_seed_deltas(
    treatment: Mapping[tuple[int, str], float], control: Mapping[tuple[int, str], float]
) -> dict[int, float]:
    """seed -> mean over the languages both arms scored of (treatment − control)."""
    seeds = sorted({s for s, _ in treatment} & {s for s, _ in control})
    out: dict[int, float] = {}
    for seed in seeds:
        langs = sorted({lang for s, lang in treatment if s == seed} & {lang for s, lang in control if s == seed})
        if langs:
            out[seed] = float(np.mean([treatment[(seed, lang)] - control[(seed, lang)] for lang in langs]))
    return out


def compare_over_seeds(per_seed: Mapping[int, float], *, alpha: float = ALPHA) -> SeedComparison | None:
    """The paired t-interval and test of per-seed deltas (None when no seed is shared)."""
    deltas = {int(k): float(v) for k, v in per_seed.items()}
    if not deltas:
        return None
    values = np.array(list(deltas.values()), dtype=float)
    n, mean = len(values), float(values.mean())
    if n < MIN_SEEDS:
        return SeedComparison(deltas, mean, note=(
            f"{n} seed{'s' if n != 1 else ''}: training noise cannot be separated from the effect "
            f"(no interval or test below {MIN_SEEDS} seeds)"))
    sd = float(values.std(ddof=1))
    if sd == 0.0:
        return SeedComparison(deltas, mean, low=mean, high=mean, note=(
            "the same Δ in every seed: the runs did not vary, so training noise is unmeasured (no test)"))
    se = sd / math.sqrt(n)
    t_crit = float(scipy_stats.t.ppf(1 - alpha / 2, n - 1))
    t_stat = mean / se
    p = float(2 * scipy_stats.t.sf(abs(t_stat), n - 1))
    return SeedComparison(deltas, mean, low=mean - t_crit * se, high=mean + t_crit * se, p=p)


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values (None stays None and does not count as a comparison)."""
    tested = sorted((p, i) for i, p in enumerate(pvalues) if p is not None)
    m = len(tested)
    out: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


def adjust_family(comparisons: Mapping[Hashable, SeedComparison | None]) -> dict[Hashable, SeedComparison | None]:
    """Holm over one family of comparisons; each result records the family's size (tests made)."""
    keys = list(comparisons)
    adjusted = holm([c.p if c is not None else None for c in comparisons.values()])
    m = sum(1 for p in adjusted if p is not None)
    out: dict[Hashable, SeedComparison | None] = {}
    for key, p_adj in zip(keys, adjusted):
        c = comparisons[key]
        out[key] = None if c is None else replace(c, p_adjusted=p_adj, family_size=m if c.p is not None else None)
    return out


def learnt_threshold(trivial: float) -> float:
    return trivial + LEARNT_FRACTION * (100.0 - trivial)


def is_learnt(score: float | None, trivial: float | None) -> bool | None:
    """True/False against the trivial reference; None when either is unknown."""
    if score is None or trivial is None or math.isnan(score) or math.isnan(trivial):
        return None
    return score >= learnt_threshold(trivial)
