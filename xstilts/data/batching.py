"""Length-sorted batching for prediction.

Prediction needs no shuffling, so features are sorted by length (longest first, so that a batch
that does not fit in memory fails at once rather than at the end) and cut into batches; with
dynamic padding each batch is padded only to its own longest feature. The results are put back
in the original order by the caller (:func:`xstilts.evaluation.predict.run_model`).

Training uses length *grouping* with shuffling, planned per epoch from the seed:
:class:`xstilts.train.batching.LengthGroupedPlanner`.
"""

from __future__ import annotations

from collections.abc import Sequence


def feature_length(feature: dict) -> int:
    """Tokens in a feature (the longest row for multiple choice)."""
    ids = feature.get("input_ids") or []
    if ids and isinstance(ids[0], (list, tuple)):
        return max(len(r) for r in ids) * len(ids)
    return len(ids)


def sorted_batches(
    lengths: Sequence[int], batch_size: int, *, max_tokens: int | None = None
) -> list[list[int]]:
    """Indices cut into batches after sorting by length, longest first.

    A batch holds at most ``batch_size`` features and, when ``max_tokens`` is given, at most
    that many padded tokens (length of its longest feature × its size; a single feature longer
    than ``max_tokens`` still gets a batch of its own). Ties keep the original order.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        width = max(longest, lengths[i])
        full = len(current) >= batch_size or (
            max_tokens is not None and current and width * (len(current) + 1) > max_tokens
        )
        if full:
            batches.append(current)
            current, width = [], lengths[i]
        current.append(i)
        longest = width
    if current:
        batches.append(current)
    return batches


def padded_tokens(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> int:
    """Total tokens after dynamic padding of ``batches`` (to compare batching strategies)."""
    return sum(max(lengths[i] for i in b) * len(b) for b in batches if b)
