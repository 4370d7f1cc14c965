"""Quality of the English NLU intermediate tasks (phase 1), measured as each task's own paper does.

A study asks what an intermediate task transferred; it can only answer that if it also says how
well the intermediate task itself was learnt. :func:`score_intermediate` is the one entry point
the pipeline calls after phase 1: it picks the metric from the task's kind and ``metric`` name.

Every value is a percentage (x100), like the XTREME scorer's, except counts (``*total``,
``missing``), which are integers.

The SQuAD v2.0 scoring follows the behaviour of the official ``evaluate-v2.0.py`` (written anew
here, not copied): answers are normalised (lower case, punctuation and the articles a/an/the
removed, whitespace collapsed); an empty prediction string is the null answer; a question whose
gold answers all normalise to nothing (an unanswerable one) has the single gold answer ``""``;
token F1 between the null answer and anything is 1 if both are null and 0 otherwise; EM and F1
are the maximum over gold answers, averaged overall and over the HasAns and NoAns subsets. An
optional no-answer probability per question with a threshold turns a prediction into the null
answer, as the script's ``--na-prob-file``/``--na-prob-thresh`` do, and ``best_exact``/
``best_f1`` report the best threshold. One deliberate difference: the official script silently
drops a question that has no prediction from the overall average (and then fails on the
subsets); here a missing prediction scores 0 and ``missing`` counts them, so a partial
prediction file can never look better than a complete one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from xstilts.errors import ConfigError
from xstilts.evaluation.metrics import classification
from xstilts.evaluation.metrics.squad import normalize_answer, squad_scores, token_f1
from xstilts.evaluation.predict import PredictOptions, predict_examples
from xstilts.tasks import get_task
from xstilts.tasks.base import TaskKind
from xstilts.tasks.kinds import kind_ops

if TYPE_CHECKING:
    from xstilts.data.examples import QAExample
    from xstilts.tasks.base import Task


# --------------------------------------------------------------------------- SQuAD answers
# Normalisation and token F1 are the XTREME scorer's (xstilts.evaluation.metrics.squad): SQuAD
# v2.0 normalises exactly as v1.1 does; only the null answer is new.
def _tokens(text: str) -> list[str]:
    return normalize_answer(text).split() if text else []


def exact_match(gold: str, prediction: str) -> int:
    """1 when the two answers are equal after normalisation (two null answers are equal)."""
    return int(normalize_answer(gold) == normalize_answer(prediction))


def token_f1_v2(gold: str, prediction: str) -> float:
    """Bag-of-tokens F1, SQuAD v2.0 style: a null answer on either side scores 1 only if both are."""
    gold_tokens = _tokens(gold)
    pred_tokens = _tokens(prediction)
    if not gold_tokens or not pred_tokens:
        return float(gold_tokens == pred_tokens)
    return token_f1(pred_tokens, gold_tokens)


def token_f1_v1(gold: str, prediction: str) -> float:
    """Bag-of-tokens F1, SQuAD v1.1 style: no overlap (including an empty side) scores 0."""
    return token_f1(_tokens(prediction), _tokens(gold))


def _gold_texts_v2(example: QAExample) -> list[str]:
    """The gold answers the v2.0 script compares against: non-empty ones, else the null answer."""
    texts = [a.text for a in example.answers if normalize_answer(a.text)]
    return texts or [""]


def squad_v2_scores(
    examples: Sequence[QAExample],
    predictions: Mapping[str, str],
    *,
    na_probs: Mapping[str, float] | None = None,
    na_prob_thresh: float = 1.0,
) -> dict[str, float]:
    """SQuAD v2.0 EM/F1 overall and over HasAns / NoAns, as ``evaluate-v2.0.py`` reports them.

    ``predictions`` maps question id to answer text ("" = no answer). With ``na_probs`` (question
    id → probability of no answer), a question whose probability exceeds ``na_prob_thresh`` is
    answered with the null answer, and ``best_exact``/``best_f1`` with their thresholds are added.
    """
    if not examples:
        raise ConfigError("SQuAD v2.0 scoring needs at least one gold question")
    exact: dict[str, float] = {}
    f1: dict[str, float] = {}
    has_answer: dict[str, bool] = {}
    raw_exact: dict[str, float] = {}
    raw_f1: dict[str, float] = {}
    missing = 0
    for ex in examples:
        # As the official script: answerable means the gold answer list is non-empty.
        has_answer[ex.id] = bool(ex.answers) and not ex.is_impossible
        golds = _gold_texts_v2(ex) if has_answer[ex.id] else [""]
        if ex.id not in predictions:
            missing += 1
            exact[ex.id] = f1[ex.id] = 0.0
            continue
        pred = predictions[ex.id] or ""
        raw_exact[ex.id] = float(max(exact_match(g, pred) for g in golds))
        raw_f1[ex.id] = max(token_f1_v2(g, pred) for g in golds)
        if na_probs is not None and na_probs.get(ex.id, 0.0) > na_prob_thresh:
            exact[ex.id] = f1[ex.id] = float(not has_answer[ex.id])
        else:
            exact[ex.id] = raw_exact[ex.id]
            f1[ex.id] = raw_f1[ex.id]

    def summary(ids: list[str]) -> tuple[float, float]:
        return (
            100.0 * sum(exact[i] for i in ids) / len(ids),
            100.0 * sum(f1[i] for i in ids) / len(ids),
        )

    all_ids = list(has_answer)
    out: dict[str, float] = {}
    out["exact"], out["f1"] = summary(all_ids)
    out["total"] = len(all_ids)
    has_ids = [i for i in all_ids if has_answer[i]]
    no_ids = [i for i in all_ids if not has_answer[i]]
    if has_ids:
        out["HasAns_exact"], out["HasAns_f1"] = summary(has_ids)
        out["HasAns_total"] = len(has_ids)
    if no_ids:
        out["NoAns_exact"], out["NoAns_f1"] = summary(no_ids)
        out["NoAns_total"] = len(no_ids)
    out["missing"] = missing
    if na_probs is not None:
        for name, raw in (("exact", raw_exact), ("f1", raw_f1)):
            best, thresh = _best_threshold(predictions, raw, na_probs, has_answer, len(all_ids))
            out[f"best_{name}"] = best
            out[f"best_{name}_thresh"] = thresh
    return out


def _best_threshold(
    predictions: Mapping[str, str],
    raw: Mapping[str, float],
    na_probs: Mapping[str, float],
    has_answer: Mapping[str, bool],
    total: int,
) -> tuple[float, float]:
    """The no-answer threshold that maximises the score, sweeping questions by probability.

    Below every threshold all questions are null: NoAns questions are right, HasAns wrong. Moving
    the threshold past a question answers it: a HasAns question gains its raw score, a NoAns one
    loses 1 if the model gave a non-empty answer.
    """
    score = float(sum(1 for v in has_answer.values() if not v))
    best, best_thresh = score, 0.0
    for qid in sorted(raw, key=lambda q: na_probs.get(q, 0.0)):
        if has_answer[qid]:
            score += raw[qid]
        elif predictions.get(qid):
            score -= 1
        if score > best:
            best, best_thresh = score, na_probs.get(qid, 0.0)
    return 100.0 * best / total, best_thresh


def squad_v1_scores(
    examples: Sequence[QAExample], predictions: Mapping[str, str]
) -> dict[str, float]:
    """SQuAD v1.1 EM/F1 with the XTREME scorer's ``squad_scores`` (max over gold answers, a
    missing prediction scores 0), plus the question count and the number missing."""
    if not examples:
        raise ConfigError("SQuAD scoring needs at least one gold question")
    for ex in examples:
        if not ex.answers:
            raise ConfigError(
                f"question {ex.id} has no gold answer (SQuAD v1.1 has none unanswerable)"
            )
    gold = [(ex.id, [a.text for a in ex.answers]) for ex in examples]
    scores = squad_scores(gold, predictions)
    missing = sum(ex.id not in predictions for ex in examples)
    return {**scores, "total": len(examples), "missing": missing}


# --------------------------------------------------------------------------- labels and tags
def binary_f1(gold: Sequence[str], predictions: Sequence[str], positive: str = "1") -> float:
    """F1 of the positive class (GLUE reports it for QQP next to accuracy)."""
    _same_length(gold, predictions, "labels")
    tp = sum(g == positive and p == positive for g, p in zip(gold, predictions))
    fp = sum(g != positive and p == positive for g, p in zip(gold, predictions))
    fn = sum(g == positive and p != positive for g, p in zip(gold, predictions))
    if tp == 0:
        return 0.0
    return 100.0 * 2 * tp / (2 * tp + fp + fn)


def token_accuracy(gold: Sequence[Sequence[str]], predictions: Sequence[Sequence[str]]) -> float:
    """Percentage of tokens tagged correctly, over all sentences (CCG supertagging's metric).

    Supertags are not spans, so seqeval's chunk F1 would be meaningless here. A sentence whose
    prediction has a different length from its gold is an error, not a partial score.
    """
    _same_length(gold, predictions, "sentences")
    correct = total = 0
    for i, (g, p) in enumerate(zip(gold, predictions)):
        if len(g) != len(p):
            raise ConfigError(
                f"sentence {i}: {len(p)} predicted tags for {len(g)} gold tags; "
                "token accuracy needs one tag per token"
            )
        correct += sum(a == b for a, b in zip(g, p))
        total += len(g)
    if total == 0:
        raise ConfigError("token accuracy needs at least one gold token")
    return 100.0 * correct / total


def _same_length(gold: Sequence[object], predictions: Sequence[object], what: str) -> None:
    if len(gold) != len(predictions):
        raise ConfigError(f"{len(predictions)} predicted {what} for {len(gold)} gold {what}")


# --------------------------------------------------------------------------- entry point
def _aligned(examples: Sequence[object], predictions: object, what: str) -> list[object]:
    """Predictions as a list aligned with the examples; a mapping is looked up by example id."""
    if isinstance(predictions, Mapping):
        missing = [ex.id for ex in examples if ex.id not in predictions]  # type: ignore[attr-defined]
        if missing:
            raise ConfigError(
                f"no predicted {what} for {len(missing)} examples, e.g. {missing[0]!r}"
            )
        return [predictions[ex.id] for ex in examples]  # type: ignore[attr-defined]
    return list(predictions)  # type: ignore[call-overload]


def score_intermediate(
    task: Task | str, gold_examples: Sequence[object], predictions: object
) -> dict:
    """Score phase-1 predictions on an NLU intermediate task with the task's own metric.

    ``predictions`` by kind: sentence pair → labels (list aligned with the examples, or dict id →
    label); multiple choice → choice indices (list or dict id → int); QA → dict question id →
    answer text ("" = no answer, SQuAD v2.0); tagging → tag lists per sentence. Returns metric
    name → value (x100), plus counts for QA. Gold examples without labels cannot be scored.
    """

    task = get_task(task)
    ops = kind_ops(task)
    if not ops.has("score"):
        raise ConfigError(f"{task.name}: no NLU intermediate metric for kind {task.kind.value}")
    return ops.score(task, gold_examples, predictions)


@kind_ops(TaskKind.QA).implements("score")
def _score_answers(task: Task, gold_examples: Sequence[object], predictions: object) -> dict:
    if not isinstance(predictions, Mapping):
        raise ConfigError("QA predictions must be a mapping question id -> answer text")
    if task.metric == "squad_v2":
        return squad_v2_scores(gold_examples, predictions)  # type: ignore[arg-type]
    return squad_v1_scores(gold_examples, predictions)  # type: ignore[arg-type]


@kind_ops(TaskKind.TAGGING).implements("score")
def _score_tags(task: Task, gold_examples: Sequence[object], predictions: object) -> dict:
    gold_tags = [ex.tags for ex in gold_examples]  # type: ignore[attr-defined]
    if any(t is None for t in gold_tags):
        raise ConfigError(f"{task.name}: gold examples have no tags to score against")
    pred_tags = _aligned(gold_examples, predictions, "tags")
    return {"token_accuracy": token_accuracy(gold_tags, pred_tags)}  # type: ignore[arg-type]


def _score_labels(task: Task, gold_examples: Sequence[object], pred: Sequence[object]) -> dict:
    gold = [ex.label for ex in gold_examples]  # type: ignore[attr-defined]
    _same_length(gold, pred, "labels")
    if not gold:
        raise ConfigError(f"{task.name}: accuracy needs at least one gold label")
    out = classification.accuracy(gold, pred)  # the XNLI/PAWS-X definition
    if task.extra.get("report_f1"):
        out["f1"] = binary_f1(gold, pred, positive=str(task.extra.get("positive_label", "1")))  # type: ignore[arg-type]
    return out


def _gold_labels_present(task: Task, gold_examples: Sequence[object]) -> None:
    if any(ex.label is None for ex in gold_examples):  # type: ignore[attr-defined]
        raise ConfigError(f"{task.name}: gold examples have no labels to score against")


@kind_ops(TaskKind.SENTENCE_PAIR).implements("score")
def _score_pairs(task: Task, gold_examples: Sequence[object], predictions: object) -> dict:
    _gold_labels_present(task, gold_examples)
    return _score_labels(task, gold_examples, _aligned(gold_examples, predictions, "labels"))


@kind_ops(TaskKind.MULTIPLE_CHOICE).implements("score")
def _score_choices(task: Task, gold_examples: Sequence[object], predictions: object) -> dict:
    _gold_labels_present(task, gold_examples)
    pred = [int(p) for p in _aligned(gold_examples, predictions, "labels")]  # type: ignore[call-overload]
    return _score_labels(task, gold_examples, pred)


def intermediate_quality(
    task: Task | str,
    model: object,
    tokenizer: object,
    dev_examples: Sequence[object],
    options: PredictOptions = PredictOptions(),
) -> dict:
    """Predict ``dev_examples`` with a phase-1 task model and score them (one call after phase 1).

    ``options``: how :func:`xstilts.evaluation.predict.predict_examples` runs (batch bounds,
    max_length, doc_stride, device, ...). SQuAD v2.0 predictions include the null answer.
    """

    task = get_task(task)
    predictions = predict_examples(task, model, tokenizer, dev_examples, options)
    return score_intermediate(task, dev_examples, predictions)
