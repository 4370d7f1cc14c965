"""Accuracy for sentence(-pair) classification (XNLI, PAWS-X), as evaluate.py computes it."""

from __future__ import annotations

from collections.abc import Sequence


def accuracy(gold: Sequence[object], predictions: Sequence[object]) -> dict[str, float]:
    """``{"accuracy": 100 * correct / n}``; item i of ``predictions`` is compared with item i of ``gold``.

    Equal lengths are the caller's contract (the scorer checks them and names the files).
    """
    if len(gold) != len(predictions):
        raise ValueError(f"{len(predictions)} predictions for {len(gold)} gold items")
    if not predictions:
        raise ValueError("accuracy of an empty prediction list is undefined")
    correct = sum(int(p == g) for p, g in zip(predictions, gold))
    return {"accuracy": float(correct) / len(predictions) * 100}
