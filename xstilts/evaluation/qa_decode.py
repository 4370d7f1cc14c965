"""From start/end logits over doc-stride windows to answer strings of the original context.

For every example, over all of its windows: take the ``n_best`` highest start and end logits,
keep the pairs that lie inside the context, end at or after their start, span at most
``max_answer_length`` tokens and start on a token for which this window is the "max context"
window (BERT's rule, which XTREME's decoding keeps); score a pair by the sum of its logits and
return the best one, cut out of the original context by character offsets (so text without
spaces, such as Chinese, comes back exactly as it is in the context). Surrounding whitespace of
the cut is dropped. Answers are never empty unless no window yields a valid span (SQuAD v1.1
style, as XTREME's tasks have an answer for every question).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from xstilts.data.examples import QAExample


@dataclass
class Span:
    score: float
    start_char: int
    end_char: int
    text: str
    window: int


def best_spans(
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    offsets: Sequence[tuple[int, int] | None],
    context: str,
    *,
    max_context: Sequence[bool] | None = None,
    n_best: int = 20,
    max_answer_length: int = 30,
    window: int = 0,
) -> list[Span]:
    """Candidate answer spans of one window, best first (at most ``n_best * n_best``)."""
    start_logits = np.asarray(start_logits, dtype=np.float64)
    end_logits = np.asarray(end_logits, dtype=np.float64)
    n = min(len(offsets), len(start_logits))
    starts = np.argsort(-start_logits[:n], kind="stable")[:n_best]
    ends = np.argsort(-end_logits[:n], kind="stable")[:n_best]
    spans = []
    for s in starts:
        s = int(s)
        if offsets[s] is None or (max_context is not None and not max_context[s]):
            continue
        for e in ends:
            e = int(e)
            if offsets[e] is None or e < s or e - s + 1 > max_answer_length:
                continue
            a, b = offsets[s][0], offsets[e][1]
            if b <= a:
                continue
            raw = context[a:b]
            text = raw.strip()
            lead = len(raw) - len(raw.lstrip())
            spans.append(
                Span(
                    score=float(start_logits[s] + end_logits[e]),
                    start_char=a + lead,
                    end_char=a + lead + len(text),
                    text=text,
                    window=window,
                )
            )
    spans.sort(key=lambda sp: -sp.score)
    return spans


def decode_answers(
    examples: Sequence,
    features: Sequence[dict],
    start_logits: Sequence[np.ndarray],
    end_logits: Sequence[np.ndarray],
    *,
    n_best: int = 20,
    max_answer_length: int = 30,
    return_nbest: bool = False,
):
    """``{example id: answer text}`` (and, with ``return_nbest``, the n-best spans per id).

    ``features`` are QA features from :func:`xstilts.data.features.featurize` (with
    ``example_index``, ``offset_mapping`` and ``max_context``); ``start_logits[i]`` and
    ``end_logits[i]`` belong to ``features[i]``.
    """
    by_example: dict[int, list[int]] = {}
    for i, f in enumerate(features):
        by_example.setdefault(f["example_index"], []).append(i)
    answers: dict[str, str] = {}
    nbest: dict[str, list[Span]] = {}
    for ei, ex in enumerate(examples):
        candidates: list[Span] = []
        for fi in by_example.get(ei, []):
            f = features[fi]
            candidates.extend(
                best_spans(
                    start_logits[fi],
                    end_logits[fi],
                    f["offset_mapping"],
                    ex.context,
                    max_context=f.get("max_context"),
                    n_best=n_best,
                    max_answer_length=max_answer_length,
                    window=fi,
                )
            )
        candidates = [c for c in candidates if c.text]
        candidates.sort(key=lambda sp: -sp.score)
        answers[ex.id] = candidates[0].text if candidates else ""
        if return_nbest:
            nbest[ex.id] = candidates[:n_best]
    return (answers, nbest) if return_nbest else answers


def decode_answers_v2(
    examples: Sequence[QAExample],
    features: Sequence[Mapping[str, object]],
    start_logits: Sequence[object],
    end_logits: Sequence[object],
    *,
    null_score_diff_threshold: float = 0.0,
    n_best: int = 20,
    max_answer_length: int = 30,
) -> tuple[dict[str, str], dict[str, float]]:
    """SQuAD v2.0 answers from start/end logits: a span, or the null answer "".

    The null answer is the classifier position (``feature["cls_index"]``, else 0: the
    ``<s>``/``[CLS]`` token the QA features point unanswerable questions at). Its score is
    start + end logit there, the *lowest* over an example's windows (the window most sure that
    there is an answer speaks); the best span comes from
    :func:`best_spans` over all windows. The answer is "" when
    ``null score - best span score > null_score_diff_threshold`` (or when there is no valid
    span), as the SQuAD v2.0 reference models decode. Also returns that difference per
    question: pass it as ``na_probs`` to :func:`xstilts.evaluation.metrics_nlu.squad_v2_scores` to get the best threshold.
    """
    windows: dict[int, list[int]] = {}
    for i, f in enumerate(features):
        windows.setdefault(int(f["example_index"]), []).append(i)  # type: ignore[call-overload]
    answers: dict[str, str] = {}
    null_diff: dict[str, float] = {}
    for ei, ex in enumerate(examples):
        null_score = float("inf")
        candidates = []
        for fi in windows.get(ei, []):
            f = features[fi]
            starts = np.asarray(start_logits[fi], dtype=np.float64)
            ends = np.asarray(end_logits[fi], dtype=np.float64)
            cls = int(f.get("cls_index", 0))  # type: ignore[call-overload]
            null_score = min(null_score, float(starts[cls] + ends[cls]))
            candidates.extend(
                s
                for s in best_spans(
                    starts,
                    ends,
                    f["offset_mapping"],  # type: ignore[arg-type]
                    ex.context,
                    max_context=f.get("max_context"),  # type: ignore[arg-type]
                    n_best=n_best,
                    max_answer_length=max_answer_length,
                    window=fi,
                )
                if s.text
            )
        if not candidates:
            answers[ex.id], null_diff[ex.id] = "", float("inf")
            continue
        best = max(candidates, key=lambda s: s.score)
        diff = null_score - best.score
        null_diff[ex.id] = diff
        answers[ex.id] = "" if diff > null_score_diff_threshold else best.text
    return answers, null_diff
