"""One operations object per task kind: what the kind declares, and what each layer does for it.

A :class:`KindOps` is made once per :class:`TaskKind`, here, and holds two things:

* **facts** every layer may read: what an example counts as, the default reader and maximum
  length, the XTREME submission format, the default phase-1 formulation, whether the kind has a
  trained head (and whether that head reads every token), what an example's gold is, how a
  language's metrics become the one number that enters the XTREME score, and the kind's default
  hyperparameters (phase 2, and what it changes in phase 1);
* **operations**, each implemented by the layer it belongs to and registered there with
  :meth:`KindOps.implements` (so imports still run one way: a layer registers into this object,
  it never imports upward)::

      hub_examples xstilts.data.hub          a hub table's rows -> examples
      featurize    xstilts.data.features     examples -> model features
      head         xstilts.models.heads      the head: its module and what its logits become
      decode       xstilts.evaluation.predict  model outputs -> predictions
      score        xstilts.evaluation.metrics_nlu  predictions -> the kind's own metric
      trivial      xstilts.evaluation.trivial  the no-skill reference

Code that needs a kind's behaviour asks ``kind_ops(task).featurize(...)`` instead of branching
on the kind; a new kind is one entry in :data:`KINDS` plus one registered function per operation
it supports (``tests/tasks/test_kinds.py`` lists what each kind must provide).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from xstilts.errors import ConfigError
from xstilts.tasks.base import REGISTRY, Task, TaskKind

# Where each operation is implemented (and so registered): the message when one is missing.
OPERATIONS: dict[str, str] = {
    "hub_examples": "xstilts.data.hub",
    "featurize": "xstilts.data.features",
    "head": "xstilts.models.heads",
    "decode": "xstilts.evaluation.predict",
    "score": "xstilts.evaluation.metrics_nlu",
    "trivial": "xstilts.evaluation.trivial",
}


def _f1_or_accuracy(metrics: Mapping[str, float]) -> float | None:
    for key in ("f1", "accuracy"):
        if key in metrics:
            return metrics[key]
    return None


def _mean_em_f1(metrics: Mapping[str, float]) -> float | None:
    """XTREME's QA number: the mean of exact match and F1 (evaluate.py's ``avg_metric``)."""
    if "exact_match" in metrics and "f1" in metrics:
        return (metrics["exact_match"] + metrics["f1"]) / 2
    return _f1_or_accuracy(metrics)


@dataclass
class KindOps:
    """What one task kind is and does; see the module docstring."""

    kind: TaskKind
    unit: str  # what one example counts as, in reports ("pairs", "sentences")
    gold: Callable[[Any], Any]  # an example's gold (None: unlabelled)
    reader: str | None = None  # the reader of a task that names none (xstilts.data.readers)
    submission: str | None = None  # XTREME's prediction file format (xstilts.evaluation.layout)
    formulation: str = "head"  # the default phase-1 formulation (xstilts.train.formulations)
    max_length: int | None = None  # the default maximum length in tokens (XTREME's settings)
    has_head: bool = False  # an encoder plus a trained head (phase 2 fine-tunes it)
    encoder_only: bool = False  # scored from the encoder's embeddings: no head, no phase 2
    token_level: bool = False  # the head reads every token (otherwise the first one)
    label_set: bool = False  # the head's outputs are the task's labels (their number is needed)
    bitext: bool = False  # a file holds one side of a bitext (LASER's pair files: English beside it)
    trivial_reads_training: bool = False  # the no-skill reference learns from the English training data
    tokens_per_example: int = 64  # about how many tokens one example is (compute estimates)
    summary: Callable[[Mapping[str, float]], float | None] = _f1_or_accuracy  # metrics -> the number in the XTREME score
    labels_of: Callable[[Any], Iterable[str]] = lambda example: ()  # label values an example holds
    # default hyperparameters: fine-tuning on the target (phase 2; XTREME's reference scripts, see
    # xstilts.study.run_config), and what the kind changes in phase 1's (jiant's recipe)
    target_defaults: dict[str, Any] = field(default_factory=dict)
    intermediate_defaults: dict[str, Any] = field(default_factory=dict)
    operations: dict[str, Callable[..., Any]] = field(default_factory=dict, repr=False)

    def implements(self, operation: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator: register the function (or object) as this kind's ``operation``."""
        if operation not in OPERATIONS:
            raise ValueError(f"unknown kind operation {operation!r}; known: {', '.join(OPERATIONS)}")

        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            present = self.operations.get(operation)
            if present is not None and getattr(present, "__qualname__", None) != getattr(fn, "__qualname__", None):
                raise ValueError(f"{self.kind.value}: {operation!r} is registered twice")
            self.operations[operation] = fn
            return fn

        return register

    def has(self, operation: str) -> bool:
        return operation in self.operations

    def __getattr__(self, operation: str) -> Callable[..., Any]:
        # only reached for names that are not fields: the registered operations
        if operation.startswith("__") or operation not in OPERATIONS:
            raise AttributeError(operation)
        try:
            return self.__dict__["operations"][operation]
        except KeyError:
            raise ConfigError(
                f"task kind {self.kind.value!r} has no {operation!r} operation "
                f"(kinds register it in {OPERATIONS[operation]})"
            ) from None


def _label(example: Any) -> Any:
    return getattr(example, "label", None)


def _one_label(example: Any) -> Iterable[str]:
    label = getattr(example, "label", None)
    return () if label is None else (label,)


def _fine_tuning(**settings: Any) -> dict[str, Any]:
    """XTREME's phase-2 settings for a base-size encoder: 32 examples a step, no warm-up, packed rows."""
    return dict(learning_rate=2e-5, batch_size=8, grad_accum=4, **settings, pack_sequences=True)


KINDS: dict[TaskKind, KindOps] = {
    ops.kind: ops
    for ops in (
        KindOps(TaskKind.SENTENCE_PAIR, unit="pairs", gold=_label, reader="pair-tsv", submission="label",
                max_length=128, has_head=True, label_set=True, trivial_reads_training=True, labels_of=_one_label,
                tokens_per_example=64,
                target_defaults=_fine_tuning(epochs=5, max_length=128, warmup_ratio=0.0, weight_decay=0.0)),
        KindOps(TaskKind.TAGGING, unit="sentences", gold=lambda ex: ex.tags, reader="tag-tsv", submission="tags",
                max_length=128, has_head=True, token_level=True, label_set=True, trivial_reads_training=True,
                labels_of=lambda ex: ex.tags or (), tokens_per_example=40,
                target_defaults=_fine_tuning(epochs=10, max_length=128, warmup_ratio=0.0, weight_decay=0.0)),
        KindOps(TaskKind.QA, unit="questions", gold=lambda ex: ex.answers, reader="squad", submission="qa",
                max_length=384, has_head=True, token_level=True, summary=_mean_em_f1, tokens_per_example=384,
                target_defaults=dict(learning_rate=3e-5, batch_size=4, grad_accum=8, epochs=3, max_length=384,
                                     doc_stride=128, warmup_steps=500, weight_decay=1e-4, pack_sequences=True),
                intermediate_defaults=dict(max_length=384, doc_stride=128)),
        KindOps(TaskKind.MULTIPLE_CHOICE, unit="examples", gold=_label, submission="label", max_length=128,
                has_head=True, trivial_reads_training=True, tokens_per_example=4 * 96,
                target_defaults=_fine_tuning(epochs=5, max_length=128, warmup_ratio=0.0, weight_decay=0.0)),
        # BUCC's pairs or Tatoeba's nearest neighbours, from the encoder alone (no phase 2)
        KindOps(TaskKind.RETRIEVAL, unit="source sentences", gold=lambda ex: ex.gold, reader="tatoeba",
                submission="index", formulation="contrastive", encoder_only=True, bitext=True,
                tokens_per_example=48),
        KindOps(TaskKind.GENERATION, unit="examples", gold=lambda ex: getattr(ex, "target", None),
                formulation="generate", tokens_per_example=96),
        KindOps(TaskKind.MLM, unit="examples", gold=lambda ex: None, formulation="infill", tokens_per_example=128),
    )
}


# The kinds whose model is the encoder plus a task head (xstilts.models.heads builds them).
HEAD_KINDS = tuple(kind for kind, ops in KINDS.items() if ops.has_head)


def resolve_kind(task: Task | TaskKind | str) -> tuple[TaskKind, Task | None]:
    """The kind (and the task, when one was given or named) of a task, a task name or a kind."""
    if isinstance(task, Task):
        return task.kind, task
    if isinstance(task, TaskKind):
        return task, None
    try:
        return TaskKind(task), None
    except ValueError:
        t = REGISTRY.get(task)
        return t.kind, t


def kind_ops(task: Task | TaskKind | str) -> KindOps:
    """The operations object of a task's kind (a Task, a TaskKind, a kind's value or a task name)."""
    return KINDS[resolve_kind(task)[0]]


def submission_format(task: Task) -> str | None:
    """The task's XTREME submission format: its own (``extra["submission"]``) or its kind's."""
    return (task.extra or {}).get("submission") or KINDS[task.kind].submission  # type: ignore[return-value]


def num_choices(task: Task, examples: Iterable[Any] = ()) -> int | None:
    """A multiple-choice task's number of choices: declared (``extra["num_choices"]``) or the first example's."""
    n = (task.extra or {}).get("num_choices")
    if isinstance(n, int):
        return n
    for ex in examples:
        return len(ex.choices)
    return None

