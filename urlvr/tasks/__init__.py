"""Tasks: problem generators and readers with answer extraction, gold checks and verifiers.

Importing this package registers the built-in tasks: ``arithmetic``, ``linear``, ``countdown`` and
``jsonl`` (benchmark files). Build one with :func:`get_task`; :mod:`urlvr.tasks.base` holds the
interface.
"""

from urlvr.tasks import arithmetic, countdown, files, linear  # noqa: F401  (register the tasks)
from urlvr.tasks.base import (
    SPLITS,
    Example,
    Problem,
    Task,
    boxed,
    extract_boxed,
    get_task,
    register_task,
    task_names,
)

__all__ = [
    "Problem", "Example", "Task", "SPLITS", "register_task", "get_task", "task_names", "extract_boxed",
    "boxed",
]
