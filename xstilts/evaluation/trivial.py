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
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xstilts.evaluation import layout
from xstilts.evaluation.scorer import score_language, task_score
from xstilts.tasks import Task, TaskKind, get_task
from xstilts.tasks.kinds import kind_ops, num_choices


def reads_training_data(task: Task) -> bool:
    """Whether the task's trivial predictor learns from the English training data (the majority
    label or tag; for multiple choice the number of choices, where the task does not declare it)."""
    return task.has_training_data and kind_ops(task).trivial_reads_training


def majority_label(task: Task, train_examples: Iterable[Any]) -> str | None:
    """The most frequent label (sentence pair) or tag (tagging) of the training examples."""
    labels_of = kind_ops(task).labels_of
    counts: Counter[str] = Counter(str(label) for ex in train_examples for label in labels_of(ex))
    if not counts:
        return None
    # ties go to the label first in the task's label order (then alphabetical): deterministic
    order = {label: i for i, label in enumerate(task.labels or ())}
    best = max(counts.values())
    return min((label for label, n in counts.items() if n == best), key=lambda lab: (order.get(lab, len(order)), lab))


@dataclass(frozen=True)
class Rule:
    """A kind's trivial predictor (its ``trivial`` operation's result): ``score(lang, gold)`` is
    the primary score on one language's gold (None: cannot say), ``description`` what predicted."""

    score: Callable[[str, Any], float | None]
    description: str


def _scored(task: Task, predict: Callable[[Any], Any]) -> Callable[[str, Any], float]:
    return lambda lang, gold: task_score(task, {lang: score_language(task, lang, gold, predict(gold))})


def _majority_rule(task: Task, train: list[Any], what: str, predict: Callable[[str, Any], Any]) -> Rule:
    majority = majority_label(task, train)
    if majority is None:
        return Rule(lambda lang, gold: None, "n/a (no training labels)")
    return Rule(_scored(task, lambda gold: predict(majority, gold)), f"majority {what} {majority!r}")


@kind_ops(TaskKind.SENTENCE_PAIR).implements("trivial")
def _majority_label_rule(task: Task, train: list[Any]) -> Rule:
    return _majority_rule(task, train, "label", lambda majority, gold: [majority] * len(gold))


@kind_ops(TaskKind.TAGGING).implements("trivial")
def _majority_tag_rule(task: Task, train: list[Any]) -> Rule:
    return _majority_rule(task, train, "tag", lambda majority, gold: [[majority] * len(s) for s in gold])


@kind_ops(TaskKind.MULTIPLE_CHOICE).implements("trivial")
def _chance_choice_rule(task: Task, train: list[Any]) -> Rule:
    choices = num_choices(task, train)
    return Rule(lambda lang, gold: 100.0 / choices if choices else None,
                f"chance (1 of {choices})" if choices else "chance")  # fmt: skip


@kind_ops(TaskKind.QA).implements("trivial")
def _empty_answer_rule(task: Task, train: list[Any]) -> Rule:
    return Rule(_scored(task, lambda gold: {qid: "" for qid, _ in gold}), "empty answers")


@kind_ops(TaskKind.RETRIEVAL).implements("trivial")
def _retrieval_rule(task: Task, train: list[Any]) -> Rule:
    if layout.file_format(task) == layout.PAIRS:
        return Rule(lambda lang, gold: 0.0, "no pairs")
    return Rule(lambda lang, gold: 100.0 / len(gold) if len(gold) else None, "chance (100 / pool size)")


def trivial_scores(task: Task | str, label_root: str | Path, train_examples: Iterable[Any] = ()) -> dict[str, Any]:
    """``{"languages": {LANG: score}, "score": mean, "rule": what predicted}`` over every gold file
    under ``label_root`` (a run's ``labels*/`` folder)."""
    t = get_task(task)
    rule = kind_ops(t).trivial(t, list(train_examples))
    per_lang: dict[str, float] = {}
    for lang in layout.languages_in(label_root, t):
        value = rule.score(lang, layout.read_labels(layout.label_path(label_root, t, lang), t))
        if value is not None:
            per_lang[lang] = value
    return {
        "languages": per_lang,
        "score": sum(per_lang.values()) / len(per_lang) if per_lang else None,
        "rule": rule.description,
    }
