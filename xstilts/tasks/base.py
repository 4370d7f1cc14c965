"""What a task is: one small declarative value per task, kept in a registry."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from xstilts.errors import ConfigError
from xstilts.tasks.sources import TaskSource


class TaskKind(str, Enum):
    """The axis that carries the weight: heads, features and metrics belong to the kind."""

    SENTENCE_PAIR = "sentence-pair"
    TAGGING = "tagging"
    QA = "qa"
    MULTIPLE_CHOICE = "multiple-choice"
    RETRIEVAL = "retrieval"
    GENERATION = "generation"
    MLM = "mlm"


@dataclass(frozen=True)
class Task:
    """A task: its kind, its languages per split, its labels, its metric and where its files are.

    ``files`` maps a split to file-name patterns relative to a data directory. A pattern may
    use ``{lang}`` (ISO 639-1, as XTREME names languages), ``{lang3}`` (the ISO 639-3 code that
    LASER's Tatoeba files use) and ``{split}``. Patterns are searched anywhere below the data
    directory, so both XTREME's download layout and the source layouts are found.
    """

    name: str
    kind: TaskKind
    splits: dict[str, tuple[str, ...]]
    metric: str
    files: dict[str, tuple[str, ...]]
    labels: tuple[str, ...] | None = None
    description: str = ""
    family: str = "xtreme"  # xtreme | xtreme-r (targets) | nlu | code
    reader: str | None = None  # reader name when it is not implied by the kind
    source: TaskSource | None = None  # where `xstilts data get` and the hub loaders fetch it
    score_split: str = "test"
    train_examples: int | None = None  # about how many English training examples (compute estimates)
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def languages(self) -> tuple[str, ...]:
        """The evaluation languages (of the split that is scored)."""
        return self.splits.get(self.score_split, ())

    @property
    def hub(self) -> str | None:
        """The hub dataset the task mostly comes from, if any."""
        return self.source.hub_repo if self.source is not None else None

    @property
    def has_training_data(self) -> bool:
        return "train" in self.splits


TARGET_FAMILIES = ("xtreme", "xtreme-r")


class TaskRegistry:
    """Name → task. Entries are registered by the modules of :mod:`xstilts.tasks`."""

    def __init__(self) -> None:
        self._tasks: dict[str, Task] = {}

    def register(self, task: Task) -> Task:
        if task.name in self._tasks:
            raise ValueError(f"task {task.name!r} is registered twice")
        self._tasks[task.name] = task
        return task

    def get(self, name: "str | Task") -> Task:
        """The task of that name (a Task is returned as it is, so callers take either)."""
        if isinstance(name, Task):
            return name
        try:
            return self._tasks[name]
        except KeyError:
            allowed = ", ".join(sorted(self._tasks))
            raise ConfigError(f"unknown task {name!r}; known tasks: {allowed}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def __iter__(self):
        return iter(self._tasks.values())

    def names(self, family: str | None = None) -> list[str]:
        return [t.name for t in self._tasks.values() if family is None or t.family == family]

    def targets(self) -> list[str]:
        """The target tasks: XTREME's nine, then those from XTREME-R."""
        return [t.name for t in self._tasks.values() if t.family in TARGET_FAMILIES]


# The one registry; xstilts.tasks.code, .intermediate and .xtreme add their tasks to it.
REGISTRY = TaskRegistry()
