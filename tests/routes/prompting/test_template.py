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


def test_an_over_long_prompt_loses_the_end_of_its_text_not_its_opening_or_cue(task, tiny_chat_llama):
    """Keeping the last N tokens dropped the chat turn's opening and the instruction: the model then
    read a prompt it was never shown. The user text's end goes instead."""
    from tasktune.routes.prompting.template import encode, encode_within

    tok = tiny_chat_llama.tokenizer
    config = PromptConfig(instruction="Is it good or bad?", cue="It was", chat=True)
    r = PromptRenderer(config, task, tok)
    short = r.render(Example("fine", 0))
    full = r.render(Example("great food " * 80 + "THE END", 0))
    limit = len(encode(tok, short)) + 20
    ids, cut = encode_within(tok, full, limit)
    text = tok.decode(ids)
    assert cut and len(ids) <= limit
    assert text.startswith(tok.decode(encode(tok, short))[:30])  # the chat opening and instruction
    assert text.rstrip().endswith("It was") and "THE END" not in text and "great food" in text
    assert encode_within(tok, short, limit) == (encode(tok, short), False)
    # No user text to shorten: the last tokens are kept, as before.
    bare = PromptRenderer(PromptConfig(instruction="x " * 200, cue="It was", chat=False), task, tok)
    ids, cut = encode_within(tok, bare.render(Example("", 0)), 16)
    assert cut and len(ids) == 16


def test_soft_prompt_inputs_cut_the_text_and_count_it(task, tiny_chat_llama):
    from tasktune import truncation
    from tasktune.routes.prompt_tuning.inputs import SoftPromptInputs

    tok = tiny_chat_llama.tokenizer
    inputs = SoftPromptInputs.zero_shot(task, tok, max_tokens=48)
    truncation.take()
    (ids,) = inputs.encode([Example("the food was great " * 30, 1)])
    (short,) = inputs.encode([Example("ok", 1)])
    assert len(ids) <= 48 and ids[:4] == short[:4] and ids[-4:] == short[-4:]  # opening and cue kept
    assert truncation.take() == {"prompt input (limit 48 tokens)": 1}


def test_the_cue_and_separator_are_templates_like_the_instruction(task, tiny_llama):
    config = PromptConfig(chat=False, instruction="Classify.", cue="Is it {{ label_list }}?")
    text = PromptRenderer(config, task, tiny_llama.tokenizer).render(Example("fine", 0)).text
    assert text.endswith("Is it bad or good?") and "{{" not in text
    plain = PromptRenderer(PromptConfig(chat=False, cue=" It was "), task, tiny_llama.tokenizer)
    assert plain.render(Example("fine", 0)).text.endswith(" It was ")  # spaces kept as written


def test_added_special_tokens_in_user_text_stay_plain_text(task, tiny_llama):
    """SmolLM2 marks 14 added tokens special beyond its chat tokens (<repo_name>, <jupyter_code>, ...):
    a review that contains one must not reach the model as that control token."""
    import copy

    from tasktune.routes.prompting.template import encode

    tok = copy.deepcopy(tiny_llama.tokenizer)
    tok.add_tokens(["<repo_name>"], special_tokens=True)
    special_id = tok.convert_tokens_to_ids("<repo_name>")
    assert "<repo_name>" not in tok.all_special_tokens  # added, not named: the old guard missed it
    r = PromptRenderer(PromptConfig(chat=False, instruction="Classify."), task, tok)
    ids = encode(tok, r.render(Example("hi <repo_name> there", 0)))
    assert special_id not in ids and "repo" in tok.decode(ids)


def test_label_words_are_tokenised_as_they_follow_the_prompt():
    """A SentencePiece-style tokenizer that prepends '▁' (Llama 2, Mistral) makes " positive" alone
    ['▁', '▁positive']: every label would start with the same bare '▁'. In context it is ['▁positive']."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from tasktune.routes.prompting.template import answer_ids

    vocab = {"<unk>": 0, "▁": 1, "▁positive": 2, "▁negative": 3, "▁Answer:": 4, "▁Text:": 5, "▁fine": 6}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    # Llama 2's legacy normalizer: prepend '▁', spaces to '▁'; then split before each '▁'.
    core.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    core.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never", split=True)
    tok = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>")
    assert tok(" positive", add_special_tokens=False)["input_ids"] == [1, 2]  # alone: a bare '▁' first
    assert answer_ids(tok, "Text: fine Answer:", " positive") == [2]
    assert answer_ids(tok, "Text: fine Answer:", " negative") == [3]
