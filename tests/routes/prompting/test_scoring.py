import numpy as np
import pytest
import torch

from tasktune.routes.prompting.config import PromptConfig
from tasktune.routes.prompting.demos import DemoSelector
from tasktune.routes.prompting.predictor import CausalPromptScorer
from tasktune.routes.prompting.scoring import RankClassifier, common_prefix_length, label_scores
from tasktune.task.data import Example

TEXTS = [
    "the food was great",
    "terrible service , cold soup",
    "a lovely hotel",
    "bad battery life but fine",
    "ok",
]
POOL = [
    Example(f"pool {w} review", i % 2, row=100 + i) for i, w in enumerate(["good", "bad", "kind", "rude"] * 2)
]


def test_multi_token_word_matches_hand_computation(tiny_llama):
    model, tok = tiny_llama.model, tiny_llama.tokenizer
    prompt = tok("Review: the soup was cold . It was", add_special_tokens=False)["input_ids"]
    word = tuple(tok(" terrible", add_special_tokens=False)["input_ids"])
    assert len(word) >= 2, "the test needs a multi-token word"
    engine = RankClassifier(model, tiny_llama.device, [word, (word[0],)])
    got = engine.word_logprobs([prompt])[0]
    with torch.no_grad():
        expected = 0.0
        for i, t in enumerate(word):
            ctx = torch.tensor([prompt + list(word[:i])])
            expected += model(ctx).logits[0, -1].log_softmax(-1)[t].item()
        first_only = model(torch.tensor([prompt])).logits[0, -1].log_softmax(-1)[word[0]].item()
    assert got[0].item() == pytest.approx(expected, abs=1e-4)
    assert got[1].item() == pytest.approx(first_only, abs=1e-4)
    assert got[0] < got[1]  # the full word is less likely than its first piece alone


@pytest.mark.parametrize("demos", [0, 2])
def test_cached_and_plain_paths_agree(task, tiny_llama, demos):
    selector = DemoSelector(POOL, 2, demos, seed=1) if demos else None
    scorer = CausalPromptScorer(tiny_llama, task, PromptConfig(chat=False, demos_per_class=demos), selector)
    assert any(len(w) > 1 for w in scorer.engine.words), "the tiny vocabulary splits some label words"
    batch = [Example(t, i % 2) for i, t in enumerate(TEXTS)]
    fast = scorer.word_scores(batch)
    plain = scorer.word_scores(batch, plain=True)
    np.testing.assert_allclose(fast, plain, atol=1e-4)
    assert (scorer.raw_scores(batch).argmax(1) == scorer.raw_scores(batch, plain=True).argmax(1)).all()


def test_prefix_cache_is_reused_and_shrinks_to_the_shared_part(task, tiny_llama):
    scorer = CausalPromptScorer(tiny_llama, task, PromptConfig(chat=False))
    a = [Example("the food was great", 0), Example("the food was bad", 0)]  # share "the food was"
    scorer.word_scores(a)
    long_prefix = len(scorer.engine._prefix_ids)
    b = [Example("a lovely hotel", 0), Example("ok", 0)]
    plain = scorer.word_scores(b, plain=True)
    np.testing.assert_allclose(scorer.word_scores(b), plain, atol=1e-4)
    assert len(scorer.engine._prefix_ids) < long_prefix


def test_label_scores_sum_probabilities_of_words():
    lp = torch.log(torch.tensor([[0.1, 0.2, 0.3, 0.05]], dtype=torch.float64))
    out = label_scores(lp, [[0, 1], [2, 3]])
    assert torch.allclose(out.exp(), torch.tensor([[0.3, 0.35]], dtype=torch.float64))


def test_common_prefix_length():
    assert common_prefix_length([[1, 2, 3], [1, 2, 4], [1, 2]]) == 2
    assert common_prefix_length([[5], [6]]) == 0


def test_empty_word_is_refused(tiny_llama):
    with pytest.raises(ValueError):
        RankClassifier(tiny_llama.model, tiny_llama.device, [()])


def test_over_long_input_is_refused_naming_the_row(task, tiny_llama):
    from tasktune.errors import DataError

    scorer = CausalPromptScorer(tiny_llama, task, PromptConfig(chat=False))
    limit = scorer.max_prompt_tokens
    fits = Example("ok", 0, row=1)
    assert len(scorer.prompt_ids([fits])[0]) <= limit
    too_long = Example("good " * 400, 0, row=7)  # the tiny llama takes 256 positions
    with pytest.raises(DataError) as err:
        scorer.prompt_ids([fits, too_long])
    assert "row 7" in str(err.value) and f"more than the {limit}" in str(err.value)
