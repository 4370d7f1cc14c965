"""SQuAD v1.1 exact match and token F1 (XQuAD, TyDiQA-GoldP), as XTREME's evaluate_squad.py.

Normalisation: lower-case, drop ASCII punctuation (``string.punctuation``), drop the English
articles a/an/the as whole words, collapse whitespace. Each question scores the maximum over its
gold answers; a question without a prediction scores 0 (with a warning), as in the official code.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

_ARTICLES_EN = re.compile(r"\b(a|an|the)\b")
_ASCII_PUNCT = frozenset(string.punctuation)

QAGold = Sequence[tuple[str, Sequence[str]]]


def normalize_answer(text: str) -> str:
    """SQuAD v1.1's normalisation."""
    text = "".join(ch for ch in text.lower() if ch not in _ASCII_PUNCT)
    text = _ARTICLES_EN.sub(" ", text)
    return " ".join(text.split())


def token_f1(prediction_tokens: list[str], gold_tokens: list[str]) -> float:
    """Bag-of-tokens F1 between two token lists (0 when nothing is shared)."""
    common = Counter(prediction_tokens) & Counter(gold_tokens)
    n_same = sum(common.values())
    if n_same == 0:
        return 0.0
    precision = 1.0 * n_same / len(prediction_tokens)
    recall = 1.0 * n_same / len(gold_tokens)
    return (2 * precision * recall) / (precision + recall)


def exact_match_score(prediction: str, gold: str) -> bool:
    return normalize_answer(prediction) == normalize_answer(gold)


def f1_score(prediction: str, gold: str) -> float:
    return token_f1(normalize_answer(prediction).split(), normalize_answer(gold).split())


def as_gold_list(gold: QAGold | Mapping[str, Sequence[str]]) -> list[tuple[str, Sequence[str]]]:
    """Accept ``{qid: answers}`` as well as the ordered ``[(qid, answers)]`` form."""
    return list(gold.items()) if isinstance(gold, Mapping) else list(gold)


def unanswered(
    gold: QAGold | Mapping[str, Sequence[str]], predictions: Mapping[str, str]
) -> list[str]:
    """Gold question ids with no prediction (they score 0)."""
    return [qid for qid, _ in as_gold_list(gold) if qid not in predictions]


def qa_scores(
    gold: QAGold | Mapping[str, Sequence[str]],
    predictions: Mapping[str, str],
    exact: Callable[[str, str], bool | float],
    f1: Callable[[str, str], float],
) -> dict[str, float]:
    """``exact_match`` and ``f1`` ×100 averaged over every gold question (missing ones count 0;
    :func:`xstilts.evaluation.scorer.score_language` warns about them)."""
    items = as_gold_list(gold)
    if not items:
        raise ValueError("no gold questions to score")
    em_sum = f1_sum = 0.0
    for qid, answers in items:
        if qid not in predictions:
            continue
        if not answers:
            raise ValueError(f"question {qid} has no gold answer")
        prediction = predictions[qid]
        em_sum += max(exact(prediction, a) for a in answers)
        f1_sum += max(f1(prediction, a) for a in answers)
    return {"exact_match": 100.0 * em_sum / len(items), "f1": 100.0 * f1_sum / len(items)}


def squad_scores(
    gold: QAGold | Mapping[str, Sequence[str]], predictions: Mapping[str, str]
) -> dict[str, float]:
    """SQuAD v1.1 ``exact_match`` and ``f1`` ×100 (evaluate_squad.py's ``evaluate``)."""
    return qa_scores(gold, predictions, exact_match_score, f1_score)
