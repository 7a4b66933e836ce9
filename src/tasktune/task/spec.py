"""The task definition: ``task.yaml`` → a validated, immutable :class:`TaskSpec`.

YAML is only a serialisation of these models; every field is typed and checked, unknown fields are
refused, and errors name the file, the field path and the bad value.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tasktune.errors import TaskFileError
from tasktune.sandbox import check_prompt_template

NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
_NAME_RE = re.compile(NAME_PATTERN)
FORMATS = ("jsonl", "csv", "parquet")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Label(_Strict):
    """One class: its name in the data, a readable description and the words a prompt may use."""

    name: Annotated[str, Field(min_length=1, max_length=64)]
    description: str | None = None
    words: tuple[str, ...] = ()

    @field_validator("name")
    @classmethod
    def _no_padding(cls, v: str) -> str:
        if v != v.strip():
            raise ValueError(f"label name {v!r} has leading or trailing spaces")
        return v

    @field_validator("words")
    @classmethod
    def _words_non_empty(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if any(not w.strip() for w in v):
            raise ValueError("label words must be non-empty strings")
        return v

    @property
    def readable(self) -> str:
        return self.description or self.name

    @property
    def label_words(self) -> tuple[str, ...]:
        """The words a verbalizer uses; the label name itself when none are given."""
        return self.words or (self.name,)


class DataSource(_Strict):
    """Where one split comes from: a local file (relative to the task file) or a hub dataset.

    ``columns`` maps tasktune's names (``text``, ``text_pair``, ``label``) to the source's column
    names, so a file whose text column is called ``sentence`` needs no rewriting.
    """

    path: str | None = None
    hf: str | None = None
    format: Literal["jsonl", "csv", "parquet"] | None = None
    subset: str | None = None
    split: str | None = None
    columns: dict[Literal["text", "text_pair", "label"], str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _exactly_one_origin(self) -> DataSource:
        if (self.path is None) == (self.hf is None):
            raise ValueError("give exactly one of 'path' (a local file) or 'hf' (a hub dataset name)")
        if self.hf is not None and self.format is not None:
            raise ValueError("'format' applies to local files only")
        if self.path is not None and (self.subset or self.split):
            raise ValueError("'subset' and 'split' apply to hub datasets only")
        return self

    def resolved_format(self) -> str | None:
        if self.path is None:
            return None
        if self.format:
            return self.format
        suffix = Path(self.path).suffix.lower().lstrip(".")
        return {"jsonl": "jsonl", "json": "jsonl", "ndjson": "jsonl", "csv": "csv", "parquet": "parquet"}.get(
            suffix
        )

    def describe(self) -> str:
        if self.hf is not None:
            parts = [f"hf:{self.hf}"] + ([self.subset] if self.subset else [])
            return "/".join(parts) + (f"[{self.split}]" if self.split else "")
        return str(self.path)


class Constraints(_Strict):
    """What the user can afford; the recommendation honours these."""

    max_latency_ms: Annotated[float, Field(gt=0)] | None = None
    max_trainable_params: Annotated[int, Field(gt=0)] | None = None
    max_artifact_bytes: Annotated[int, Field(gt=0)] | None = None
    label_budget: Annotated[int, Field(gt=0)] | None = None


class PromptHint(_Strict):
    """The task author's wording for prompts (all optional, jinja templates in the sandbox).

    Zero-shot prompting uses it as is — no labelled example is needed to choose it — and the
    prompt search tries it next to generic variants.
    """

    instruction: str | None = None
    input_template: str | None = None
    cue: str | None = None

    @field_validator("instruction", "input_template", "cue")
    @classmethod
    def _safe(cls, v: str | None, info) -> str | None:
        if v is not None:
            check_prompt_template(v, is_input=info.field_name == "input_template")
        return v


class TaskSpec(_Strict):
    """A classification task: fields, labels, data per split, metric, constraints and seed."""

    name: str
    description: str | None = None
    text_field: str = "text"
    text_pair_field: str | None = None
    label_field: str = "label"
    labels: Annotated[tuple[Label, ...], Field(min_length=2)]
    data: dict[str, DataSource]
    metric: Literal["accuracy", "macro_f1"] = "accuracy"
    constraints: Constraints = Field(default_factory=Constraints)
    prompt: PromptHint = Field(default_factory=PromptHint)
    seed: int = 13
    # The folder the task file lives in; relative data paths resolve against it. Not part of the YAML.
    base_dir: Path = Field(default=Path("."), exclude=True)

    @field_validator("name")
    @classmethod
    def _name_pattern(cls, v: str) -> str:
        if not _NAME_RE.match(v):
            raise ValueError(f"task name {v!r} must match {NAME_PATTERN} (lower case, digits, '._-')")
        return v

    @field_validator("labels", mode="before")
    @classmethod
    def _labels_from_strings(cls, v: object) -> object:
        # `labels: [negative, positive]` is the short form of `[{name: negative}, {name: positive}]`.
        if isinstance(v, list | tuple):
            return [{"name": x} if isinstance(x, str) else x for x in v]
        return v

    @field_validator("labels")
    @classmethod
    def _unique_labels(cls, v: tuple[Label, ...]) -> tuple[Label, ...]:
        seen: dict[str, int] = {}
        for i, label in enumerate(v):
            key = label.name.casefold()
            if key in seen:
                raise ValueError(
                    f"duplicate label name {label.name!r} (labels {seen[key]} and {i}; names must differ "
                    "ignoring case)"
                )
            seen[key] = i
        return v

    @field_validator("data")
    @classmethod
    def _splits(cls, v: dict[str, DataSource]) -> dict[str, DataSource]:
        if "train" not in v and "test" not in v:
            raise ValueError("define at least a 'train' or a 'test' split")
        for split in v:
            if not _NAME_RE.match(split):
                raise ValueError(f"split name {split!r} must match {NAME_PATTERN}")
        return v

    # --- conveniences -------------------------------------------------------------------------
    @property
    def label_names(self) -> list[str]:
        return [label.name for label in self.labels]

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    def label_index(self) -> dict[str, int]:
        return {label.name: i for i, label in enumerate(self.labels)}

    def resolve(self, source: DataSource) -> Path:
        assert source.path is not None
        p = Path(source.path).expanduser()
        return p if p.is_absolute() else (self.base_dir / p)

    def definition(self) -> dict:
        """The task as data (without where it was read from)."""
        return self.model_dump(mode="json", exclude={"base_dir"}, exclude_defaults=False)

    def spec_hash(self) -> str:
        """sha256 of the canonical task definition: what the task *is*, not where its file lies."""
        blob = json.dumps(self.definition(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    def inputs_hash(self) -> str:
        """sha256 of what a measured cell depends on: the fields read, the labels (names, words,
        descriptions), the metric and the prompt hints. Left out: the name and description, the
        constraints (they rule cells in or out, they change no measurement), the default seed (a cell
        names its own) and the data sources (a result keeps its data's content hashes instead, so a
        moved file is the same data)."""
        kept = {k: v for k, v in self.definition().items() if k not in _NOT_INPUTS}
        blob = json.dumps(kept, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()


_NOT_INPUTS = frozenset({"name", "description", "constraints", "seed", "data"})


def _format_validation_error(err: ValidationError) -> list[str]:
    problems = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            problems.append(f"unknown field {loc!r}")
            continue
        msg = e["msg"].removeprefix("Value error, ")
        value = e.get("input")
        shown = "" if isinstance(value, dict | list) or value is None else f" (got {value!r})"
        problems.append(f"field {loc!r}: {msg}{shown}")
    return problems


def parse_task(data: object, *, source: Path | str = "<task>", base_dir: Path | None = None) -> TaskSpec:
    """Validate a task given as a mapping (already parsed YAML)."""
    if not isinstance(data, dict):
        raise TaskFileError(
            source, [f"expected a mapping of fields at the top level, got {type(data).__name__}"]
        )
    try:
        spec = TaskSpec.model_validate(data)
    except ValidationError as err:
        raise TaskFileError(source, _format_validation_error(err)) from None
    if base_dir is not None:
        spec = spec.model_copy(update={"base_dir": base_dir})
    return spec


def load_task(path: Path | str) -> TaskSpec:
    """Read and validate ``task.yaml``. Data files are not opened here (see :mod:`tasktune.task.data`)."""
    path = Path(path)
    if not path.is_file():
        raise TaskFileError(path, ["file not found" if not path.exists() else "not a regular file"])
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise TaskFileError(path, [f"not valid YAML: {err}"]) from None
    except UnicodeDecodeError as err:
        raise TaskFileError(path, [f"not UTF-8 text: {err}"]) from None
    return parse_task(data, source=path, base_dir=path.resolve().parent)
