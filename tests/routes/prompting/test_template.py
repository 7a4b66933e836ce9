"""Rendering a task's examples: a pair's second text is never dropped."""

from tasktune.routes.prompting.config import PromptConfig
from tasktune.routes.prompting.template import PromptRenderer
from tasktune.task.data import Example


def test_a_single_text_template_keeps_the_pairs_second_text(task, tiny_llama):
    r = PromptRenderer(PromptConfig(chat=False), task, tiny_llama.tokenizer)
    pair = r.render(Example("the premise", 0, text_pair="the hypothesis"))
    assert "Text: the premise\nthe hypothesis" in pair.text
    assert [pair.text[a:b] for a, b in pair.user_spans] == ["the premise", "the hypothesis"]
    single = r.render(Example("the premise", 0))
    assert "hypothesis" not in single.text and len(single.user_spans) == 1


def test_a_template_that_places_the_pair_is_used_as_written(task, tiny_llama):
    config = PromptConfig(chat=False, input_template="A: {{ text }} B: {{ text_pair }}")
    pair = PromptRenderer(config, task, tiny_llama.tokenizer).render(Example("x1", 0, text_pair="x2"))
    assert "A: x1 B: x2" in pair.text and pair.text.count("x2") == 1
