"""The task registry: XTREME targets, the paper's intermediate tasks, code tasks."""

from xstilts.tasks import code, intermediate, xtreme  # each registers its tasks
from xstilts.tasks.base import REGISTRY, Task, TaskKind, TaskRegistry

get_task = REGISTRY.get

__all__ = ["REGISTRY", "Task", "TaskKind", "TaskRegistry", "code", "get_task", "intermediate", "xtreme"]
