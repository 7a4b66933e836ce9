import numpy as np
import pytest

from tasktune.routes import get_route
from tasktune.routes.base import FitContext
from tasktune.routes.prompting.search import base_variants, search, word_sets, zero_shot_config
from tasktune.task.data import Example

TRAIN = tuple(Example(f"{w} review number {i}", i % 2, row=i + 1) for i, w in enumerate(["bad", "good"] * 6))
DEV = tuple(Example(f"{w} thing {i}", i % 2, row=100 + i) for i, w in enumerate(["terrible", "great"] * 3))
TEST = [Example("great soup", 1), Example("rude waiter", 0), Example("the food was great", 1)]


def test_zero_shot_uses_task_wording_and_no_labels(task, tiny_llama):
    config = zero_shot_config(task, has_unlabelled=True)
    assert config.cue == "It was" and config.calibration == "mean"
    assert config.label_words == {"negative": ("bad",), "positive": ("good",)}
    ctx = FitContext(task, (), (), "zero", 13, tiny_llama, unlabelled=tuple(e.text for e in TRAIN))
    fitted = get_route("prompting").fit(ctx)
    probs = fitted.scorer.predict_proba(TEST)
    assert probs.shape == (3, 2) and np.allclose(probs.sum(1), 1)
    assert fitted.trainable_parameters == 0 and fitted.artifact["kind"] == "prompt"
    assert fitted.artifact["json_files"]["prompt.json"]["bias"] is not None


def test_search_tries_every_combination_and_keeps_the_best(task, tiny_chat_llama):
    result = search(
        tiny_chat_llama, task, TRAIN, DEV, [Example(e.text, 0) for e in TRAIN], demo_counts=(0, 1)
    )
    n_variants, n_sets = len(base_variants(task)), len(word_sets(task))
    assert (
        len(result.trials) == n_variants * 2 * 2 * n_sets * 3
    )  # variants × chat × demos × words × calibration
    best = max(result.trials, key=lambda t: t.key())
    assert result.best == best.config
    assert result.table()[0]["dev_accuracy"] == round(best.dev_accuracy, 4)


def test_few_shot_route_runs_search_and_demos_come_from_train(task, tiny_llama):
    ctx = FitContext(task, TRAIN, DEV, "few", 13, tiny_llama, unlabelled=tuple(e.text for e in TRAIN))
    fitted = get_route("prompting").fit(ctx)
    stored = fitted.artifact["json_files"]["prompt.json"]
    train_texts = {e.text for e in TRAIN}
    assert all(d["text"] in train_texts for d in stored["demonstrations"])
    assert fitted.config["search_top"]
    assert fitted.scorer.predict_proba(TEST).shape == (3, 2)


def test_encoder_prompting_by_label_description_similarity(task, tiny_bert_dir):
    from tasktune.backbones.loading import load_backbone

    bert = load_backbone(str(tiny_bert_dir), device="cpu")
    fitted = get_route("prompting").fit(FitContext(task, (), (), "zero", 13, bert))
    probs = fitted.scorer.predict_proba(TEST)
    assert probs.shape == (3, 2) and np.allclose(probs.sum(1), 1)
    assert fitted.config["label_text"] == "description"


def test_selection_also_uses_training_examples_not_shown_as_demonstrations(task, tiny_llama):
    unl = [Example(e.text, 0) for e in TRAIN]
    result = search(tiny_llama, task, TRAIN, DEV, unl, demo_counts=(0, 1))
    for trial in result.trials:
        shown = 2 * trial.config.demos_per_class  # K per class, two classes
        n = len(DEV) + len(TRAIN) - shown
        assert abs(trial.dev_accuracy * n - round(trial.dev_accuracy * n)) < 1e-9
    only_dev = search(tiny_llama, task, TRAIN, DEV, unl, demo_counts=(0,), select_on_train=False)
    assert all(
        abs(t.dev_accuracy * len(DEV) - round(t.dev_accuracy * len(DEV))) < 1e-9 for t in only_dev.trials
    )


def test_zero_shot_prompt_is_kept_unless_beaten_significantly(task):
    from tasktune.routes.prompting.search import Trial, choose

    default = zero_shot_config(task, has_unlabelled=True).model_copy(update={"chat": False})
    other = default.model_copy(update={"cue": "Answer:"})
    rows = range(60)

    def trial(config, n_right):
        preds = {r: (1, int(r < n_right)) for r in rows}  # (label, prediction): right on the first n_right
        return Trial(config, n_right / 60, 0.5, preds)

    base = trial(default, 40)
    slightly_better = trial(other, 43)  # 3 more right: noise at n=60
    chosen, decision = choose([base, slightly_better], default, alpha=0.1)
    assert chosen is base and decision["kept_default"] and decision["p_value"] > 0.1
    much_better = trial(other, 55)  # 15 more right, none worse: p ≈ 6e-5
    chosen, decision = choose([base, much_better], default, alpha=0.1)
    assert chosen is much_better and not decision["kept_default"] and decision["p_value"] < 0.001


def test_search_scores_a_bounded_sample_of_held_out_train(task, tiny_llama, monkeypatch):
    """With full training data each candidate must not score the whole of train (hours on a CPU)."""
    import tasktune.routes.prompting.search as search_module

    sizes = []
    real = search_module._scores

    def counting(scorer, examples, batch_size):
        sizes.append(len(examples))
        return real(scorer, examples, batch_size)

    monkeypatch.setattr(search_module, "_scores", counting)
    train = tuple(Example(f"{w} review {i}", i % 2, row=i + 1) for i, w in enumerate(["bad", "good"] * 40))
    result = search(tiny_llama, task, train, DEV, [], demo_counts=(0, 1), held_out_limit=10)
    scored = sizes[::3]  # per candidate: selection set, content-free inputs, unlabelled texts
    # One sample of 10 for all: a candidate showing one demo per class drops those it shows.
    assert scored and all(len(DEV) + 8 <= n <= len(DEV) + 10 for n in scored)
    zero_demo = [t for t in result.trials if t.config.demos_per_class == 0]
    one_demo = [t for t in result.trials if t.config.demos_per_class == 1]
    assert set(one_demo[0].preds) <= set(zero_demo[0].preds)  # the same examples, keyed alike
    picked = search_module.stratified_sample(train, 10, 13, 2)
    assert [e.label for e in picked].count(0) == 5 and picked == sorted(picked, key=lambda e: e.row)


def test_a_macro_f1_task_chooses_prompts_by_macro_f1(task):
    """Of two candidates, the one with more right answers but a whole class missed loses to the one
    that answers both classes, and the switch away from the zero-shot prompt is tested on macro-F1."""
    from tasktune.routes.prompting.search import Trial, choose

    default = zero_shot_config(task, has_unlabelled=False)
    other = default.model_copy(update={"cue": "Overall:"})
    y = [0] * 90 + [1] * 10

    def trial(config, preds):
        f1 = np.mean(
            [
                2
                * sum(t == p == c for t, p in zip(y, preds, strict=True))
                / max(1, sum(t == c for t in y) + sum(p == c for p in preds))
                for c in (0, 1)
            ]
        )
        preds_by_row = {i: (t, p) for i, (t, p) in enumerate(zip(y, preds, strict=True))}
        acc = float(np.mean([t == p for t, p in preds_by_row.values()]))
        return Trial(config, acc, 0.5, preds_by_row, dev_macro_f1=float(f1), metric="macro_f1")

    always_zero = trial(default, [0] * 100)  # 90 % accuracy, macro-F1 47 %
    balanced = trial(other, [0] * 75 + [1] * 15 + [1] * 10)  # 85 % accuracy, macro-F1 ~77 %
    best, decision = choose([always_zero, balanced], default, alpha=0.1)
    assert best is balanced and not decision["kept_default"]
    assert "paired bootstrap of macro-F1" in decision["reason"]
    accuracy_best, _ = choose(
        [Trial(t.config, t.dev_accuracy, t.dev_nll, t.preds) for t in (always_zero, balanced)],
        default,
        alpha=0.1,
    )
    assert accuracy_best.config == default  # by accuracy the zero-shot prompt is ahead


def test_encoder_label_text_is_chosen_on_the_task_metric(task, tiny_bert_dir, monkeypatch):
    """On imbalanced data, descriptions that call everything negative win on accuracy (90 %) while
    label words that find the positives win on macro-F1 (~77 % vs 47 %): a macro-F1 task takes the words."""
    from tasktune.backbones.loading import load_backbone
    from tasktune.routes.prompting import encoder

    train = tuple(Example(f"review {i}", int(i % 10 == 9), row=i + 1) for i in range(200))
    dev = tuple(Example(f"dev review {i}", int(i % 10 == 9), row=1000 + i) for i in range(20))
    # 'words' finds every positive and calls a third as many negatives positive (85 % right).
    wrong_negatives = {e.text for e in (*dev, *train) if e.label == 0}
    wrong_negatives = set(sorted(wrong_negatives)[: len(wrong_negatives) // 6])

    def scripted(self, batch):
        if self.style == "words":
            preds = [int(e.label == 1 or e.text in wrong_negatives) for e in batch]
        else:
            preds = [0] * len(batch)
        return np.eye(2)[preds]

    monkeypatch.setattr(encoder.SimilarityScorer, "predict_proba", scripted)
    bert = load_backbone(str(tiny_bert_dir), device="cpu")
    for metric, chosen in (("accuracy", "description"), ("macro_f1", "words")):
        spec = task.model_copy(update={"metric": metric})
        fitted = get_route("prompting").fit(FitContext(spec, train, dev, "few", 13, bert))
        selection = fitted.config["selection"]
        assert fitted.config["label_text"] == chosen, selection
        assert selection["metric"] == metric
    assert selection["test"] == "paired bootstrap of macro-F1" and selection["p_value"] < 0.1


def test_every_candidate_is_scored_on_the_prompt_it_would_deploy(task, tiny_llama, monkeypatch):
    """The label names (negative/positive) differ from the first label words (bad/good), and the prompt
    shows them (the instruction's label list, the demonstrations' answers): a 'names' candidate must be
    scored on the prompt that says negative/positive, as it would be deployed, not on the bad/good one."""
    from tasktune.routes.prompting.route import fit_causal_prompt

    assert "names" in word_sets(task)
    generic = base_variants(task)[-1].model_copy(update={"instruction": "Answer with {{ label_list }}."})
    ctx = FitContext(task, TRAIN, DEV, "few", 13, tiny_llama)
    monkeypatch.setattr("tasktune.routes.prompting.search.base_variants", lambda t: [generic])
    result = search(tiny_llama, task, TRAIN, DEV, [], demo_counts=(0, 1), select_on_train=False)
    y = np.array([e.label for e in DEV])
    checked = 0
    for trial in result.trials:
        if trial.config.calibration != "none":
            continue
        scorer, _ = fit_causal_prompt(ctx, trial.config)
        probs = scorer.predict_proba(list(DEV))
        nll = float(-np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, None)).mean())
        assert nll == pytest.approx(trial.dev_nll, abs=1e-5), trial.config.name
        checked += 1
    assert checked == 2 * len(word_sets(task))  # demos 0 and 1, every word set


def test_a_repeated_training_text_is_not_scored_with_its_own_answer_in_the_prompt(
    task, tiny_llama, monkeypatch
):
    """SST-2 and AG News repeat texts: the copy of a shown demonstration must leave the held-out sample
    too (it was removed by identity, so its twin was scored with the answer in the prompt)."""
    import tasktune.routes.prompting.search as search_module

    seen = []

    def record(scorer, examples, batch_size):
        seen.append((scorer.demos, list(examples)))
        return np.zeros((len(examples), len(scorer.word_strings)))

    monkeypatch.setattr(search_module, "_scores", record)
    base = [Example(f"review number {i} was {'good' if i % 2 else 'bad'}", i % 2) for i in range(20)]
    train = tuple(Example(e.text, e.label, row=j + 1) for j, e in enumerate(base + base))
    search(tiny_llama, task, train, DEV, [], demo_counts=(1,), held_out_limit=200)
    selector, scored = seen[0]
    shown = {(e.text, e.text_pair) for e in selector.fixed}
    assert len(shown) == 2 and not [e for e in scored if (e.text, e.text_pair) in shown]


PAIR_TASK = {
    "name": "nli",
    "text_pair_field": "hypothesis",
    "labels": ["yes", "no"],
    "data": {"test": {"path": "x.jsonl"}},
    "prompt": {"input_template": "Premise: {{ text }}\nHypothesis: {{ text_pair }}", "cue": "Answer:"},
}


def test_a_pair_task_is_calibrated_on_prompts_with_both_texts(tiny_llama, monkeypatch):
    """Mean calibration averaged prompts that lacked the hypothesis ('Hypothesis: None'), content-free
    ones too: the reference had another structure than every real input."""
    from tasktune.routes.prompting import route as route_module
    from tasktune.routes.prompting.config import PromptConfig
    from tasktune.routes.prompting.predictor import CausalPromptScorer
    from tasktune.task.spec import parse_task

    task = parse_task(PAIR_TASK)
    train = tuple(Example(f"premise {i}", i % 2, f"hypothesis {i}", row=i + 1) for i in range(6))
    rendered = []
    real = CausalPromptScorer.scores_in_batches

    def spy(self, examples, batch_size=16):
        rendered.extend(self.renderer.render(e).text for e in examples)
        return real(self, examples, batch_size)

    monkeypatch.setattr(CausalPromptScorer, "scores_in_batches", spy)
    for method in ("mean", "contextual"):
        rendered.clear()
        ctx = FitContext(task, train, (), "few", 13, tiny_llama, unlabelled=train)
        route_module.fit_causal_prompt(
            ctx, PromptConfig(calibration=method, input_template=PAIR_TASK["prompt"]["input_template"])
        )
        assert rendered and all("None" not in t for t in rendered), rendered[0]
        if method == "mean":
            assert all("Hypothesis: hypothesis" in t for t in rendered)
        else:  # the content-free string in both slots, as Zhao et al. do for NLI
            for cf in ("N/A", "", "[MASK]"):
                assert any(f"Premise: {cf}\nHypothesis: {cf}\n" in t for t in rendered), cf


def test_a_missing_pair_renders_as_nothing_and_plain_text_export_keeps_pairs(tiny_llama):
    from tasktune.routes.prompting.config import PromptConfig
    from tasktune.routes.prompting.service import as_plain_text
    from tasktune.routes.prompting.template import PromptRenderer
    from tasktune.task.spec import parse_task

    task = parse_task(PAIR_TASK)
    config = PromptConfig(input_template=PAIR_TASK["prompt"]["input_template"], chat=False)
    assert "Hypothesis: \n" in PromptRenderer(config, task).render(Example("a man sleeps", 0)).text
    prompt = {
        "config": config.model_dump(mode="json"),
        "demonstrations": [{"text": "A man sleeps.", "text_pair": "Someone rests.", "label": "yes"}],
    }
    text = as_plain_text(prompt, task)
    assert "Hypothesis: Someone rests." in text and "<paste the second text here>" in text
