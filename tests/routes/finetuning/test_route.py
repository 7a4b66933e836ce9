import numpy as np
import pytest
import torch

from tasktune.errors import TaskTuneError
from tasktune.routes import get_route
from tasktune.routes.base import FitContext
from tasktune.routes.finetuning import route as ft_route
from tasktune.routes.finetuning.classifier import FinetunedClassifier, lora_targets
from tasktune.routes.finetuning.config import FinetuneOptions, default_options
from tasktune.task.data import Example
from tasktune.training.config import TrainConfig
from tests.routes.helpers import save_and_load
from tests.routes.prompting.conftest import TASK

TRAIN = tuple(
    Example(t, i % 2, row=i + 1)
    for i, t in enumerate(["awful soup", "great food", "rude staff", "lovely"] * 2)
)
DEV = TRAIN[:4]


@pytest.fixture(autouse=True)
def quick_options(monkeypatch):
    """Tiny runs: the route's defaults are for real models."""

    def options(protocol, objective, adapter, kind, seed, n_train=None):
        base = default_options(protocol, objective, adapter, kind, seed)
        train = TrainConfig(max_steps=4, batch_size=4, lr=1e-2, eval_every=2, seed=seed)
        return base.model_copy(update={"train": train})

    monkeypatch.setattr(ft_route, "default_options", options)


def _weights(backbone) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in backbone.model.state_dict().items()}


@pytest.mark.parametrize("route", ["finetune_head", "finetune_prompt", "lora"])
@pytest.mark.parametrize("which", ["llama", "bert"])
def test_every_route_trains_on_both_kinds_and_leaves_the_backbone_alone(route, which, request):
    backbone = request.getfixturevalue(which)
    before = _weights(backbone)
    fitted = get_route(route).fit(FitContext(TASK, TRAIN, DEV, "few", 13, backbone))
    after = backbone.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "the shared backbone changed"
    assert not any(p.requires_grad for p in backbone.model.parameters())
    probs = fitted.scorer.predict_proba(list(DEV))
    assert probs.shape == (4, 2) and np.allclose(probs.sum(1), 1)
    art = fitted.artifact
    total = sum(p.numel() for p in backbone.model.parameters())
    if route == "lora":
        assert art["kind"] == "lora" and "lora_config.json" in art["json_files"]
        assert all("lora_" in k or k.startswith("head.") or k == "label_bias" for k in art["tensors"])
        assert 0 < fitted.trainable_parameters < total / 5
    else:
        assert art["kind"] == "full"
        assert fitted.trainable_parameters >= total
    assert fitted.config["learning_curve"] and fitted.config["best_step"] is not None


def test_prompt_based_step_zero_is_the_zero_shot_prompt(llama):
    """Before training, prompt-based fine-tuning reads the label words' first tokens after exactly route
    1's zero-shot prompt (the rendered ids are the same), so training starts from zero-shot ability."""
    from tasktune.routes.prompting.predictor import CausalPromptScorer
    from tasktune.routes.prompting.search import zero_shot_config

    opts = default_options("few", "prompt", "full", "causal", 13)
    clf = FinetunedClassifier(llama, TASK, opts, 13)
    config = zero_shot_config(TASK, has_unlabelled=False).model_copy(update={"calibration": "none"})
    plain = CausalPromptScorer(llama, TASK, config)
    assert clf.inputs.encode(DEV) == plain.prompt_ids(DEV)
    assert clf.inputs.label_token_ids == [w[0] for w in plain.engine.words]
    expected = []
    with torch.no_grad():
        for ids in plain.prompt_ids(DEV):
            logits = llama.model(input_ids=torch.tensor([ids])).logits[0, -1]
            expected.append(logits[clf.inputs.label_token_ids].softmax(-1).numpy())
    assert np.allclose(clf.predict_proba(list(DEV)), np.array(expected), atol=1e-5)


def test_calibrate_starts_from_route_ones_mean_calibration(llama):
    from tasktune.routes.prompting import calibration

    clf = FinetunedClassifier(llama, TASK, default_options("few", "prompt", "full", "causal", 13), 13)
    texts = [e.text for e in TRAIN]
    raw = np.log(clf.predict_proba(list(TRAIN)))
    clf.calibrate(texts)
    expected = calibration.apply(raw, calibration.mean_bias(raw))
    assert np.allclose(clf.predict_proba(list(TRAIN)), expected, atol=1e-5)
    assert ("label_bias", clf.label_bias) in clf.parameters()  # trained on from there


def test_lora_targets_are_found_by_architecture(llama, bert):
    assert lora_targets(llama.model) == ["q_proj", "v_proj"]
    assert lora_targets(bert.model) == ["query", "value"]
    with pytest.raises(TaskTuneError, match="target_modules"):
        lora_targets(torch.nn.Sequential(torch.nn.Linear(2, 2)))


def test_lora_merge_for_inference_keeps_the_predictions(llama):
    opts = default_options("few", "prompt", "lora", "causal", 13)
    train = TrainConfig(max_steps=3, batch_size=4, lr=5e-2, seed=13)
    opts = opts.model_copy(update={"train": train})
    ctx = FitContext(TASK, TRAIN, DEV, "few", 13, llama)
    clf, _, _ = ft_route.fit_finetuned(ctx, opts)
    before = clf.predict_proba(list(DEV))
    merged_opts = opts.model_copy(update={"lora": opts.lora.model_copy(update={"merge_for_inference": True})})
    clf2, _, _ = ft_route.fit_finetuned(ctx, merged_opts)
    assert np.allclose(before, clf2.predict_proba(list(DEV)), atol=1e-5)


@pytest.mark.parametrize(("objective", "adapter"), [("head", "full"), ("head", "lora"), ("prompt", "lora")])
def test_construction_leaves_the_global_rng_alone_and_still_follows_the_seed(objective, adapter, llama):
    """Head and LoRA initialisation draw from the classifier's seed without reseeding the process: a
    server restoring an adaptation, or any caller, keeps its own torch RNG stream."""
    opts = default_options("few", objective, adapter, "causal", 13)

    def initial(global_seed: int) -> dict[str, torch.Tensor]:
        torch.manual_seed(global_seed)
        torch.rand(3)  # somewhere in the stream, not at a fresh seed
        before = torch.get_rng_state()
        clf = FinetunedClassifier(llama, TASK, opts, 13)
        assert torch.equal(torch.get_rng_state(), before), "constructing a classifier moved the torch RNG"
        return {n: p.detach().clone() for n, p in clf.parameters() if "lora_A" in n or n.startswith("head.")}

    first, second = initial(1), initial(2)
    assert first and first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first), "initialisation must depend on the seed only"


def test_zero_shot_protocol_is_refused(llama):
    with pytest.raises(TaskTuneError, match="few or full"):
        get_route("finetune_head").fit(FitContext(TASK, (), (), "zero", 13, llama))


def test_bad_options_name_the_field():
    with pytest.raises(ValueError, match="r"):
        FinetuneOptions(train=TrainConfig(max_steps=1), lora={"r": 0})


@pytest.mark.parametrize("route", ["finetune_head", "lora"])
def test_artifacts_go_into_the_registry_and_lora_exports_to_peft(route, llama, tmp_path):
    from peft import PeftModel

    from tasktune.registry.peft_export import export_peft

    fitted = get_route(route).fit(FitContext(TASK, TRAIN, DEV, "few", 13, llama))
    art = fitted.artifact
    loaded = save_and_load(fitted.artifact, route, llama, tmp_path)
    assert set(loaded.tensors) == set(art["tensors"])
    if route == "lora":
        out = export_peft(loaded, tmp_path / "peft", str(llama.path))
        from safetensors.torch import load_file

        assert set(load_file(str(out / "tasktune_extras.safetensors"))) == {"label_bias"}
        import copy

        model = PeftModel.from_pretrained(copy.deepcopy(llama.model), str(out))
        # PEFT applies the same adapters: its logits equal our classifier's body with LoRA.
        ids = torch.tensor([[1, 5, 7, 9]])
        ours = fitted.scorer.model(input_ids=ids).logits
        theirs = model(input_ids=ids).logits
        assert torch.allclose(ours, theirs, atol=1e-5)


def test_full_data_schedule_gives_small_sets_more_passes():
    from tasktune.routes.trained import full_data_schedule

    assert full_data_schedule(60_000, 32, 2000) == {"epochs": 1, "eval_every": 234}
    small = full_data_schedule(270, 32, 2000)
    assert small["epochs"] == 8 and small["eval_every"] == 9
    assert full_data_schedule(10, 32, 2000)["epochs"] == 20  # capped
    assert full_data_schedule(None, 32, 2000)["epochs"] == 1


@pytest.mark.parametrize("adapter", ["full", "lora"])
def test_wise_ft_keeps_the_point_between_start_and_trained_weights(adapter, llama):
    """interpolate=0.5 keeps start + 0.5·(trained − start); for LoRA the weight delta B·A is halved
    (B scaled, A as trained)."""
    train = TrainConfig(max_steps=3, batch_size=4, lr=5e-2, seed=13)
    opts = default_options("few", "prompt", adapter, "causal", 13).model_copy(
        update={"train": train, "interpolate": 1.0}
    )
    ctx = FitContext(TASK, TRAIN, DEV, "few", 13, llama)
    trained_clf, _, _ = ft_route.fit_finetuned(ctx, opts)
    trained = trained_clf.artifact_tensors()
    start_clf = FinetunedClassifier(llama, TASK, opts, 13)
    start_clf.calibrate(ft_route.dev_sample(tuple(ctx.unlabelled), ft_route.CALIBRATION_TEXTS, 13))
    start = start_clf.artifact_tensors()
    half_clf, result, _ = ft_route.fit_finetuned(ctx, opts.model_copy(update={"interpolate": 0.5}))
    half = half_clf.artifact_tensors()
    assert set(half) == set(trained)
    moved = [k for k in trained if not torch.equal(trained[k], start[k])]
    assert moved, "training moved nothing: the test would prove nothing"
    for k in trained:
        expected = trained[k] if "lora_A" in k else start[k].lerp(trained[k], 0.5)
        assert torch.allclose(half[k], expected, atol=1e-6), k
    assert "accuracy" in result.extra["interpolated_dev"]
    if adapter == "lora":
        a, b = next(k for k in half if "lora_A" in k), next(k for k in half if "lora_B" in k)
        assert torch.allclose(half[b] @ half[a], 0.5 * (trained[b] @ trained[a]), atol=1e-6)


def test_wise_ft_halves_the_delta_of_lora_on_embeddings_too(llama):
    """PEFT starts an embedding's LoRA with A = 0 and B random (the reverse of linear layers): the
    factor that started at zero is the one interpolated, so every merged delta is alpha times its own."""
    from tasktune.routes.finetuning.config import LoraOptions

    opts = default_options("few", "prompt", "lora", "causal", 0).model_copy(
        update={"lora": LoraOptions(target_modules=("embed_tokens", "q_proj")), "interpolate": 0.5}
    )
    clf = FinetunedClassifier(llama, TASK, opts, 0)
    start = {n: p.detach().clone() for n, p in clf.parameters()}
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _, p in clf.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))  # stands in for training

    def deltas():
        return {
            name: m.get_delta_weight("default").detach().clone()
            for name, m in clf.model.named_modules()
            if hasattr(m, "get_delta_weight") and "default" in getattr(m, "scaling", {})
        }

    full = deltas()
    assert any("embed_tokens" in k for k in full)
    ft_route.interpolate_weights(clf.parameters(), start, 0.5)
    for k, half in deltas().items():
        assert torch.allclose(half, 0.5 * full[k], atol=1e-6), k  # embed_tokens was 4.9 % off


def test_wise_ft_is_refused_for_a_random_head():
    opts = default_options("few", "head", "full", "causal", 13)
    with pytest.raises(ValueError, match="starts at random"):
        FinetuneOptions(**{**opts.model_dump(), "head_init": "random", "interpolate": 0.5})
    # Toward an LP-FT probe start it is WiSE-FT proper: the start is a working classifier.
    assert (
        FinetuneOptions(**{**opts.model_dump(), "head_init": "probe", "interpolate": 0.5}).interpolate == 0.5
    )
    assert default_options("few", "prompt", "full", "causal", 13).interpolate == 0.5
    assert default_options("full", "prompt", "full", "causal", 13).interpolate == 1.0
    assert default_options("few", "prompt", "full", "encoder", 13).interpolate == 1.0


@pytest.mark.parametrize("kind", ["causal", "encoder"])
def test_only_full_data_steps_are_grouped_by_length(kind):
    # Grouping cuts padding on tens of thousands of examples; a few-shot set stays uniformly random.
    assert default_options("full", "head", "lora", kind, 13, 60000).train.group_by_length
    assert not default_options("few", "prompt", "full", kind, 13).train.group_by_length


@pytest.mark.parametrize("adapter", ["full", "lora"])
def test_evaluation_runs_the_prompt_opening_once_and_answers_as_training_reads(adapter, llama):
    """predict_proba (no gradient) runs the prompt's shared opening once per batch; the answers equal
    the whole-prompt pass that training differentiates through, also after the weights moved."""
    opts = default_options("few", "prompt", adapter, "causal", 13)
    clf = FinetunedClassifier(llama, TASK, opts, 13)
    with torch.no_grad():
        for _, p in clf.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.05)
    batch = list(DEV)
    whole = clf.logits(batch).softmax(-1).detach().double().numpy()  # grad enabled: the whole pass
    np.testing.assert_allclose(clf.predict_proba(batch), whole, atol=1e-5, rtol=0)


def test_head_input_template_needs_a_head():
    opts = default_options("few", "prompt", "full", "causal", 13)
    with pytest.raises(ValueError, match="prompt objective has none"):
        FinetuneOptions(**{**opts.model_dump(), "head_input": "template"})


@pytest.mark.parametrize("which", ["llama", "bert"])
def test_a_head_can_read_the_template_and_is_restored_reading_it(which, request, tmp_path):
    from tasktune.routes.finetuning.restore import restore_finetuned

    backbone = request.getfixturevalue(which)
    options = ft_route.default_options("few", "head", "full", backbone.kind, 13)
    template = options.model_copy(update={"head_input": "template"})
    clf = FinetunedClassifier(backbone, TASK, template, 13)
    bare = FinetunedClassifier(backbone, TASK, options.model_copy(update={"head_input": "text"}), 13)
    example = [Example("great food", 1)]
    text = clf._template.render(example[0]).text
    # The task's template and cue around the text, the cue last (where a causal LM is about to answer).
    assert "Review: great food" in text and text.rstrip().endswith("It was")
    enc = clf._encode_plain(example)
    if backbone.kind == "causal":
        assert enc.ids[0].tolist() == backbone.tokenizer(text, add_special_tokens=False)["input_ids"]
    else:
        assert enc["input_ids"][0].tolist() == backbone.tokenizer(text)["input_ids"]
    with torch.no_grad():
        assert not torch.allclose(clf._pooled(example), bare._pooled(example))
    # Through the route (the user's --set), into the registry and back: the restored head reads the template.
    ctx = FitContext(TASK, TRAIN, DEV, "few", 13, backbone, options={"head_input": "template"})
    fitted = get_route("finetune_head").fit(ctx)
    assert fitted.scorer.options.head_input == "template"
    restored = restore_finetuned(
        save_and_load(fitted.artifact, "finetune_head", backbone, tmp_path), backbone, TASK
    )
    assert restored.options.head_input == "template"
    np.testing.assert_allclose(
        restored.predict_proba(list(DEV)), fitted.scorer.predict_proba(list(DEV)), atol=1e-6, rtol=0
    )


@pytest.mark.parametrize("limit, seen", [(3, 3), (None, 8)])
def test_dev_limit_says_how_much_of_dev_each_evaluation_reads(limit, seen, llama, monkeypatch):
    lengths = []

    def spy(trainable, train, dev, *args, **kwargs):
        lengths.append(len(dev))
        return real(trainable, train, dev, *args, **kwargs)

    real = ft_route.train
    monkeypatch.setattr(ft_route, "train", spy)
    train = TrainConfig(max_steps=2, batch_size=4, lr=1e-2, seed=13, dev_limit=limit)
    opts = default_options("few", "head", "full", "causal", 13).model_copy(update={"train": train})
    ft_route.fit_finetuned(FitContext(TASK, TRAIN, TRAIN, "few", 13, llama), opts)
    assert lengths == [seen]
