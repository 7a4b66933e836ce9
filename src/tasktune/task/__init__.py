"""Task definition (``task.yaml``), data loading and evaluation protocols."""

from tasktune.task.data import Example, Split, load_split, load_splits
from tasktune.task.spec import DataSource, Label, TaskSpec, load_task, parse_task

__all__ = [
    "DataSource",
    "Example",
    "Label",
    "Split",
    "TaskSpec",
    "load_split",
    "load_splits",
    "load_task",
    "parse_task",
]
