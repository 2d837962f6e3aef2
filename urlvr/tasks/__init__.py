"""Tasks: problem generators and readers with answer extraction, gold checks and verifiers.

Importing this package registers the built-in tasks: ``arithmetic``, ``linear``, ``countdown`` and
``jsonl`` (benchmark files). Build one with :func:`get_task`; :mod:`urlvr.tasks.base` holds the
interface.
"""

from urlvr.tasks.base import (SPLITS, Example, Problem, Task, boxed, extract_boxed, get_task, get_task_class,
                              register_task, task_names)
from urlvr.tasks import arithmetic, countdown, jsonl, linear  # noqa: F401,E402  (register the tasks)

__all__ = [
    "Problem", "Example", "Task", "SPLITS", "register_task", "get_task", "get_task_class", "task_names",
    "extract_boxed", "boxed",
]
