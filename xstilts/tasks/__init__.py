"""The task registry: XTREME targets, the paper's intermediate tasks, code tasks."""

from xstilts.tasks.base import Task, TaskKind, TaskRegistry

REGISTRY = TaskRegistry()

from xstilts.tasks import xtreme  # noqa: E402  (registers the XTREME targets)

get_task = REGISTRY.get

__all__ = ["REGISTRY", "Task", "TaskKind", "TaskRegistry", "get_task", "xtreme"]
