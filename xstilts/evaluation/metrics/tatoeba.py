"""Tatoeba: top-1 retrieval accuracy (the predicted target index equals the gold index)."""

from __future__ import annotations

from collections.abc import Sequence

from xstilts.evaluation.metrics.classification import accuracy


def tatoeba_accuracy(gold: Sequence[int], predictions: Sequence[int]) -> dict[str, float]:
    """``{"accuracy": ...}`` ×100. evaluate.py compares the stripped lines as strings; the layout
    only admits plain integers (no sign, no leading zeros), so comparing ints is the same test."""
    for value in (*gold, *predictions):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"Tatoeba indices are ints, got {value!r}")
    return accuracy(gold, predictions)
