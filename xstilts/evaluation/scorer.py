"""Scoring with XTREME's ``evaluate.py`` semantics: per language, per task, the XTREME score.

* ``score_language`` scores one language from in-memory gold and predictions (the forms of
  :mod:`xstilts.evaluation.layout`); values are ×100.
* a task's score is the mean over its languages of the task's main metric: ``(avg exact_match +
  avg f1) / 2`` for QA, ``avg f1`` for tagging and BUCC, ``avg accuracy`` for the rest;
* the XTREME score is the unweighted mean of the nine task scores, and only exists when all
  nine tasks are scored in all their languages (evaluate.py prints it only then).

``score_directory`` reads a prediction tree and a label tree in XTREME's submission layout and
returns the JSON that ``xstilts score --json`` prints::

    {"tasks": {TASK: {"languages": {LANG: {METRIC: value}}, "score": value,
                      "missing": [LANG, ...]   # only when some languages could not be scored
                      }},
     "xtreme_score": value or null}
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from numbers import Integral
from pathlib import Path
from typing import Any

from xstilts.data import readers
from xstilts.errors import ConfigError, DataFormatError, MissingDataError
from xstilts.evaluation import layout
from xstilts.evaluation.metrics import bucc, classification, mlqa, squad, tagging, tatoeba
from xstilts.evaluation.metrics.tagging import DEFAULT_SEQEVAL_MODE, SEQEVAL_MODES
from xstilts.tasks import Task, get_task
from xstilts.tasks.kinds import kind_ops
from xstilts.tasks.xtreme import XTREME_TASKS

log = logging.getLogger(__name__)

SCORABLE_METRICS = ("accuracy", "seqeval_f1", "squad", "mlqa", "bucc_f1", "tatoeba_accuracy")



def _check_count(
    what: str, n_gold: int, n_pred: int, prediction_file: Path | None, label_file: Path | None
) -> None:
    if n_gold == n_pred:
        return
    where = prediction_file if prediction_file is not None else Path("<predictions>")
    gold_name = f" in {label_file}" if label_file is not None else ""
    raise DataFormatError(
        where, None, f"{n_gold} {what} (as many as the gold items{gold_name})", f"{n_pred}"
    )


def _check_tag_lengths(
    gold: list[list[str]],
    predictions: list[list[str]],
    prediction_file: Path | None,
    label_file: Path | None,
) -> None:
    line = 1  # the first line of the sentence in the prediction file (one tag a line + a blank)
    for k, (g, p) in enumerate(zip(gold, predictions), 1):
        if len(g) != len(p):
            where = prediction_file if prediction_file is not None else Path("<predictions>")
            gold_name = f" in {label_file}" if label_file is not None else ""
            raise DataFormatError(
                where, line, f"{len(g)} tags for sentence {k} (as{gold_name})", f"{len(p)}"
            )
        line += len(p) + 1


def _check_indices(predictions: Any, pool_size: int, prediction_file: Path | None) -> None:
    where = prediction_file if prediction_file is not None else Path("<predictions>")
    for line, index in enumerate(predictions, 1):
        if isinstance(index, bool) or not isinstance(index, Integral) or not 0 <= index < pool_size:
            raise DataFormatError(
                where,
                line,
                f"a target index in 0..{pool_size - 1} (the pool holds {pool_size} English sentences)",
                repr(index),
            )


def _looks_like_examples(gold: Any) -> bool:
    if hasattr(gold, "source") and hasattr(gold, "gold"):  # a bare BitextExample
        return True
    if isinstance(gold, Mapping) or not isinstance(gold, (list, tuple)) or not gold:
        return False
    first = gold[0]
    return hasattr(first, "id") and not isinstance(first, (str, tuple, list))


def score_language(
    task: Task | str,
    lang: str,
    gold: Any,
    predictions: Any,
    *,
    seqeval_mode: str = DEFAULT_SEQEVAL_MODE,
    prediction_file: str | Path | None = None,
    label_file: str | Path | None = None,
    pool_size: int | None = None,
) -> dict[str, float]:
    """Metric name → value ×100 for one language, as evaluate.py computes it.

    Tatoeba predictions index a pool of ``pool_size`` English sentences (default: as many as
    there are gold items, XTREME's one English sentence per source); one outside it is an error.

    A different number of predictions and gold items (sentences, tags of a sentence, labels,
    Tatoeba sources) is a :class:`DataFormatError` naming the prediction file and both counts.
    QA questions without a prediction score 0 (with a warning); BUCC compares pair sets.
    ``gold`` may also be the reader's examples (converted with ``layout.gold_from_examples``).
    """
    t = get_task(task)
    if _looks_like_examples(gold):
        gold = layout.gold_from_examples(t, gold)
    pfile = Path(prediction_file) if prediction_file is not None else None
    lfile = Path(label_file) if label_file is not None else None
    if t.metric == "accuracy":
        _check_count("labels", len(gold), len(predictions), pfile, lfile)
        return classification.accuracy(gold, predictions)
    if t.metric == "tatoeba_accuracy":
        _check_count("target indices", len(gold), len(predictions), pfile, lfile)
        _check_indices(predictions, len(gold) if pool_size is None else pool_size, pfile)
        return tatoeba.tatoeba_accuracy(gold, predictions)
    if t.metric == "seqeval_f1":
        if seqeval_mode not in SEQEVAL_MODES:
            raise ConfigError(
                f"seqeval mode must be one of {', '.join(SEQEVAL_MODES)}, not {seqeval_mode!r}"
            )
        _check_count("sentences", len(gold), len(predictions), pfile, lfile)
        _check_tag_lengths(gold, predictions, pfile, lfile)
        return tagging.seqeval_scores(gold, predictions, seqeval_mode)
    if t.metric in ("squad", "mlqa"):
        if not isinstance(predictions, Mapping):
            raise TypeError("QA predictions are a mapping {question id: answer text}")
        n_missing = len(squad.unanswered(gold, predictions))
        if n_missing:
            where = f"{pfile}: " if pfile is not None else f"{t.name} {lang}: "
            log.warning(
                "%s%d of %d questions have no prediction and score 0",
                where,
                n_missing,
                len(squad.as_gold_list(gold)),
            )
        if t.metric == "mlqa":
            return mlqa.mlqa_scores(gold, predictions, lang)
        return squad.squad_scores(gold, predictions)
    if t.metric == "bucc_f1":
        return bucc.bucc_f1(gold, predictions)
    raise ConfigError(
        f"task {t.name} has metric {t.metric!r}; the scorer knows {', '.join(SCORABLE_METRICS)}"
    )


def task_score(task: Task | str, languages: Mapping[str, Mapping[str, float]]) -> float | None:
    """The task's number from per-language metrics (evaluate.py's ``avg_metric``); None if empty."""
    t = get_task(task)
    if not languages:
        return None
    return kind_ops(t).summary(average_metrics(languages))


def average_metrics(languages: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Metric → mean over languages (each metric over the languages that have it)."""
    values: dict[str, list[float]] = {}
    for metrics in languages.values():
        for name, value in metrics.items():
            values.setdefault(name, []).append(value)
    return {name: sum(v) / len(v) for name, v in values.items()}


def xtreme_score(task_scores: Mapping[str, float | None], complete: bool = True) -> float | None:
    """Unweighted mean of the nine XTREME task scores; None unless all nine are there (and complete)."""
    if not complete or any(task_scores.get(name) is None for name in XTREME_TASKS):
        return None
    return sum(float(task_scores[name]) for name in XTREME_TASKS) / len(XTREME_TASKS)  # type: ignore[arg-type]


@dataclass
class TaskResult:
    """One task's scores with what the table needs beyond the JSON (missing files, notes)."""

    task: str
    languages: dict[str, dict[str, float]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    unanswered: dict[str, int] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)

    @property
    def score(self) -> float | None:
        return task_score(self.task, self.languages)

    @property
    def partial(self) -> bool:
        return bool(self.missing)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"languages": self.languages, "score": self.score}
        if self.missing:
            out["missing"] = list(self.missing)
        return out


class _LabelTree:
    """Gold from XTREME label files: ``label_dir/{task}/test-{lang}.tsv|json``."""

    def __init__(self, label_dir: Path) -> None:
        self.root = label_dir

    def describe(self, task: Task) -> str:
        return str(self.root / task.name)

    def has_task(self, task: Task) -> bool:
        return (self.root / task.name).is_dir()

    def languages(self, task: Task) -> set[str]:
        return set(layout.languages_in(self.root, task))

    def gold(self, task: Task, lang: str) -> tuple[Any, Path]:
        path = layout.label_path(self.root, task, lang)
        return layout.read_labels(path, task), path


class _DataTree:
    """Gold straight from a data folder through the readers (any layout they know)."""

    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir

    def describe(self, task: Task) -> str:
        return f"{task.name} {task.score_split} files below {self.root}"

    def has_task(self, task: Task) -> bool:
        return bool(self.languages(task))

    def languages(self, task: Task) -> set[str]:
        return set(readers.available(task, self.root).get(task.score_split, []))

    def gold(self, task: Task, lang: str) -> tuple[Any, Path | None]:
        examples = readers.read_examples(task, self.root, task.score_split, lang)
        path = readers.find_file(task, self.root, task.score_split, lang)
        if layout.file_format(task) == layout.QA:
            # Readable for prediction, but not gold: XTREME blanks hidden test answers ("text": "").
            for ex in examples:
                if not ex.answers:
                    raise DataFormatError(
                        path or self.root, None, "at least one gold answer", "none",
                        at=f"question {ex.id}",
                        hint="a test file with hidden answers cannot be scored",
                    )
        return layout.gold_from_examples(task, examples), path


def _require_folder(root: Path, what: str) -> None:
    if root.exists() and not root.is_dir():
        raise MissingDataError(f"{root}: expected a {what} folder, found a file")
    if not root.is_dir():
        raise MissingDataError(f"{what} folder {root} does not exist")


def _gold_source(
    label_dir: str | Path | None, data_dir: str | Path | None
) -> _LabelTree | _DataTree:
    if (label_dir is None) == (data_dir is None):
        raise ConfigError("give exactly one gold source: a label folder or a data folder")
    root = Path(label_dir if label_dir is not None else data_dir)  # type: ignore[arg-type]
    _require_folder(root, "label" if label_dir is not None else "data")
    return _LabelTree(root) if label_dir is not None else _DataTree(root)


def score_task_files(
    pred_dir: str | Path,
    label_dir: str | Path | None,
    task: Task | str,
    *,
    seqeval_mode: str = DEFAULT_SEQEVAL_MODE,
    data_dir: str | Path | None = None,
) -> TaskResult:
    """Score every language of ``task`` that has both a prediction file and gold.

    Gold comes from ``label_dir`` (XTREME label files) or, when that is None, from ``data_dir``
    through the readers (the task's scored split, e.g. TyDiQA's dev files).
    """
    return _score_task(Path(pred_dir), _gold_source(label_dir, data_dir), get_task(task), seqeval_mode)


def _score_task(
    pred_dir: Path, source: _LabelTree | _DataTree, t: Task, seqeval_mode: str
) -> TaskResult:
    result = TaskResult(task=t.name)
    present_pred = set(layout.languages_in(pred_dir, t))
    present_gold = source.languages(t)
    result.ignored = sorted((present_pred | present_gold) - set(t.languages))
    for lang in t.languages:  # the registry's (sorted) languages, like evaluate.py's TASK2LANGS
        if lang not in present_pred or lang not in present_gold:
            result.missing.append(lang)
            continue
        pfile = layout.prediction_path(pred_dir, t, lang)
        gold, lfile = source.gold(t, lang)
        predictions = layout.read_predictions(pfile, t)
        if layout.file_format(t) == layout.QA:
            n_missing = len(squad.unanswered(gold, predictions))
            if n_missing:
                result.unanswered[lang] = n_missing
        result.languages[lang] = score_language(
            t,
            lang,
            gold,
            predictions,
            seqeval_mode=seqeval_mode,
            prediction_file=pfile,
            label_file=lfile,
        )
    return result


def _resolve_tasks(
    pred_dir: Path, source: _LabelTree | _DataTree, tasks: Iterable[str] | None
) -> list[Task]:
    if tasks is None:
        found = [
            get_task(n)
            for n in XTREME_TASKS
            if (pred_dir / n).is_dir() and source.has_task(get_task(n))
        ]
        if not found:
            raise MissingDataError(
                f"no XTREME task has both predictions in {pred_dir} and gold in {source.root} "
                f"(expected folders named {', '.join(XTREME_TASKS)} holding test-{{lang}}.tsv|json)"
            )
        return found
    out = []
    for name in tasks:
        t = get_task(name)
        if not (pred_dir / t.name).is_dir():
            raise MissingDataError(
                f"no predictions for task {t.name}: folder {pred_dir / t.name} does not exist"
            )
        if not source.has_task(t):
            raise MissingDataError(f"no gold for task {t.name}: nothing at {source.describe(t)}")
        out.append(t)
    return out


def score_tree(
    pred_dir: str | Path,
    label_dir: str | Path | None = None,
    tasks: Iterable[str] | None = None,
    *,
    seqeval_mode: str = DEFAULT_SEQEVAL_MODE,
    data_dir: str | Path | None = None,
) -> list[TaskResult]:
    """TaskResults for the requested tasks (default: every XTREME task with predictions and gold).

    Gold comes from ``label_dir`` (XTREME label files) or ``data_dir`` (through the readers).
    """
    pred_dir = Path(pred_dir)
    _require_folder(pred_dir, "prediction")
    source = _gold_source(label_dir, data_dir)
    return [
        _score_task(pred_dir, source, t, seqeval_mode)
        for t in _resolve_tasks(pred_dir, source, tasks)
    ]


def results_to_json(results: Iterable[TaskResult]) -> dict[str, Any]:
    """The ``xstilts score --json`` shape for a list of task results."""
    results = list(results)
    scores = {r.task: r.score for r in results}
    complete = all(not r.partial for r in results)
    return {
        "tasks": {r.task: r.to_json() for r in results},
        "xtreme_score": xtreme_score(scores, complete=complete),
    }


def score_directory(
    pred_dir: str | Path,
    label_dir: str | Path | None = None,
    tasks: Iterable[str] | None = None,
    *,
    seqeval_mode: str = DEFAULT_SEQEVAL_MODE,
    data_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Score a prediction tree against a label tree (or a data folder read through the readers);
    returns the ``xstilts score --json`` dict."""
    return results_to_json(
        score_tree(pred_dir, label_dir, tasks, seqeval_mode=seqeval_mode, data_dir=data_dir)
    )


__all__ = [
    "TaskResult",
    "average_metrics",
    "results_to_json",
    "score_directory",
    "score_language",
    "score_task_files",
    "score_tree",
    "task_score",
    "xtreme_score",
]
