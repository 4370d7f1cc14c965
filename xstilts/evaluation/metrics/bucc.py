"""BUCC 2018 bitext mining: F1 over (source id, target id) pairs, and threshold tuning.

``bucc_f1`` is evaluate.py's ``bucc_f1``: predictions and gold are *sets* of pairs.
``bucc_optimal_threshold`` is XTREME's ``bucc_optimize`` (third_party/utils_retrieve.py) with its
crash fixed: candidates are ranked by score and the threshold is put half-way between the
candidate where F1 peaks and the next one, so that ``score >= threshold`` (``bucc_extract``)
keeps exactly the candidates up to the peak. The official code indexes ``items[i + 1]`` and raises
``IndexError`` when F1 peaks at the last candidate; there every candidate is kept, so the
threshold is that candidate's score.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

Pair = tuple[str, str]


def _pairs(items: Iterable[Pair | str]) -> set[Pair]:
    out: set[Pair] = set()
    for item in items:
        if isinstance(item, str):
            src, sep, tgt = item.partition("\t")
            if not sep:
                raise ValueError(f"a BUCC pair is 'source<TAB>target', got {item!r}")
            item = (src, tgt)
        out.add((str(item[0]), str(item[1])))
    return out


def bucc_f1(gold: Iterable[Pair | str], predictions: Iterable[Pair | str]) -> dict[str, float]:
    """``f1``, ``precision``, ``recall`` ×100 of the predicted pairs (0 when none is correct)."""
    gold_set, pred_set = _pairs(gold), _pairs(predictions)
    n_correct = len(gold_set & pred_set)
    if n_correct == 0:
        return {"f1": 0.0, "precision": 0.0, "recall": 0.0}
    precision = n_correct / len(pred_set)
    recall = n_correct / len(gold_set)
    f1 = 2 * precision * recall / (precision + recall)
    return {"f1": f1 * 100, "precision": precision * 100, "recall": recall * 100}


def _scored(
    candidates: Mapping[Pair, float] | Iterable[tuple[Pair, float]],
) -> list[tuple[Pair, float]]:
    items = candidates.items() if isinstance(candidates, Mapping) else candidates
    return [((str(p[0]), str(p[1])), float(s)) for p, s in items]


def bucc_optimal_threshold(
    candidates_with_scores: Mapping[Pair, float] | Iterable[tuple[Pair, float]],
    gold: Iterable[Pair | str],
) -> float:
    """The score threshold that maximises F1 of ``score >= threshold`` against ``gold``.

    ``candidates_with_scores``: ``{(src_id, tgt_id): score}`` or ``((src_id, tgt_id), score)``
    items (ties keep their given order, as the official stable sort does). Returns 0.0 when no
    candidate is correct, like the official code.
    """
    ranked = sorted(_scored(candidates_with_scores), key=lambda item: -item[1])
    gold_set = _pairs(gold)
    n_gold = len(gold_set)
    n_extracted = n_correct = 0
    best_f1 = 0.0
    threshold = 0.0
    for i, (pair, score) in enumerate(ranked):
        n_extracted += 1
        if pair in gold_set:
            n_correct += 1
        if n_correct == 0:
            continue
        precision = n_correct / n_extracted
        recall = n_correct / n_gold
        f1 = 2 * precision * recall / (precision + recall)
        if f1 > best_f1:
            best_f1 = f1
            threshold = (score + ranked[i + 1][1]) / 2 if i + 1 < len(ranked) else score
    return threshold


def bucc_extract(
    candidates_with_scores: Mapping[Pair, float] | Iterable[tuple[Pair, float]], threshold: float
) -> list[Pair]:
    """The candidate pairs with ``score >= threshold``, in the given order (XTREME's bucc_extract)."""
    return [pair for pair, score in _scored(candidates_with_scores) if score >= threshold]
