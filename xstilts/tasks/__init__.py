"""The task registry: XTREME targets, the paper's intermediate tasks, code tasks."""

from xstilts.tasks.base import Task, TaskKind, TaskRegistry

REGISTRY = TaskRegistry()

from xstilts.tasks import code, intermediate, xtreme  # noqa: E402  (each registers its tasks)

get_task = REGISTRY.get

__all__ = ["REGISTRY", "Task", "TaskKind", "TaskRegistry", "code", "get_task", "intermediate", "xtreme"]
