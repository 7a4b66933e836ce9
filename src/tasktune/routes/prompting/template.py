"""Rendering a prompt for one example and turning it into token ids with user text kept verbatim.

User texts (the input and any demonstrations) enter the template as opaque placeholders; after the
template and the model's chat template have been applied, the placeholders are replaced by the
texts and their character spans recorded. Tokenisation is then the plain whole-string tokenisation
— identical to what a user's own loop gives — except where a user text contains a special-token
string such as ``<|im_start|>``: only there is the string cut, and that piece is tokenised as
ordinary text, so a review cannot inject chat control tokens.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from tasktune.routes.prompting.config import PromptConfig
from tasktune.sandbox import render
from tasktune.task.data import Example
from tasktune.task.spec import TaskSpec

_OPEN, _CLOSE = "\ue000", "\ue001"  # private-use characters: never in real text by convention
_PLACEHOLDER = re.compile(f"{_OPEN}(\\d+){_CLOSE}")


@dataclass(frozen=True)
class RenderedPrompt:
    text: str
    user_spans: tuple[tuple[int, int], ...]  # character spans of user-provided text


def label_list(names: Sequence[str]) -> str:
    names = list(names)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def label_words(config: PromptConfig, task: TaskSpec) -> list[tuple[str, ...]]:
    """The words of each label, in label order (config override, else the task's)."""
    if config.label_words is None:
        return [label.label_words for label in task.labels]
    missing = [n for n in task.label_names if n not in config.label_words]
    if missing:
        raise ValueError(f"prompt {config.name!r} gives no label words for {missing}")
    return [tuple(config.label_words[n]) for n in task.label_names]


class PromptRenderer:
    """Renders ``config`` for ``task``; ``chat_template`` is applied when the tokenizer has one."""

    def __init__(self, config: PromptConfig, task: TaskSpec, tokenizer=None):
        self.config, self.task, self.tokenizer = config, task, tokenizer
        self.words = label_words(config, task)
        use_chat = config.chat if config.chat is not None else bool(getattr(tokenizer, "chat_template", None))
        self.use_chat = use_chat and tokenizer is not None and bool(getattr(tokenizer, "chat_template", None))
        self.variables = {
            "description": task.description or "",
            "labels": task.label_names,
            "label_words": [w[0] for w in self.words],
            "label_list": label_list([w[0] for w in self.words]),
        }
        self.instruction = render(config.instruction, **self.variables).strip()
        # Validated as templates like the instruction, so rendered like it ("Is it {{ label_list }}?");
        # a plain cue renders as itself, spaces included (they decide the answer's leading space).
        self.cue = render(config.cue, **self.variables)
        self.separator = render(config.separator, **self.variables)

    def _input(self, example: Example, texts: list[str]) -> str:
        def slot(value: str | None) -> str:
            if value is None:
                return ""  # a template naming {{ text_pair }} on an input without one: nothing, not "None"
            texts.append(value)
            return f"{_OPEN}{len(texts) - 1}{_CLOSE}"

        template = self.config.input_template
        if example.text_pair is not None and "text_pair" not in template:
            # A template written for single texts (every default is) must not drop a pair's second
            # text: it goes on the next line.
            template += "\n{{ text_pair }}"
        return render(template, **self.variables, text=slot(example.text), text_pair=slot(example.text_pair))

    def answer_prefix(self, prompt_text: str) -> str:
        """The string put before a label word: a space when the prompt ends in a non-space."""
        mode = self.config.space_prefix
        return (
            " "
            if mode == "always" or (mode == "auto" and prompt_text and not prompt_text[-1].isspace())
            else ""
        )

    def render(self, example: Example, demos: Sequence[Example] = ()) -> RenderedPrompt:
        texts: list[str] = []
        cue = self.cue
        parts = []
        for demo in demos:
            shown = self._input(demo, texts) + "\n" + cue
            parts.append(shown + self.answer_prefix(shown) + self.words[demo.label][0])
        query = self._input(example, texts)
        sep = self.separator
        body = sep.join([p for p in (self.instruction, *parts) if p] + [query])
        if self.use_chat:
            text = self.tokenizer.apply_chat_template(
                [{"role": "user", "content": body}], tokenize=False, add_generation_prompt=True
            )
            text += cue
        else:
            text = body + "\n" + cue
        return _fill(text, texts)


def _fill(text: str, texts: list[str]) -> RenderedPrompt:
    out, spans, pos = [], [], 0
    length = 0
    for m in _PLACEHOLDER.finditer(text):
        out.append(text[pos : m.start()])
        length += m.start() - pos
        value = texts[int(m.group(1))]
        spans.append((length, length + len(value)))
        out.append(value)
        length += len(value)
        pos = m.end()
    out.append(text[pos:])
    return RenderedPrompt("".join(out), tuple(spans))


def _special_strings(tokenizer) -> tuple[str, ...]:
    """Every string the tokenizer turns into a control token: its named special tokens and every added
    token marked special (SmolLM2 has 14 beyond the chat ones, e.g. <repo_name>, <jupyter_code>), longest
    first so that one containing another is cut whole. Cached on the tokenizer, by its size."""
    size = len(tokenizer) if hasattr(tokenizer, "__len__") else None  # grows when tokens are added
    size_then, cached = getattr(tokenizer, "_tasktune_special_strings", (None, None))
    if cached is None or size_then != size:
        names = set(getattr(tokenizer, "all_special_tokens", []) or [])
        added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
        names |= {t.content for t in added.values() if getattr(t, "special", False)}
        cached = tuple(sorted((n for n in names if n), key=lambda n: (-len(n), n)))
        with contextlib.suppress(AttributeError):  # one that takes no attributes: computed each time
            tokenizer._tasktune_special_strings = (size, cached)
    return cached


def encode(tokenizer, prompt: RenderedPrompt) -> list[int]:
    """Token ids of the prompt; special-token strings inside user text are tokenised as plain text."""
    specials = _special_strings(tokenizer)
    cuts: list[tuple[int, int]] = []
    for start, end in prompt.user_spans:
        segment = prompt.text[start:end]
        for s in specials:
            i = segment.find(s)
            while i >= 0:
                cuts.append((start + i, start + i + len(s)))
                i = segment.find(s, i + len(s))
    if not cuts:
        return tokenizer(prompt.text, add_special_tokens=False)["input_ids"]
    ids: list[int] = []
    pos = 0
    for start, end in sorted(cuts):
        if start < pos:
            continue  # overlapping matches of two special strings: the first cut wins
        if start > pos:
            ids += tokenizer(prompt.text[pos:start], add_special_tokens=False)["input_ids"]
        ids += tokenizer(prompt.text[start:end], add_special_tokens=False, split_special_tokens=True)[
            "input_ids"
        ]
        pos = end
    if pos < len(prompt.text):
        ids += tokenizer(prompt.text[pos:], add_special_tokens=False)["input_ids"]
    return ids


def encode_within(tokenizer, prompt: RenderedPrompt, limit: int) -> tuple[list[int], bool]:
    """Token ids of the prompt in at most ``limit`` tokens, and whether it had to be cut.

    An over-long prompt loses the end of its longest user text: the chat turns, instruction, template
    and cue around it stay, so the model still reads a well-formed prompt and answers where the cue
    ends (keeping only the last ``limit`` tokens would drop the opening turn and the instruction).
    Only a prompt that is too long without its user text keeps its last ``limit`` tokens."""
    ids = encode(tokenizer, prompt)
    if len(ids) <= limit:
        return ids, False
    for _ in range(8):  # each pass estimates the characters to drop from the tokens still over
        spans = [s for s in prompt.user_spans if s[1] > s[0]]
        if not spans:
            break
        start, end = max(spans, key=lambda s: s[1] - s[0])
        per_token = max(1.0, (end - start) / max(1, len(encode(tokenizer, _only(prompt, start, end)))))
        drop = min(end - start, int((len(ids) - limit) * per_token) + 1)
        prompt = _cut(prompt, end - drop, end)
        ids = encode(tokenizer, prompt)
        if len(ids) <= limit:
            return ids, True
    return ids[-limit:], True


def _only(prompt: RenderedPrompt, start: int, end: int) -> RenderedPrompt:
    return RenderedPrompt(prompt.text[start:end], ((0, end - start),))


def _cut(prompt: RenderedPrompt, start: int, end: int) -> RenderedPrompt:
    """``prompt`` without the characters ``start:end`` (inside one user span); later spans shift."""
    n = end - start
    spans = []
    for a, b in prompt.user_spans:
        if b <= start:
            spans.append((a, b))
        elif a >= end:
            spans.append((a - n, b - n))
        else:  # the span that holds the cut
            spans.append((a, b - n))
    return RenderedPrompt(prompt.text[:start] + prompt.text[end:], tuple(spans))


def answer_ids(tokenizer, prompt_text: str, answer: str) -> list[int]:
    """The ids of ``answer`` as the model meets them right after ``prompt_text``. Tokenised alone, a
    leading-space word can differ from the same word in context: SentencePiece tokenizers that prepend
    '▁' (Llama 2, Mistral) turn " positive" alone into ['▁', '▁positive'], every label then starting with
    the same bare '▁'. Byte-level BPE (SmolLM2, GPT-2) gives the same ids either way."""
    head = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    whole = tokenizer(prompt_text + answer, add_special_tokens=False)["input_ids"]
    if len(whole) > len(head) and whole[: len(head)] == head:
        return list(whole[len(head) :])
    # The answer merged with the prompt's last token: no clean boundary in context, so the ids alone.
    return list(tokenizer(answer, add_special_tokens=False)["input_ids"])
