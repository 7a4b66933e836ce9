"""End to end: adaptations trained by the runner and kept in the registry are served by
``create_app`` loading from that registry (backbone loaded once, each version restored onto it), and
answer with the probabilities their evaluation recorded."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from tasktune.evaluation.results import read_result
from tasktune.routes.prompt_tuning import route as pt_route
from tasktune.runner import cell_name, run_matrix
from tasktune.serving.app import create_app
from tasktune.serving.settings import ServeSettings
from tasktune.task.data import load_splits
from tasktune.task.spec import load_task
from tests.routes.test_restore import _quick_prompt_tuning
from tests.serving.conftest import ADMIN, _wait_ready
from tests.serving.stubs import TOKEN

ROUTES = ("prompt_tuning", "prompting")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_llama_dir):
    from tests.conftest import write_tiny_task

    root = tmp_path_factory.mktemp("served")
    write_tiny_task(root, n_train=20, n_test=6)
    spec = load_task(root / "task.yaml")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("TASKTUNE_CACHE", str(root / "cache"))
            mp.setattr(pt_route, "default_options", _quick_prompt_tuning)
            outcome = run_matrix(
                spec,
                route_names=ROUTES,
                backbone_names=[str(tiny_llama_dir)],
                protocol="few",
                seeds=[13],
                k=4,
                out_dir=root / "out",
                device="cpu",
                registry_root=root / "registry",
            )
    finally:
        torch.set_num_threads(threads)
    assert not outcome.failures, outcome.failures
    results = {
        r: read_result(root / "out" / f"{cell_name(r, str(tiny_llama_dir), 'few', 13)}.json") for r in ROUTES
    }
    return root, results, load_splits(spec)["test"].examples


def test_served_versions_answer_as_evaluated(trained, tiny_llama_dir, tmp_path):
    root, results, test = trained
    settings = ServeSettings(
        registry=root / "registry",
        log_db=tmp_path / "log.sqlite",
        admin_token=TOKEN,
        backbones={tiny_llama_dir.name: str(tiny_llama_dir)},
        device="cpu",
    )
    app = create_app(settings)
    texts = [e.text for e in test]
    with TestClient(app) as c:
        _wait_ready(c, timeout=60)
        tasks = c.get("/v1/tasks").json()["tasks"]
        assert [t["task"] for t in tasks] == ["tiny"] and tasks[0]["active_version"] == 2  # latest
        loader = app.state.tasktune.pool._load
        assert list(loader.backbones) == [tiny_llama_dir.name]  # one backbone for both versions
        for route, result in results.items():
            version = result.info.route_config["registry_version"]
            if version not in c.get("/v1/tasks").json()["tasks"][0]["loaded_versions"]:
                r = c.post("/admin/tasks/tiny/load", json={"ref": version}, headers=ADMIN)
                assert r.status_code == 200
            body = c.post("/v1/predict", json={"task": "tiny", "texts": texts, "version": version}).json()
            assert body["version"] == version and body["route"] == route
            by_row = {r.row: r.probs for r in result.records}
            for e, p in zip(test, body["predictions"], strict=True):
                served = [p["probabilities"][n] for n in ("negative", "positive")]
                np.testing.assert_allclose(served, by_row[e.row], atol=1e-5)
        stats = c.get("/v1/stats").json()["tasks"][0]
        active = next(r for r in results.values() if r.info.route_config["registry_version"] == 2)
        reference = np.bincount([int(np.argmax(r.probs)) for r in active.records], minlength=2).tolist()
        assert stats["label_mix"]["reference"] == reference  # the evaluation reference travelled along


def test_serve_cli_refuses_bad_settings_with_a_message(tmp_path, capsys):
    from tasktune.cli.main import main

    assert main(["serve", "--registry", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["serve", "--registry", str(tmp_path), "--tasks", "Bad Task"]) == 2
    assert "not a task reference" in capsys.readouterr().err
    assert main(["serve", "--registry", str(tmp_path), "--backbone", "no-equals-sign"]) == 2


def test_default_version_is_production_then_candidate_then_latest(trained, tiny_llama_dir, tmp_path):
    from tasktune.registry import Registry

    root, _, _ = trained
    settings = ServeSettings(
        registry=root / "registry",
        log_db=tmp_path / "log.sqlite",
        backbones={tiny_llama_dir.name: str(tiny_llama_dir)},
        device="cpu",
    )

    def active() -> int:
        with TestClient(create_app(settings)) as c:
            _wait_ready(c, timeout=60)
            return c.get("/v1/tasks").json()["tasks"][0]["active_version"]

    with Registry(root / "registry") as reg:
        reg.set_alias("tiny", "candidate", 1)
    try:
        assert active() == 1  # what `tasktune run` recommended
        with Registry(root / "registry") as reg:
            reg.set_alias("tiny", "production", 2)
        assert active() == 2  # what a person promoted wins
    finally:
        with Registry(root / "registry") as reg:
            for alias in ("candidate", "production"):
                if alias in reg.aliases("tiny"):
                    reg.remove_alias("tiny", alias)
