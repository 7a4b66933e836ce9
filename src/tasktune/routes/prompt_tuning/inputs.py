"""What a soft prompt is put in front of: the task's input template and response cue (no
instruction — the soft prompt takes its place — and no chat template), and the label tokens read
at the answer position. Prompt-based fine-tuning passes route 1's full prompt config instead."""

from __future__ import annotations

from collections.abc import Sequence

from tasktune.errors import TaskTuneError
from tasktune.routes.prompting.config import PromptConfig
from tasktune.routes.prompting.template import PromptRenderer, encode
from tasktune.task.data import Example
from tasktune.task.spec import TaskSpec


class SoftPromptInputs:
    """Renders and encodes examples of one task; knows the task's label token ids."""

    def __init__(self, task: TaskSpec, tokenizer, max_tokens: int = 256, config: PromptConfig | None = None):
        hint = task.prompt
        config = config or PromptConfig(
            name="soft-prompt-input",
            instruction="",
            input_template=hint.input_template or "Text: {{ text }}",
            cue=hint.cue or "Answer:",
            chat=False,
        )
        self.config = config
        self.task, self.tokenizer, self.max_tokens = task, tokenizer, max_tokens
        self.renderer = PromptRenderer(config, task, tokenizer)
        prefix = self.renderer.answer_prefix(self.renderer.render(Example("probe", 0)).text)
        self.label_token_ids = []
        for words in self.renderer.words:
            ids = tokenizer(prefix + words[0], add_special_tokens=False)["input_ids"]
            self.label_token_ids.append(ids[0])
        if len(set(self.label_token_ids)) != len(self.label_token_ids):
            raise TaskTuneError(
                f"task {task.name!r}: the label words {[w[0] for w in self.renderer.words]} start with the "
                "same token, so the answer position cannot tell the labels apart; choose label words "
                "that start differently"
            )

    def encode(self, batch: Sequence[Example]) -> list[list[int]]:
        rows = []
        for e in batch:
            ids = encode(self.tokenizer, self.renderer.render(e))
            # Over-long inputs: keep the end (the cue sits there); the policy is stated, not silent.
            rows.append(ids[-self.max_tokens :])
        return rows
