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


class DataErrors(DataError):
    """Several bad rows of one split: the first's details (``row``, ``field``, ...) as a DataError, the
    message lists up to ``SHOWN`` of them and says how many there are, so one pass over a file finds
    what to fix (``problems`` holds them all)."""

    SHOWN = 10

    def __init__(self, problems: list[DataError], *, stopped: bool = False):
        """``stopped``: the check gave up counting at ``len(problems)``."""
        first = problems[0]
        super().__init__(
            "",
            source=first.source,
            row=first.row,
            line=first.line,
            field=first.field,
            value=first.value,
            expected=first.expected,
        )
        self.problems = problems
        more = len(problems) - self.SHOWN
        count = f"{len(problems)} or more" if stopped else f"{len(problems)}"
        lines = [f"{count} bad rows in {first.source}:"] + [f"  {p}" for p in problems[: self.SHOWN]]
        if more > 0:
            lines.append(f"  ... and {more} more")
        self.args = ("\n".join(lines),)

    def __str__(self) -> str:
        return self.args[0]


class BackboneError(TaskTuneError):
    """A backbone cannot be found, prepared or loaded (unknown name, offline hub id, bad folder)."""
