"""LoRA adaptations served as named adapters on ONE shared copy of their backbone: each gives the
probabilities of the FinetunedClassifier it replaces (and its evaluation), rows of different adapters
in one forward equal each alone (R14), the pristine backbone stays LoRA-free, N adapters cost one copy,
and the server mixes pinned versions under concurrent traffic as it answers them one at a time."""

from __future__ import annotations

import copy
import dataclasses
import random
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from peft.tuners.lora import LoraLayer

from tasktune.backbones.loading import load_backbone
from tasktune.errors import TaskTuneError
from tasktune.evaluation.evaluator import predict
from tasktune.evaluation.results import read_result
from tasktune.registry import Registry
from tasktune.routes import restore_scorer
from tasktune.routes.finetuning import route as ft_route
from tasktune.routes.finetuning.classifier import FinetunedClassifier
from tasktune.routes.finetuning.config import LoraOptions
from tasktune.runner import cell_name, run_matrix
from tasktune.serving import batcher as batcher_module
from tasktune.serving.app import create_app
from tasktune.serving.mixed import mix_key
from tasktune.serving.pool import RegistryLoader
from tasktune.serving.settings import ServeSettings
from tasktune.serving.shared_lora import (
    SharedLoraHost,
    SharedLoraRefused,
    SharedLoraScorer,
    mixed_lora_proba,
    restore_shared_lora,
)
from tasktune.task.data import Example, load_splits
from tasktune.task.spec import load_task
from tests.conftest import make_rows, write_jsonl
from tests.routes.test_restore import _quick_finetuning
from tests.serving.conftest import ADMIN, _wait_ready
from tests.serving.stubs import TOKEN

SEEDS = (13, 14)
TEXTS = [
    "short",
    "a considerably longer piece of text that makes this row much longer than the others in its batch",
    "medium length text here",
    "great food",
]
TOPIC = "name: topic\nlabels:\n" + "".join(
    f"  - name: {n}\n    words: [{w}]\n"
    for n, w in (("world", "great"), ("sports", "lovely"), ("business", "awful"))
)


def _quick_lora(protocol, objective, adapter, kind, seed, n_train=None):
    """Quick training; seed 14 gets another rank and more target modules, so adapters of different
    shapes share the host."""
    options = _quick_finetuning(protocol, objective, adapter, kind, seed, n_train)
    if seed == 14:
        targets = ("q_proj", "k_proj", "v_proj", "o_proj") if kind == "causal" else ("query", "key", "value")
        options = options.model_copy(update={"lora": LoraOptions(r=4, alpha=8, target_modules=targets)})
    return options


def _task_file(root, name: str, body: str) -> None:
    (root / f"{name}.yaml").write_text(
        f"{body}data:\n  train: {{path: {name}-train.jsonl}}\n  test: {{path: {name}-test.jsonl}}\n"
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_llama_dir, tiny_bert_dir):
    """LoRA cells registered: tiny (2 labels) v1, v2 on llama; topic (3 labels) v1 on llama; tiny-enc
    (2 labels) v1, v2 on bert."""
    root = tmp_path_factory.mktemp("shared-lora")
    two, three = ("negative", "positive"), ("world", "sports", "business")
    for name, labels in (("tiny", two), ("tiny-enc", two), ("topic", three)):
        write_jsonl(root / f"{name}-train.jsonl", make_rows(8, labels=labels))
        write_jsonl(
            root / f"{name}-test.jsonl",
            [{"text": f"test item {i} {y}", "label": y} for i in range(4) for y in labels],
        )
    binary = "labels:\n  - name: negative\n    words: [bad]\n  - name: positive\n    words: [good]\n"
    _task_file(root, "tiny", "name: tiny\n" + binary)
    _task_file(root, "tiny-enc", "name: tiny-enc\n" + binary)
    _task_file(root, "topic", TOPIC)
    cells = (
        ("tiny", tiny_llama_dir, SEEDS),
        ("topic", tiny_llama_dir, SEEDS[:1]),
        ("tiny-enc", tiny_bert_dir, SEEDS),
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    results, tests = {}, {}
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("TASKTUNE_CACHE", str(root / "cache"))
            mp.setattr(ft_route, "default_options", _quick_lora)
            for name, folder, seeds in cells:
                spec = load_task(root / f"{name}.yaml")
                outcome = run_matrix(
                    spec,
                    route_names=["lora"],
                    backbone_names=[str(folder)],
                    protocol="few",
                    seeds=list(seeds),
                    k=4,
                    out_dir=root / "out" / name,  # cell names do not name the task
                    device="cpu",
                    registry_root=root / "registry",
                )
                assert not outcome.failures, outcome.failures
                tests[name] = load_splits(spec)["test"].examples
                for seed in seeds:
                    result = read_result(
                        root / "out" / name / f"{cell_name('lora', str(folder), 'few', seed)}.json"
                    )
                    results[(name, result.info.route_config["registry_version"])] = result
    finally:
        torch.set_num_threads(threads)
    assert sorted(results) == [("tiny", 1), ("tiny", 2), ("tiny-enc", 1), ("tiny-enc", 2), ("topic", 1)]
    with Registry(root / "registry") as reg:
        artifacts = {key: reg.load(*key) for key in results}
    return {"root": root, "results": results, "tests": tests, "artifacts": artifacts}


def _probe(backbone) -> torch.Tensor:
    """The pristine model's output on a fixed input (one thread: the module fixture runs before the
    per-test one-thread fixture, and thread counts change the last bits)."""
    ids = torch.tensor([[3, 4, 5, 6, 7, 8]])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            out = backbone.model(input_ids=ids)
    finally:
        torch.set_num_threads(threads)
    return out.logits if backbone.kind == "causal" else out.last_hidden_state


@pytest.fixture(scope="module")
def backbones(tiny_llama_dir, tiny_bert_dir):
    """The backbones, with their outputs on a probe taken before any adapter exists."""
    out = {}
    for which, folder in (("llama", tiny_llama_dir), ("bert", tiny_bert_dir)):
        backbone = load_backbone(str(folder), device="cpu")
        out[which] = (backbone, _probe(backbone).clone())
    return out


WHICH = {"tiny": "llama", "topic": "llama", "tiny-enc": "bert"}


@pytest.fixture(scope="module")
def shared(trained, backbones):
    """One host per backbone with every adaptation on it."""
    hosts = {which: SharedLoraHost(bb) for which, (bb, _) in backbones.items()}
    scorers = {}
    for key, artifact in trained["artifacts"].items():
        scorer = restore_shared_lora(artifact, hosts[WHICH[key[0]]])
        assert isinstance(scorer, SharedLoraScorer)
        scorers[key] = scorer
    return hosts, scorers


def test_each_shared_scorer_gives_the_restored_and_evaluated_probabilities(trained, backbones, shared):
    _, scorers = shared
    for key, scorer in scorers.items():
        test = trained["tests"][key[0]]
        records = trained["results"][key].records
        restored = restore_scorer(trained["artifacts"][key], backbones[WHICH[key[0]]][0])
        assert isinstance(restored, FinetunedClassifier)
        probs = predict(scorer, test, batch_size=32).probs
        np.testing.assert_allclose(probs, predict(restored, test, batch_size=32).probs, atol=1e-5, rtol=0)
        assert [e.row for e in test] == [r.row for r in records]
        np.testing.assert_allclose(probs, np.array([r.probs for r in records]), atol=1e-5, rtol=0)
        assert probs.argmax(1).tolist() == [r.pred for r in records]
        assert probs.shape[1] == scorer.num_labels == (3 if key[0] == "topic" else 2)


@pytest.mark.parametrize("which", ["llama", "bert"])
def test_mixed_rows_of_different_adapters_equal_each_alone(shared, which):
    hosts, scorers = shared
    mine = [s for key, s in scorers.items() if WHICH[key[0]] == which]
    assert len({mix_key(s) for s in mine}) == 1 and mix_key(mine[0])[0] == "shared-lora"
    rng = random.Random(0)
    rows = [(rng.choice(mine), Example(rng.choice(TEXTS), 0)) for _ in range(20)]
    mixed = mixed_lora_proba(rows)
    for (scorer, example), probs in zip(rows, mixed, strict=True):
        alone = scorer.predict_proba([example])[0]
        assert probs.shape == alone.shape == (scorer.num_labels,)
        np.testing.assert_allclose(probs, alone, atol=1e-4, rtol=0)
        assert probs.argmax() == alone.argmax()
    # The adapters really differ (rows could not pass by running one adapter for all).
    a, b = mine[0], mine[1]
    assert a.num_labels == b.num_labels
    batch = [Example(t, 0) for t in TEXTS]
    pa, pb = a.predict_proba(batch), b.predict_proba(batch)
    assert np.abs(pa - pb).max() > 1e-3
    # PEFT's "active adapter" is global state a forward never reads: rows name their adapter.
    hosts[which].peft_model.set_adapter(b.adapter)
    np.testing.assert_array_equal(a.predict_proba(batch), pa)


def test_the_pristine_backbone_is_untouched(backbones, shared):
    from peft.tuners.tuners_utils import BaseTunerLayer

    hosts, _ = shared
    for which, (backbone, before) in backbones.items():
        assert not any(isinstance(m, BaseTunerLayer) for m in backbone.model.modules())
        assert not any("lora_" in n for n, _ in backbone.model.named_parameters())
        assert torch.equal(_probe(backbone), before)
        host = hosts[which]
        assert host.model is not backbone.model and host.backbone is backbone
        pristine = {p.data_ptr() for p in backbone.model.parameters()}
        assert not pristine & {p.data_ptr() for p in host.model.parameters()}  # a copy, not a view


def test_n_adapters_cost_one_copy_of_the_backbone(trained, backbones, shared):
    hosts, scorers = shared
    for which, (backbone, _) in backbones.items():
        mine = {k: s for k, s in scorers.items() if WHICH[k[0]] == which}
        assert len(mine) >= 2 and all(s.host is hosts[which] for s in mine.values())
        assert len(hosts[which].adapters) == len(mine)
        base = sum(p.numel() for p in backbone.model.parameters())
        lora = sum(
            t.numel() for k in mine for n, t in trained["artifacts"][k].tensors.items() if ".lora_" in n
        )
        assert lora > 0
        assert hosts[which].parameter_count() == base + lora  # one copy plus the LoRA matrices


def test_unloading_deletes_the_adapter_now_or_at_the_next_forward(trained, backbones):
    backbone = backbones["llama"][0]
    host = SharedLoraHost(backbone)
    a = restore_shared_lora(trained["artifacts"][("tiny", 1)], host)
    b = restore_shared_lora(trained["artifacts"][("tiny", 2)], host)
    one = host.parameter_count()
    a.release()  # the host is idle: deleted at once
    assert list(host.adapters) == [b.adapter] and a.adapter not in host.peft_model.peft_config
    assert host.parameter_count() < one
    with pytest.raises(TaskTuneError, match="no longer loaded"):
        a.predict_proba([Example("x", 0)])
    # Busy host (a forward in another thread): the release does not wait, the next forward deletes it.
    held, done = threading.Event(), threading.Event()

    def hold():
        with host.lock:
            held.set()
            done.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    held.wait(10)
    b.release()
    assert b.adapter in host.adapters  # deferred
    done.set()
    t.join()
    with pytest.raises(TaskTuneError, match="no longer loaded"):
        b.predict_proba([Example("x", 0)])
    assert host.adapters == {} and host.parameter_count() == sum(
        p.numel() for p in backbone.model.parameters()
    )


def test_adding_and_deleting_adapters_while_forwarding_is_safe(trained, backbones):
    host = SharedLoraHost(backbones["llama"][0])
    a = restore_shared_lora(trained["artifacts"][("tiny", 1)], host)
    batch = [Example(t, 0) for t in TEXTS]
    expected = a.predict_proba(batch)
    errors: list[BaseException] = []

    def churn():  # a loader thread adding and an admin deleting another adapter
        try:
            for _ in range(4):
                restore_shared_lora(trained["artifacts"][("tiny", 2)], host).release()
        except BaseException as err:  # reported below
            errors.append(err)

    t = threading.Thread(target=churn)
    t.start()
    while t.is_alive():
        np.testing.assert_allclose(a.predict_proba(batch), expected, atol=1e-6, rtol=0)
    t.join()
    assert not errors
    a.predict_proba(batch)  # purges a deletion deferred while a forward ran
    assert list(host.adapters) == [a.adapter]
    # A forward that fails leaves no adapter_names hooks behind.
    broken = copy.copy(a)
    broken._label_ids = torch.tensor([10**6, 10**6 + 1])
    with pytest.raises((RuntimeError, IndexError)):
        mixed_lora_proba([(a, batch[0]), (broken, batch[1])])
    assert not any(m._forward_pre_hooks for m in host.model.modules() if isinstance(m, LoraLayer))
    np.testing.assert_allclose(a.predict_proba(batch), expected, atol=1e-6, rtol=0)


def test_what_cannot_share_the_host_is_refused_and_restored_alone(trained, backbones, tmp_path):
    artifact = trained["artifacts"][("tiny", 1)]
    backbone = backbones["llama"][0]
    host = SharedLoraHost(backbone)
    for change, message in (({"use_dora": True}, "DoRA"), ({"bias": "lora_only"}, "biases")):
        config = {**artifact.json_files["lora_config.json"], **change}
        edited = dataclasses.replace(artifact, json_files={**artifact.json_files, "lora_config.json": config})
        with pytest.raises(SharedLoraRefused, match=message):
            restore_shared_lora(edited, host)
    assert host.model is None  # nothing was copied for a refused adapter
    # The loader serves a refused adapter the old way (its own copy): same answers.
    loader = RegistryLoader(ServeSettings(registry=tmp_path, device="cpu"))
    loader.backbones[backbone.name] = backbone
    scorer = loader._restore(edited, backbone.name, backbone)
    assert isinstance(scorer, FinetunedClassifier)
    test = trained["tests"]["tiny"]
    expected = np.array([r.probs for r in trained["results"][("tiny", 1)].records])
    np.testing.assert_allclose(scorer.predict_proba(test), expected, atol=1e-5, rtol=0)


def test_server_mixes_pinned_lora_versions_as_single_requests(
    trained, tiny_llama_dir, tiny_bert_dir, tmp_path, monkeypatch
):
    settings = ServeSettings(
        registry=trained["root"] / "registry",
        log_db=tmp_path / "log.sqlite",
        admin_token=TOKEN,
        backbones={tiny_llama_dir.name: str(tiny_llama_dir), tiny_bert_dir.name: str(tiny_bert_dir)},
        device="cpu",
        batch_wait_ms=20,
        max_batch=16,
    )
    app = create_app(settings)
    rng = random.Random(1)
    targets = [("tiny", 1), ("tiny", 2), ("topic", 1), ("tiny-enc", 1), ("tiny-enc", 2)]
    requests = []
    for _ in range(30):
        task, version = rng.choice(targets)
        requests.append({"task": task, "version": version, "texts": rng.sample(TEXTS, rng.randint(1, 3))})
    adapters_per_pass: list[int] = []
    real = batcher_module.MIXED["shared-lora"]

    def counting(rows, max_rows=None):
        adapters_per_pass.append(len({s.adapter for s, _ in rows}))
        return real(rows, max_rows)

    monkeypatch.setitem(batcher_module.MIXED, "shared-lora", counting)
    with TestClient(app) as c:
        _wait_ready(c, timeout=60)
        for task, version in (("tiny", 1), ("tiny-enc", 1)):  # the latest versions loaded at start
            assert (
                c.post(f"/admin/tasks/{task}/load", json={"ref": version}, headers=ADMIN).status_code == 200
            )
        loader = app.state.tasktune.pool._load
        hosts = loader.lora_hosts
        assert sorted(hosts) == sorted([tiny_llama_dir.name, tiny_bert_dir.name])
        assert len(hosts[tiny_llama_dir.name].adapters) == 3 and len(hosts[tiny_bert_dir.name].adapters) == 2
        with ThreadPoolExecutor(12) as ex:  # concurrent: the batcher mixes adapters in one pass
            concurrent = list(ex.map(lambda body: c.post("/v1/predict", json=body).json(), requests))
        stats = app.state.tasktune.batcher.stats
        assert stats.rows / max(stats.batches, 1) > 1  # some batches really held several requests
        assert max(adapters_per_pass) > 1  # and some forward passes ran several adapters
        single = [c.post("/v1/predict", json=body).json() for body in requests]  # one at a time
        # Each version answers as its evaluation recorded.
        test = trained["tests"]["tiny"]
        for version in (1, 2):
            body = c.post(
                "/v1/predict", json={"task": "tiny", "version": version, "texts": [e.text for e in test]}
            )
            records = trained["results"][("tiny", version)].records
            served = [
                [p["probabilities"][n] for n in ("negative", "positive")] for p in body.json()["predictions"]
            ]
            np.testing.assert_allclose(served, [r.probs for r in records], atol=1e-5, rtol=0)
        # Unloading a version deletes its adapter from the host.
        assert c.post("/admin/tasks/tiny/unload", json={"version": 1}, headers=ADMIN).status_code == 200
        c.post("/v1/predict", json={"task": "tiny", "texts": ["after"]})  # a forward purges a deferred delete
        assert len(hosts[tiny_llama_dir.name].adapters) == 2
        assert c.post("/v1/predict", json={"task": "tiny", "version": 1, "texts": ["x"]}).status_code == 404
    for a, b in zip(concurrent, single, strict=True):
        assert (a["task"], a["version"]) == (b["task"], b["version"])
        assert [p["label"] for p in a["predictions"]] == [p["label"] for p in b["predictions"]]
        for pa, pb in zip(a["predictions"], b["predictions"], strict=True):
            for label in pa["probabilities"]:
                assert abs(pa["probabilities"][label] - pb["probabilities"][label]) <= 1e-4


def test_a_head_that_reads_the_template_is_not_put_on_the_host(backbones):
    """The host reads the bare text; an encoder head trained on the template would be answered wrong."""
    from tasktune.serving.shared_lora import applies

    bert = backbones["bert"][0]
    options = ft_route.default_options("few", "head", "lora", "encoder", 13)
    assert options.head_input == "text" and applies(bert, options)
    assert not applies(bert, options.model_copy(update={"head_input": "template"}))


def test_an_adapter_peft_fails_to_add_leaves_nothing_on_the_host(trained, backbones, monkeypatch):
    """PEFT forgets the config of an adapter whose injection raised halfway, not its injected modules."""
    from peft.tuners.lora import LoraModel

    host = SharedLoraHost(backbones["llama"][0])
    a = restore_shared_lora(trained["artifacts"][("tiny", 1)], host)
    before = host.parameter_count()
    real, calls = LoraModel._create_and_replace, []

    def fail_on_the_third(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("injection failed halfway")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(LoraModel, "_create_and_replace", fail_on_the_third)
    with pytest.raises(SharedLoraRefused, match="injection failed halfway"):
        restore_shared_lora(trained["artifacts"][("tiny", 2)], host)
    monkeypatch.undo()
    assert len(calls) == 3 and list(host.adapters) == [a.adapter]
    names = {n for m in host.model.modules() if isinstance(m, LoraLayer) for n in m.lora_A}
    assert names == {a.adapter} and host.parameter_count() == before
    b = restore_shared_lora(trained["artifacts"][("tiny", 2)], host)  # the host still takes adapters
    assert set(host.adapters) == {a.adapter, b.adapter}
