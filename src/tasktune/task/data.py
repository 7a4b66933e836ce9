"""Loading a task's data splits into validated :class:`Example` lists.

Every row is checked against the task (text present and non-empty, label in the label set) and any
problem is reported with the file, the row (and line, for JSON Lines), the field and the value.
JSON Lines — the common case and the benchmark format — is read line by line here because that is the
only way to name the exact line of a malformed row; CSV, Parquet and hub datasets go through
``datasets``, which is built for those formats.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tasktune.errors import DataError, DataErrors
from tasktune.task.spec import DataSource, TaskSpec


@dataclass(frozen=True, slots=True)
class Example:
    """One labelled input. ``label`` is an index into the task's labels; ``row`` is 1-based."""

    text: str
    label: int
    text_pair: str | None = None
    row: int = 0


@dataclass(frozen=True)
class Split:
    """A named, validated list of examples and where they came from."""

    name: str
    source: str
    examples: tuple[Example, ...]

    def __len__(self) -> int:
        return len(self.examples)

    def __iter__(self) -> Iterator[Example]:
        return iter(self.examples)

    @property
    def labels(self) -> np.ndarray:
        return np.fromiter((e.label for e in self.examples), dtype=np.int64, count=len(self.examples))

    def label_counts(self, num_labels: int) -> np.ndarray:
        return np.bincount(self.labels, minlength=num_labels)

    def content_hash(self) -> str:
        return hash_examples(self.examples)


def text_chars(examples: Iterable[Example]) -> list[int]:
    """Characters of each example's text and pair: the stand-in for tokens when batching by length
    (evaluation's length-sorted batches, training's length-grouped steps), no tokenizer needed."""
    return [len(e.text) + len(e.text_pair or "") for e in examples]


def hash_examples(examples: Iterable[Example]) -> str:
    """sha256 over the examples' content (text, pair, label) in order: the identity of a data set."""
    h = hashlib.sha256()
    for e in examples:
        h.update(json.dumps([e.text, e.text_pair, e.label], ensure_ascii=False).encode())
        h.update(b"\n")
    return h.hexdigest()


# --- reading raw rows ---------------------------------------------------------------------------
# Each reader yields (row number, line number or None, record mapping).
Row = tuple[int, int | None, dict[str, Any]]


def _read_jsonl(path: Path) -> Iterator[Row]:
    row = 0
    with path.open("rb") as fh:
        for line_no, raw in enumerate(fh, start=1):
            try:
                # A byte-order mark opens files saved by some Windows editors: not part of the first row.
                line = raw.decode("utf-8-sig" if line_no == 1 else "utf-8")
            except UnicodeDecodeError as err:
                raise DataError(f"not UTF-8 text ({err.reason})", source=path, line=line_no) from None
            if not line.strip():
                continue  # blank lines (e.g. a trailing one) are not rows
            row += 1
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(
                    f"malformed JSON: {err.msg} at column {err.colno}",
                    source=path,
                    line=line_no,
                    expected="one JSON object per line",
                ) from None
            if not isinstance(record, dict):
                raise DataError(
                    f"row is a JSON {type(record).__name__}, not an object",
                    source=path,
                    line=line_no,
                    expected='{"text": ..., "label": ...}',
                )
            yield row, line_no, record


def _read_with_datasets(path: Path, fmt: str) -> Iterator[Row]:
    import datasets

    datasets.disable_progress_bars()
    builder = {"csv": "csv", "parquet": "parquet"}[fmt]
    options: dict[str, Any] = {}
    if fmt == "csv":
        # Every cell as the text it is: pandas would read a review that says "NA" or "null" as missing,
        # "007" as 7, and turn a whole label column into floats (1.0) for one empty cell, blaming rows
        # that are fine. Labels given as numbers are resolved from that text (see _label_of).
        columns = _csv_header(path)
        options = {
            "features": datasets.Features({c: datasets.Value("string") for c in columns}),
            "keep_default_na": False,
        }
    try:
        ds = datasets.load_dataset(
            builder, data_files=str(path), split="train", keep_in_memory=True, **options
        )
    except Exception as err:  # datasets/pandas/pyarrow raise many types; all mean "cannot parse"
        raise DataError(f"cannot read {fmt.upper()} file: {err}", source=path) from None
    # A CSV row's line is its row number + 1 (the header), unless quoted fields span lines.
    for i, record in enumerate(ds, start=1):
        yield i, (i + 1 if fmt == "csv" else None), record


def _csv_header(path: Path) -> list[str]:
    import csv

    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            header = next(csv.reader(fh), None)
    except (UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"cannot read the CSV header: {err}", source=path, line=1) from None
    if not header or len(set(header)) != len(header) or not all(c.strip() for c in header):
        raise DataError(
            "bad CSV header",
            source=path,
            line=1,
            value=header,
            expected="a first line naming each column once, e.g. text,label",
        )
    return header


def _read_hub(source: DataSource, allow_hub: bool) -> tuple[Iterator[Row], list[str] | None]:
    if not allow_hub:
        raise DataError(
            "this split names a hub dataset, which needs the network",
            source=source.describe(),
            expected="local files, or allow the hub explicitly (--allow-hub / allow_hub=True)",
        )
    import datasets

    try:
        ds = datasets.load_dataset(source.hf, source.subset, split=source.split or "train")
    except Exception as err:
        raise DataError(f"cannot load hub dataset: {err}", source=source.describe()) from None
    label_col = source.columns.get("label", "label")
    feature = ds.features.get(label_col)
    class_names = list(feature.names) if isinstance(feature, datasets.ClassLabel) else None
    return ((i, None, r) for i, r in enumerate(ds, start=1)), class_names


# --- validation ---------------------------------------------------------------------------------
def _to_example(
    spec: TaskSpec,
    source: DataSource,
    where: str,
    row: int,
    line: int | None,
    record: dict[str, Any],
    label_index: dict[str, int],
    class_names: list[str] | None,
) -> Example:
    text_col = source.columns.get("text", spec.text_field)
    pair_col = (
        source.columns.get("text_pair", spec.text_pair_field)
        if spec.text_pair_field or ("text_pair" in source.columns)
        else None
    )
    label_col = source.columns.get("label", spec.label_field)

    def fail(message: str, field: str, value: object = None, expected: str | None = None) -> DataError:
        return DataError(
            message, source=where, row=row, line=line, field=field, value=value, expected=expected
        )

    def text_of(col: str) -> str:
        if col not in record:
            raise fail("missing field", col, expected=f"a field named {col!r} (row has {sorted(record)[:8]})")
        value = record[col]
        if value is None:  # e.g. an empty CSV cell or a JSON null
            raise fail("empty text", col, expected="non-empty text")
        if not isinstance(value, str):
            raise fail("text is not a string", col, value)
        if not value.strip():
            raise fail("empty text", col, value, expected="non-empty text")
        return value

    text = text_of(text_col)
    pair = text_of(pair_col) if pair_col else None
    if label_col not in record:
        raise fail("missing field", label_col, expected=f"a field named {label_col!r} holding the label")
    value = record[label_col]
    if class_names is not None and isinstance(value, int) and 0 <= value < len(class_names):
        value = class_names[value]  # a hub ClassLabel: map its index to its own name first
    label = _label_of(value, label_index, cells_are_text=source.resolved_format() == "csv")
    if label is None:
        names = list(label_index)
        expected = f"one of {names}" if isinstance(value, str) and not _is_int(value) else None
        raise fail(
            "unknown label",
            label_col,
            value,
            expected=expected or f"one of {names} or an index 0..{len(names) - 1}",
        )
    return Example(text=text, label=label, text_pair=pair, row=row)


def _is_int(text: str) -> bool:
    return text.strip().lstrip("+-").isdigit()


def _label_of(value: object, label_index: dict[str, int], *, cells_are_text: bool) -> int | None:
    """A raw label's index, or None. A label's name wins: with labels named "1" and "2" (Yelp's stars,
    AG News' classes), 1 is the label named "1", not the one at position 1; and where labels are named by
    numbers, numbers are names only (0 and 1 against labels "1" and "2" would otherwise both read as the
    first label). Otherwise a whole number is a position in the task's labels. A CSV's cells are all
    text, so there "0" is a number."""
    if isinstance(value, bool):
        return None
    name = value if isinstance(value, str) else str(value) if isinstance(value, int) else None
    if name is not None and name in label_index:
        return label_index[name]
    numeric_names = any(_is_int(n) for n in label_index)
    if isinstance(value, str):
        if numeric_names or not (cells_are_text and _is_int(value)):
            return None
        value = int(value)
    if isinstance(value, int) and not numeric_names and 0 <= value < len(label_index):
        return value
    return None


MAX_PROBLEMS = 1000  # bad rows collected before a split's check stops


def load_split(spec: TaskSpec, split: str, *, allow_hub: bool = False) -> Split:
    """Load and validate one split of a task. Every row is checked: one bad row raises its
    :class:`DataError`, several raise :class:`DataErrors` listing them (a file that cannot be parsed
    stops at the place it breaks)."""
    if split not in spec.data:
        raise DataError(f"task {spec.name!r} has no split {split!r}", expected=f"one of {sorted(spec.data)}")
    source = spec.data[split]
    class_names = None
    if source.hf is not None:
        rows, class_names = _read_hub(source, allow_hub)
        where = source.describe()
    else:
        path = spec.resolve(source)
        where = str(path)
        if not path.exists():
            raise DataError("data file not found", source=path, expected=f"the {split!r} split's file")
        if not path.is_file():
            raise DataError("not a regular file", source=path)
        fmt = source.resolved_format()
        if fmt is None:
            raise DataError(
                f"cannot tell the format from the suffix {path.suffix!r}",
                source=path,
                expected="a .jsonl, .csv or .parquet file, or 'format:' in the task file",
            )
        rows = _read_jsonl(path) if fmt == "jsonl" else _read_with_datasets(path, fmt)
    index = spec.label_index()
    examples, problems = [], []
    for row, line, record in rows:
        try:
            examples.append(_to_example(spec, source, where, row, line, record, index, class_names))
        except DataError as err:
            problems.append(err)
            if len(problems) >= MAX_PROBLEMS:  # e.g. a misnamed column: every row is bad, say so soon
                break
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise DataErrors(problems, stopped=len(problems) >= MAX_PROBLEMS)
    examples = tuple(examples)
    if not examples:
        raise DataError(f"split {split!r} is empty", source=where, expected="at least one example")
    return Split(name=split, source=where, examples=examples)


def load_splits(
    spec: TaskSpec, splits: Iterable[str] | None = None, *, allow_hub: bool = False
) -> dict[str, Split]:
    return {name: load_split(spec, name, allow_hub=allow_hub) for name in (splits or spec.data)}
