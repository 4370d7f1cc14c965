"""Trivial references: what a model that learnt nothing scores, per task and language.

A zero-shot score means little until it is set against what no learning gives. The reference is
scored on the very gold files a run was scored on (its ``labels*/`` folder), with the same
scorer, by a predictor that ignores its input:

==============================  ==============================================================
format (kinds)                  trivial predictor
==============================  ==============================================================
label (sentence pair)           the majority label of the English training data
label (multiple choice)         chance: 100 / number of choices (expected accuracy of a guess)
tags (UDPOS, PAN-X)             the majority tag of the English training data on every token
                                (all-``O`` for PAN-X, hence F1 0; ``NOUN`` for UDPOS, which
                                XTREME's seqeval reading of bare tags scores ~0: a run of one
                                tag is one chunk, so each sentence becomes a single chunk)
qa (XQuAD, MLQA, TyDiQA)        the empty answer (EM 0, F1 0)
index (Tatoeba)                 chance: 100 / pool size (expected accuracy of a uniform guess)
pairs (BUCC)                    no pairs (F1 0)
==============================  ==============================================================

The majority is taken from the English training file (all of it), never from the gold being
scored, so the reference is a predictor, not an oracle.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from xstilts.evaluation import layout
from xstilts.evaluation.scorer import score_language, task_score
from xstilts.tasks import Task, TaskKind, get_task

# kinds whose trivial predictor learns from the English training data (the majority label or
# tag; for multiple choice the number of choices, where the task does not declare it)
READS_TRAINING_KINDS = frozenset({TaskKind.TAGGING, TaskKind.SENTENCE_PAIR, TaskKind.MULTIPLE_CHOICE})


def reads_training_data(task: Task) -> bool:
    return task.has_training_data and task.kind in READS_TRAINING_KINDS


def majority_label(task: Task, train_examples: Iterable[Any]) -> str | None:
    """The most frequent label (sentence pair) or tag (tagging) of the training examples."""
    counts: Counter[str] = Counter()
    for ex in train_examples:
        if task.kind is TaskKind.TAGGING:
            counts.update(ex.tags or [])
        elif getattr(ex, "label", None) is not None:
            counts[str(ex.label)] += 1
    if not counts:
        return None
    # ties go to the label first in the task's label order (then alphabetical): deterministic
    order = {label: i for i, label in enumerate(task.labels or ())}
    best = max(counts.values())
    return min((label for label, n in counts.items() if n == best), key=lambda lab: (order.get(lab, len(order)), lab))


def num_choices(task: Task, train_examples: Iterable[Any] = ()) -> int | None:
    n = (task.extra or {}).get("num_choices")
    if isinstance(n, int):
        return n
    for ex in train_examples:
        return len(ex.choices)
    return None


def trivial_language_score(task: Task, lang: str, gold: Any, majority: str | None, choices: int | None) -> float | None:
    """The trivial predictor's primary score (the number that enters the XTREME score) for one language."""
    fmt = layout.file_format(task)
    if fmt == layout.INDEX:
        return 100.0 / len(gold) if len(gold) else None
    if fmt == layout.PAIRS:
        return 0.0
    if fmt == layout.LABEL and task.kind is TaskKind.MULTIPLE_CHOICE:
        return 100.0 / choices if choices else None
    if fmt == layout.QA:
        predictions: Any = {qid: "" for qid, _ in gold}
    elif majority is None:
        return None
    elif fmt == layout.TAGS:
        predictions = [[majority] * len(sentence) for sentence in gold]
    else:
        predictions = [majority] * len(gold)
    return task_score(task, {lang: score_language(task, lang, gold, predictions)})


def trivial_scores(task: Task | str, label_root: str | Path, train_examples: Iterable[Any] = ()) -> dict[str, Any]:
    """``{"languages": {LANG: score}, "score": mean, "rule": what predicted}`` over every gold file
    under ``label_root`` (a run's ``labels*/`` folder)."""
    t = task if isinstance(task, Task) else get_task(task)
    train = list(train_examples)
    majority = majority_label(t, train) if t.kind in (TaskKind.TAGGING, TaskKind.SENTENCE_PAIR) else None
    choices = num_choices(t, train) if t.kind is TaskKind.MULTIPLE_CHOICE else None
    per_lang: dict[str, float] = {}
    for lang in layout.languages_in(label_root, t):
        gold = layout.read_labels(layout.label_path(label_root, t, lang), t)
        value = trivial_language_score(t, lang, gold, majority, choices)
        if value is not None:
            per_lang[lang] = value
    return {
        "languages": per_lang,
        "score": sum(per_lang.values()) / len(per_lang) if per_lang else None,
        "rule": describe_rule(t, majority, choices),
    }


def describe_rule(task: Task, majority: str | None, choices: int | None) -> str:
    fmt = layout.file_format(task)
    if fmt == layout.INDEX:
        return "chance (100 / pool size)"
    if fmt == layout.PAIRS:
        return "no pairs"
    if fmt == layout.QA:
        return "empty answers"
    if task.kind is TaskKind.MULTIPLE_CHOICE:
        return f"chance (1 of {choices})" if choices else "chance"
    if majority is None:
        return "n/a (no training labels)"
    return f"majority {'tag' if fmt == layout.TAGS else 'label'} {majority!r}"
