"""Restoring registry artifacts: every servable route, run by the runner on tiny models and registered,
comes back from the registry as a scorer giving the probabilities the evaluation recorded."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from tasktune.backbones.loading import load_backbone
from tasktune.errors import TaskTuneError
from tasktune.evaluation.evaluator import predict
from tasktune.evaluation.results import read_result
from tasktune.registry import BackboneMismatchError, Registry
from tasktune.routes import RESTORERS, register_restorer, restore_scorer, restore_task
from tasktune.routes.base import FitContext
from tasktune.routes.finetuning import route as ft_route
from tasktune.routes.finetuning.classifier import FinetunedClassifier
from tasktune.routes.finetuning.config import default_options as ft_defaults
from tasktune.routes.prompt_tuning import route as pt_route
from tasktune.routes.prompt_tuning.causal import CausalSoftPrompt
from tasktune.routes.prompt_tuning.config import default_options as pt_defaults
from tasktune.routes.prompt_tuning.inputs import SoftPromptInputs
from tasktune.routes.prompt_tuning.route import EnsembleScorer
from tasktune.routes.prompting.config import PromptConfig
from tasktune.routes.prompting.route import fit_causal_prompt
from tasktune.runner import cell_name, run_matrix
from tasktune.task.data import Example, load_splits
from tasktune.task.spec import load_task
from tasktune.training.config import TrainConfig
from tests.conftest import write_tiny_task
from tests.routes.prompting.conftest import TASK
from tests.tiny_models import build_llama

SERVABLE = {
    "llama": (
        "prompting",
        "prompt_tuning",
        "deep_prompt_tuning",
        "prompt_ensemble",
        "finetune_head",
        "finetune_prompt",
        "lora",
    ),
    "bert": ("prompting", "prompt_tuning", "finetune_head", "finetune_prompt", "lora"),
}
CELLS = [(route, which) for which, names in SERVABLE.items() for route in names]
SEED, K = 13, 4


def _quick_prompt_tuning(
    protocol, depth="shallow", seed=13, n_train=None, backbone_kind="causal", from_prompt=None
):
    """The real defaults (on llama: initialised from the zero-shot prompt, whose length the prompt
    takes) with a few quick steps; num_virtual_tokens applies to the encoder's prompt."""
    train = TrainConfig(max_steps=4, batch_size=4, lr=0.1, eval_every=2, seed=seed)
    defaults = pt_defaults(protocol, depth, seed, backbone_kind=backbone_kind, from_prompt=from_prompt)
    return defaults.model_copy(update={"num_virtual_tokens": 3, "train": train})


def _quick_finetuning(protocol, objective, adapter, kind, seed, n_train=None):
    train = TrainConfig(max_steps=3, batch_size=4, lr=1e-2, eval_every=3, seed=seed)
    return ft_defaults(protocol, objective, adapter, kind, seed).model_copy(update={"train": train})


def _run_cells(spec, root, tiny_llama_dir, tiny_bert_dir) -> None:
    """Each applicable route on each tiny backbone, one few-shot seed, quick training."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TASKTUNE_CACHE", str(root / "cache"))
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setattr(pt_route, "default_options", _quick_prompt_tuning)
        mp.setattr(ft_route, "default_options", _quick_finetuning)
        for which, folder in (("llama", tiny_llama_dir), ("bert", tiny_bert_dir)):
            outcome = run_matrix(
                spec,
                route_names=SERVABLE[which],
                backbone_names=[str(folder)],
                protocol="few",
                seeds=[SEED],
                k=K,
                out_dir=root / "out",
                device="cpu",
                registry_root=root / "registry",
            )
            assert not outcome.failures, outcome.failures


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_llama_dir, tiny_bert_dir):
    """Every servable cell through ``run_matrix`` with a registry, once for the module. Module-scoped
    fixtures run before the per-test autouse ones, so this sets their one thread and caches itself."""
    root = tmp_path_factory.mktemp("restore")
    write_tiny_task(root)
    spec = load_task(root / "task.yaml")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _run_cells(spec, root, tiny_llama_dir, tiny_bert_dir)
    finally:
        torch.set_num_threads(threads)
    folders = {"llama": tiny_llama_dir, "bert": tiny_bert_dir}
    results = {
        (route, which): read_result(
            root / "out" / f"{cell_name(route, str(folders[which]), 'few', SEED)}.json"
        )
        for route, which in CELLS
    }
    return {"registry": root / "registry", "results": results, "test": load_splits(spec)["test"].examples}


@pytest.fixture(scope="module")
def backbones(tiny_llama_dir, tiny_bert_dir):
    return {
        "llama": load_backbone(str(tiny_llama_dir), device="cpu"),
        "bert": load_backbone(str(tiny_bert_dir), device="cpu"),
    }


def _artifact(run, route: str, which: str):
    version = run["results"][(route, which)].info.route_config["registry_version"]
    with Registry(run["registry"]) as reg:
        return reg.load("tiny", version)


def _trainables(scorer) -> list[torch.Tensor]:
    members = scorer.members if isinstance(scorer, EnsembleScorer) else [scorer]
    return [p for m in members if hasattr(m, "parameters") for _, p in m.parameters()]


@pytest.mark.parametrize(("route", "which"), CELLS)
def test_restored_scorer_gives_the_evaluated_probabilities(run, backbones, route, which):
    backbone = backbones[which]
    artifact = _artifact(run, route, which)
    scorer = restore_scorer(artifact, backbone)
    records = run["results"][(route, which)].records
    probs = predict(scorer, run["test"], batch_size=32).probs
    assert [e.row for e in run["test"]] == [r.row for r in records]
    np.testing.assert_allclose(probs, np.array([r.probs for r in records]), atol=1e-5, rtol=0)
    assert probs.argmax(1).tolist() == [r.pred for r in records]
    assert not any(p.requires_grad for p in _trainables(scorer))
    assert restore_task(artifact).label_names == ["negative", "positive"]
    if isinstance(scorer, FinetunedClassifier):
        assert scorer.model is not backbone.model and not scorer.model.training  # its own copy


def test_restored_causal_soft_prompt_shares_the_backbone(run, backbones):
    llama = backbones["llama"]
    artifact = _artifact(run, "prompt_tuning", "llama")
    sp = restore_scorer(artifact, llama)
    assert isinstance(sp, CausalSoftPrompt) and sp.backbone is llama and sp.backbone.model is llama.model
    # Initialised from the zero-shot prompt: as long as that prompt's opening.
    assert sp.prompt.shape == (len(sp.inputs.prefix_ids), llama.hidden_size) and sp.inputs.prefix_ids
    assert sp.prompt.device == llama.device.device
    assert torch.equal(sp.prompt.detach().cpu(), artifact.tensors["prompt_embeddings"])
    assert isinstance(sp.inputs, SoftPromptInputs) and not sp._dropout.training
    assert (
        sp._labels.tolist()
        == sp.inputs.label_token_ids
        == artifact.json_files["soft_prompt.json"]["label_token_ids"]
    )
    assert sp._pad == llama.tokenizer.pad_token_id


def test_ensemble_registers_as_one_prompt_tensor_and_restores_its_members(run, backbones):
    artifact = _artifact(run, "prompt_ensemble", "llama")
    assert artifact.kind == "soft-prompt" and set(artifact.tensors) == {"prompt_embeddings"}
    meta = artifact.json_files["ensemble.json"]
    n = meta["num_virtual_tokens"]  # members start from the zero-shot prompt: its opening's length
    assert meta["members"] == 3 and meta["options"]["init"] == "prompt"
    assert artifact.tensors["prompt_embeddings"].shape == (3 * n, backbones["llama"].hidden_size)
    ensemble = restore_scorer(artifact, backbones["llama"])
    assert isinstance(ensemble, EnsembleScorer) and len(ensemble.members) == 3
    for m, member in enumerate(ensemble.members):
        assert n == len(member.inputs.prefix_ids)
        assert torch.equal(member.prompt.detach(), artifact.tensors["prompt_embeddings"][n * m : n * (m + 1)])
        assert member.label_bias.tolist() == meta["label_bias"][m]


def test_prompt_with_demonstrations_pairs_and_calibration_restores_exactly(backbones, tmp_path):
    """What the runner's search rarely keeps on a random model: sampled-order demonstrations of a
    text-pair task, and mean calibration."""
    llama = backbones["llama"]
    train = tuple(
        Example(t, i % 2, text_pair=f"pair {i}", row=i + 1)
        for i, t in enumerate(["awful soup", "great food", "rude staff", "lovely", "cold", "kind"])
    )
    config = PromptConfig(
        input_template="Review: {{ text }} / {{ text_pair }}",
        demos_per_class=2,
        demo_order="sampled",
        calibration="mean",
    )
    ctx = FitContext(TASK, train, (), "few", 7, llama, tuple(e.text for e in train))
    fitted, stored = fit_causal_prompt(ctx, config)
    assert stored["demonstrations"][0]["text_pair"].startswith("pair")
    with Registry(tmp_path / "reg") as reg:
        version = reg.save(
            TASK.name,
            "prompt",
            backbone=llama.identity,
            route="prompting",
            json_files={"prompt.json": stored, "task.json": TASK.definition()},
        )
        artifact = reg.load(TASK.name, version)
    restored = restore_scorer(artifact, llama)
    queries = [Example(f"query {i}", 0, text_pair="q", row=100 + i) for i in range(5)]
    shown = [[(e.text, e.label, e.text_pair) for e in s.demos.fixed] for s in (restored, fitted)]
    assert shown[0] == shown[1]  # in the drawn order: sampled orders permute positions of this list
    np.testing.assert_allclose(restored.predict_proba(queries), fitted.predict_proba(queries), atol=1e-6)


@pytest.mark.parametrize("method", ["contextual", "mean"])
def test_a_prompt_on_another_causal_model_is_recalibrated_on_it(backbones, tmp_path, caplog, method):
    """The stored bias is the first model's prior over the label words; on another model the wording
    is kept and the bias re-estimated (content-free inputs: the only estimate needing no data)."""
    import logging

    llama = backbones["llama"]
    other = load_backbone(str(build_llama(tmp_path / "other", seed=1)), device="cpu")  # same tokenizer
    train = tuple(Example(t, i % 2, row=i + 1) for i, t in enumerate(["awful soup", "great food", "rude"]))
    config = PromptConfig(calibration=method)
    ctx = FitContext(TASK, train, (), "few", 7, llama, tuple(e.text for e in train))
    _, stored = fit_causal_prompt(ctx, config)
    with Registry(tmp_path / "reg") as reg:
        files = {"prompt.json": stored, "task.json": TASK.definition()}
        version = reg.save(TASK.name, "prompt", backbone=llama.identity, route="prompting", json_files=files)
        artifact = reg.load(TASK.name, version)
    np.testing.assert_allclose(restore_scorer(artifact, llama).bias, stored["bias"])  # its own model: as is
    with caplog.at_level(logging.INFO, logger="tasktune.routes.prompting.restore"):
        moved = restore_scorer(artifact, other)
    contextual = PromptConfig(calibration="contextual")
    _, refit = fit_causal_prompt(dataclasses.replace(ctx, backbone=other), contextual)
    np.testing.assert_allclose(moved.bias, refit["bias"], atol=1e-6)  # what a fit on `other` estimates
    assert not np.allclose(moved.bias, stored["bias"], atol=1e-3)  # was applied as is
    assert ("content-free" in caplog.text) == (method == "mean")


def _save(tmp_path, llama, *, route: str = "prompting", task_json: bool = True):
    files = {"prompt.json": {"style": "words", "temperature": 0.05}}
    if task_json:
        files["task.json"] = TASK.definition()
    with Registry(tmp_path / "reg") as reg:
        version = reg.save(TASK.name, "prompt", backbone=llama.identity, route=route, json_files=files)
        return reg.load(TASK.name, version)


def test_an_artifact_without_task_json_is_refused_clearly(backbones, tmp_path):
    artifact = _save(tmp_path, backbones["llama"], task_json=False)
    with pytest.raises(TaskTuneError, match=r"reviews v1 was saved without task\.json; re-run"):
        restore_task(artifact)
    with pytest.raises(TaskTuneError, match=r"without task\.json"):
        restore_scorer(artifact, backbones["llama"])


def test_an_unknown_route_is_refused_naming_the_restorable_ones(backbones, tmp_path):
    artifact = _save(tmp_path, backbones["llama"], route="majority")
    with pytest.raises(TaskTuneError, match=r"route 'majority'.*restorable routes: deep_prompt_tuning, "):
        restore_scorer(artifact, backbones["llama"])


def test_a_restorer_name_cannot_be_registered_twice():
    with pytest.raises(ValueError, match="already registered"):
        register_restorer("lora")(RESTORERS["lora"])


def test_an_artifact_is_refused_on_another_backbone(run, backbones, tmp_path):
    other = load_backbone(str(build_llama(tmp_path / "other-llama", seed=1)), device="cpu")
    for route in ("prompt_tuning", "lora"):
        with pytest.raises(BackboneMismatchError, match="weights_hash"):
            restore_scorer(_artifact(run, route, "llama"), other)
    # A text prompt runs on any model of its kind, but not on the other kind.
    assert restore_scorer(_artifact(run, "prompting", "llama"), other).num_labels == 2
    with pytest.raises(BackboneMismatchError, match=r"causal backbone .* encoder backbone"):
        restore_scorer(_artifact(run, "prompting", "llama"), backbones["bert"])


def test_label_words_that_tokenize_differently_are_refused(run, backbones):
    artifact = _artifact(run, "prompt_tuning", "llama")
    task = restore_task(artifact).definition()
    task["labels"][0]["words"], task["labels"][1]["words"] = ["good"], ["bad"]
    edited = dataclasses.replace(artifact, json_files={**artifact.json_files, "task.json": task})
    with pytest.raises(TaskTuneError, match="trained to predict tokens"):
        restore_scorer(edited, backbones["llama"])
