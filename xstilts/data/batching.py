"""Length-sorted batching for prediction.

Prediction needs no shuffling, so features are sorted by length (longest first, so that a batch
that does not fit in memory fails at once rather than at the end) and cut into batches; with
dynamic padding each batch is padded only to its own longest feature. The results are put back
in the original order by the caller (:func:`xstilts.evaluation.predict.run_model`).

A prediction batch is bounded by tokens as well as by features (:func:`prediction_max_tokens`).
On an accelerator at most 16384 padded tokens (128 rows of 128): short sentences share a batch
by the hundred, and a forward pass is long enough that the device does not wait on the host's
launches, which cost the same for a batch of 32 short sentences (at 32 sentences per batch an
H200 ran prediction host-bound; the bound itself is an estimate, not measured yet). Inference
keeps no activations, so this is far less memory than training takes. On a CPU at most 1024,
where the time goes in arithmetic and smaller activations stay in cache (measured in
bench/RESULTS.md). :data:`PREDICT_BATCH_SIZE` bounds the features.

Training uses length *grouping* with shuffling, planned per epoch from the seed:
:class:`xstilts.train.batching.LengthGroupedPlanner`.
"""

from __future__ import annotations

from collections.abc import Sequence

from xstilts.errors import ConfigError

PREDICT_BATCH_SIZE = 512  # features per prediction batch, at most
# padded tokens per prediction batch, at most, by device type (default for other types: "cuda")
PREDICT_MAX_TOKENS = {"cuda": 128 * 128, "cpu": 1024}


def check_max_tokens(max_tokens: int | None) -> None:
    """A ConfigError unless ``max_tokens`` is None (the device's default) or >= 0 (0: no bound)."""
    if max_tokens is not None and max_tokens < 0:
        raise ConfigError(f"max_tokens must be >= 0 (0: no bound), got {max_tokens}")


def prediction_max_tokens(max_tokens: int | None, device_type: str) -> int | None:
    """The token bound of prediction batches: ``max_tokens`` as given (0: no bound), or with
    None the default for ``device_type`` (:data:`PREDICT_MAX_TOKENS`)."""
    check_max_tokens(max_tokens)
    if max_tokens is None:
        return PREDICT_MAX_TOKENS.get(device_type, PREDICT_MAX_TOKENS["cuda"])
    return max_tokens or None


def feature_length(feature: dict) -> int:
    """Tokens in a feature (multiple choice: rows x the longest row, as the padded batch holds)."""
    ids = feature.get("input_ids") or []
    if ids and isinstance(ids[0], (list, tuple)):
        return max(len(r) for r in ids) * len(ids)
    return len(ids)


def sorted_batches(
    lengths: Sequence[int], batch_size: int, *, max_tokens: int | None = None
) -> list[list[int]]:
    """Indices cut into batches after sorting by length, longest first.

    A batch holds at most ``batch_size`` features and, when ``max_tokens`` is given (0 and None
    mean no bound), at most that many padded tokens (length of its longest feature × its size;
    a single feature longer than ``max_tokens`` still gets a batch of its own). Ties keep the
    original order.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    check_max_tokens(max_tokens)
    max_tokens = max_tokens or None
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
