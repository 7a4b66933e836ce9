"""A prompt, as data: instruction, input template, response cue, label words, demonstrations and
calibration. YAML files of prompt variants are these fields; every template is checked against the
sandbox when the config is built, so a template that reaches for ``__class__`` is refused up front."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tasktune.errors import TaskFileError
from tasktune.sandbox import check_prompt_template

Calibration = Literal["none", "contextual", "mean"]


class PromptConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "default"
    # Jinja templates (sandboxed). Variables: description, labels (names), label_words (first word of
    # each label), label_list ("a, b or c"); the input template also gets text and text_pair.
    instruction: str = "{{ description or 'Classify the text.' }} Answer with one of: {{ label_list }}."
    input_template: str = "Text: {{ text }}"
    cue: str = "Answer:"
    separator: str = "\n\n"
    # Label words per label name; None uses the task's label words (or its label names).
    label_words: dict[str, tuple[str, ...]] | None = None
    # Whether a label word gets a leading space: BPE vocabularies spell " positive" and "positive"
    # differently. "auto" adds one when the prompt ends in a non-space character.
    space_prefix: Literal["auto", "always", "never"] = "auto"
    chat: bool | None = None  # None: use the model's chat template when it has one
    demos_per_class: int = Field(default=0, ge=0, le=32)
    demo_selection: Literal["random", "knn"] = "random"
    demo_order: Literal["fixed", "sampled"] = "fixed"
    calibration: Calibration = "none"
    calibration_texts: int = Field(default=400, ge=1, description="unlabelled texts for mean calibration")
    seed: int = 13

    @field_validator("instruction", "input_template", "cue", "separator")
    @classmethod
    def _safe_template(cls, v: str, info) -> str:
        check_prompt_template(v, is_input=info.field_name == "input_template")
        return v

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def load_prompt(path: Path | str) -> PromptConfig:
    path = Path(path)
    if not path.is_file():
        raise TaskFileError(path, ["prompt file not found"])
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        return PromptConfig.model_validate(data)
    except yaml.YAMLError as err:
        raise TaskFileError(path, [f"not valid YAML: {err}"]) from None
    except ValidationError as err:
        problems = [f"field {'.'.join(map(str, e['loc']))!r}: {e['msg']}" for e in err.errors()]
        raise TaskFileError(path, problems) from None
