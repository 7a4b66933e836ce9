"""Errors a user can cause. Each carries enough context (file, row, field, value, expectation) to fix
the input without reading a traceback; the CLI prints them as one clear message and exits non-zero."""

from __future__ import annotations

from pathlib import Path


class TaskTuneError(Exception):
    """Base class: a problem the user can fix. The CLI prints ``str(err)`` without a traceback."""


class TaskFileError(TaskTuneError):
    """The task file itself is wrong (unknown field, bad value, duplicate label...)."""

    def __init__(self, path: Path | str, problems: list[str]):
        self.path = Path(path)
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{self.path}: invalid task file\n{lines}")


class DataError(TaskTuneError):
    """A data source is wrong: missing file, empty split, malformed row, unknown label, ..."""

    def __init__(
        self,
        message: str,
        *,
        source: str | Path | None = None,
        row: int | None = None,
        line: int | None = None,
        field: str | None = None,
        value: object = None,
        expected: str | None = None,
    ):
        self.source, self.row, self.line, self.field = source, row, line, field
        self.value, self.expected = value, expected
        where = []
        if source is not None:
            where.append(str(source))
        if line is not None:
            where.append(f"line {line}")
        elif row is not None:
            where.append(f"row {row}")
        if field is not None:
            where.append(f"field {field!r}")
        text = ", ".join(where) + ": " + message if where else message
        if value is not None:
            shown = repr(value)
            text += f" (got {shown[:80] + '...' if len(shown) > 80 else shown})"
        if expected:
            text += f"; expected {expected}"
        super().__init__(text)


class BackboneError(TaskTuneError):
    """A backbone cannot be found, prepared or loaded (unknown name, offline hub id, bad folder)."""
