"""What a soft prompt is put in front of: the task's input template and response cue (no
instruction — the soft prompt takes its place — and no chat template), and the label tokens read
at the answer position. Prompt-based fine-tuning passes route 1's full prompt config instead.

With ``split_prefix`` (the soft prompt initialised *from* route 1's prompt) the full prompt is
rendered and cut at the start of the line that holds the input text: everything before the cut (chat
template opening, system turn, instruction) is constant across examples and becomes the soft prompt's
initial value; the hard tokens are the rest."""

from __future__ import annotations

from collections.abc import Sequence

from tasktune.errors import TaskTuneError
from tasktune.routes.prompting.config import PromptConfig
from tasktune.routes.prompting.template import PromptRenderer, RenderedPrompt, answer_ids, encode_within
from tasktune.task.data import Example
from tasktune.task.spec import TaskSpec
from tasktune.truncation import record


class SoftPromptInputs:
    """Renders and encodes examples of one task; knows the task's label token ids."""

    def __init__(
        self,
        task: TaskSpec,
        tokenizer,
        max_tokens: int = 256,
        config: PromptConfig | None = None,
        *,
        split_prefix: bool = False,
    ):
        config = config or self.template_config(task)
        self.config = config
        self.task, self.tokenizer, self.max_tokens = task, tokenizer, max_tokens
        self.renderer = PromptRenderer(config, task, tokenizer)
        probe = self.renderer.render(Example("probe", 0))
        self.cut = 0
        self.prefix_ids: list[int] = []
        if split_prefix:
            first_input = probe.user_spans[0][0]
            self.cut = probe.text.rfind("\n", 0, first_input) + 1  # the start of the input's line
            self._prefix_text = probe.text[: self.cut]
            # The prefix's ids as they are inside the whole prompt (alone, its trailing "\n\n" would
            # merge into one token that the whole prompt does not have).
            whole = tokenizer(probe.text, add_special_tokens=False, return_offsets_mapping=True)
            k = sum(1 for _, end in whole["offset_mapping"] if end <= self.cut)
            self.prefix_ids = list(whole["input_ids"][:k])
            if not self.prefix_ids:
                raise TaskTuneError(
                    f"task {task.name!r}: the prompt has nothing before the input line to initialise a "
                    "soft prompt from; use another initialisation (labels, text, vocab, random)"
                )
        prefix = self.renderer.answer_prefix(probe.text)
        self.label_token_ids = []
        for words in self.renderer.words:
            ids = answer_ids(tokenizer, probe.text, prefix + words[0])
            self.label_token_ids.append(ids[0])
        if len(set(self.label_token_ids)) != len(self.label_token_ids):
            raise TaskTuneError(
                f"task {task.name!r}: the label words {[w[0] for w in self.renderer.words]} start with the "
                "same token, so the answer position cannot tell the labels apart; choose label words "
                "that start differently"
            )

    @staticmethod
    def template_config(task: TaskSpec) -> PromptConfig:
        """The task's input template and answer cue alone: what a soft prompt (or a head reading the
        template, see FinetuneOptions.head_input) is put in front of."""
        hint = task.prompt
        return PromptConfig(
            name="soft-prompt-input",
            instruction="",
            input_template=hint.input_template or "Text: {{ text }}",
            cue=hint.cue or "Answer:",
            chat=False,
        )

    @classmethod
    def zero_shot(cls, task: TaskSpec, tokenizer, max_tokens: int = 256, *, split_prefix: bool = False):
        """Route 1's zero-shot prompt (instruction, template, chat format, cue, first label words),
        uncalibrated: what prompt-based fine-tuning and prompt-initialised soft prompts read through."""
        from tasktune.routes.prompting.search import zero_shot_config

        config = zero_shot_config(task, has_unlabelled=False).model_copy(update={"calibration": "none"})
        return cls(task, tokenizer, max_tokens, config=config, split_prefix=split_prefix)

    def encode(self, batch: Sequence[Example]) -> list[list[int]]:
        rows = []
        for e in batch:
            rendered = self.renderer.render(e)
            if self.cut:
                rendered = self._after_cut(rendered)
            # Over-long inputs lose the end of their text, never the prompt around it; counted (R2).
            ids, cut = encode_within(self.tokenizer, rendered, self.max_tokens)
            record("prompt input", self.max_tokens, int(cut))
            rows.append(ids)
        return rows

    def _after_cut(self, rendered: RenderedPrompt) -> RenderedPrompt:
        if not rendered.text.startswith(self._prefix_text):
            # Only demonstrations or an example-dependent instruction could do this; neither is used here.
            raise TaskTuneError("the prompt's text before the input line differs between examples")
        c = self.cut
        return RenderedPrompt(rendered.text[c:], tuple((a - c, b - c) for a, b in rendered.user_spans))
