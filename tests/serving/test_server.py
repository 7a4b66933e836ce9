"""Queue, deadlines, readiness, hot swap, admin token, prediction log, feedback, metrics, A/B — on
stub adaptations (R12, R13, R15, R17, R18, R20, R22)."""

from __future__ import annotations

import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tasktune.serving.app import create_app
from tasktune.serving.errors import ServingError
from tests.serving.conftest import ADMIN, _wait_ready, settings_for
from tests.serving.stubs import served, stub_pool

PREDICT = "/v1/predict"


def predict(c, task="sentiment", texts=("a good film",), **kw):
    return c.post(PREDICT, json={"task": task, "texts": list(texts), **kw})


# --- R12 / R13 -----------------------------------------------------------------------------------------
def test_full_queue_answers_429_fast_with_retry_after(tmp_path):
    pool, _ = stub_pool(served("sentiment", 1))
    scorer = pool.active("sentiment").scorer
    app = create_app(settings_for(tmp_path, queue_rows=16, max_batch=4), pool=pool)
    with TestClient(app) as c, ThreadPoolExecutor(8) as ex:
        _wait_ready(c)
        scorer.gate.clear()  # the model stalls: the queue fills
        held = [ex.submit(predict, c, texts=["x"] * 4) for _ in range(5)]  # 1 batch running + 16 rows queued
        deadline = time.monotonic() + 5
        while app.state.tasktune.batcher.depth < 16 and time.monotonic() < deadline:
            time.sleep(0.01)
        start = time.perf_counter()
        r = predict(c, texts=["one more"])
        assert r.status_code == 429 and time.perf_counter() - start < 0.5
        assert r.headers["Retry-After"] == "1" and r.json()["error"]["type"] == "overloaded"
        assert app.state.tasktune.batcher.depth <= 16  # bounded
        scorer.gate.set()
        assert [f.result().status_code for f in held] == [200] * 5


def test_deadline_gives_504_frees_the_slot_and_spares_batch_mates(tmp_path):
    pool, _ = stub_pool(served("sentiment", 1))
    scorer = pool.active("sentiment").scorer
    app = create_app(settings_for(tmp_path), pool=pool)
    with TestClient(app) as c, ThreadPoolExecutor(4) as ex:
        _wait_ready(c)
        scorer.gate.clear()
        first = ex.submit(predict, c, texts=["occupies the worker"])
        time.sleep(0.1)
        patient = ex.submit(predict, c, texts=["patient"])
        hasty = ex.submit(predict, c, texts=["hasty"], deadline_ms=200)
        r = hasty.result(timeout=5)
        assert r.status_code == 504 and r.json()["error"]["type"] == "deadline_exceeded"
        assert app.state.tasktune.batcher.depth == 1  # only "patient" still waits: the slot was freed
        scorer.gate.set()
        assert first.result().status_code == 200 and patient.result().status_code == 200


# --- R15 -------------------------------------------------------------------------------------------------
def test_live_before_ready_ready_after_load_and_warm_up(tmp_path):
    from tasktune.serving.pool import ModelPool
    from tests.serving.stubs import StubLoader

    loader = StubLoader([served("sentiment", 1)])
    loader.gate.clear()  # loading takes "forever"
    app = create_app(settings_for(tmp_path, tasks=("sentiment",)), pool=None)
    app.state.tasktune.pool.__init__(loader)  # the app's pool, loading through the stub registry
    assert isinstance(app.state.tasktune.pool, ModelPool)
    with TestClient(app) as c:
        assert c.get("/health/live").status_code == 200
        r = c.get("/health/ready")
        assert r.status_code == 503 and r.json()["error"]["type"] == "not_ready"
        assert predict(c).status_code == 503
        loader.gate.set()
        _wait_ready(c)
        assert loader.versions[("sentiment", 1)].scorer.calls >= 1  # the warm-up pass ran
        assert predict(c).status_code == 200


def test_failed_initial_load_stays_live_never_ready(tmp_path):
    from tests.serving.stubs import StubLoader

    loader = StubLoader([served("sentiment", 1)])
    loader.fail = "weights do not match their hash"
    app = create_app(settings_for(tmp_path, tasks=("sentiment",)))
    app.state.tasktune.pool.__init__(loader)
    with TestClient(app) as c:
        time.sleep(0.2)
        assert c.get("/health/live").status_code == 200
        r = c.get("/health/ready")
        assert r.status_code == 503 and "weights do not match" in r.json()["error"]["message"]


# --- R17 -------------------------------------------------------------------------------------------------
def test_hot_swap_under_load_drops_nothing_and_a_failed_load_keeps_the_old_version(tmp_path, stub):
    pool, loader = stub
    app = create_app(settings_for(tmp_path), pool=pool)
    stop = threading.Event()
    seen: list[tuple[int, int]] = []

    def traffic(c):
        while not stop.is_set():
            r = predict(c, texts=["steady traffic"])
            seen.append((r.status_code, r.json().get("version", -1)))

    with TestClient(app) as c:
        _wait_ready(c)
        with ThreadPoolExecutor(4) as ex:
            workers = [ex.submit(traffic, c) for _ in range(4)]
            time.sleep(0.2)
            r = c.post("/admin/tasks/sentiment/activate", json={"ref": 2}, headers=ADMIN)
            assert r.status_code == 200 and r.json()["active_version"] == 2
            time.sleep(0.2)
            loader.fail = "corrupt artifact"
            r = c.post("/admin/tasks/sentiment/activate", json={"ref": 1}, headers=ADMIN)
            assert r.status_code == 409 and "corrupt" in r.json()["error"]["message"]
            time.sleep(0.2)
            stop.set()
            for w in workers:
                w.result()
    assert seen and all(code == 200 for code, _ in seen)
    versions = [v for _, v in seen]
    assert 1 in versions and 2 in versions and versions[-1] == 2  # the failed load left v2 serving
    assert r.status_code == 409


def test_unloading_a_serving_version_is_refused(client):
    assert client.post("/admin/tasks/sentiment/load", json={"ref": 2}, headers=ADMIN).status_code == 200
    r = client.post("/admin/tasks/sentiment/unload", json={"version": 1}, headers=ADMIN)
    assert r.status_code == 409
    assert client.post("/admin/tasks/sentiment/unload", json={"version": 2}, headers=ADMIN).status_code == 200
    assert predict(client, version=2).status_code == 404


# --- R18 -------------------------------------------------------------------------------------------------
PUBLIC_WRITES = {"/v1/predict", "/v1/feedback"}  # data routes by design: they change no server state


def _mutating_routes(app):
    """Every route the app serves, from its OpenAPI document (routers included), plus a check that
    nothing is served outside it but the docs pages."""
    paths = app.openapi()["paths"]
    for route in app.routes:
        path = getattr(route, "path", None)
        assert (
            path is None
            or path in paths
            or path in ("/", "/openapi.json", "/redoc")
            or path.startswith("/docs")
        ), path
    for path, operations in paths.items():
        methods = {m.upper() for m in operations} - {"GET", "HEAD", "OPTIONS"}
        if methods and path not in PUBLIC_WRITES:
            yield path.replace("{task}", "sentiment"), sorted(methods)


def test_every_mutating_route_needs_the_token(client):
    routes = list(_mutating_routes(client.app))
    assert sum(len(methods) for _, methods in routes) >= 6  # load, activate, unload, A/B start/stop/promote
    for path, methods in routes:
        assert path.startswith("/admin/"), path
        for method in methods:
            for headers in (
                {},
                {"Authorization": "Bearer wrong-token-wrong-token"},
                {"Authorization": "Basic x"},
            ):
                r = client.request(
                    method, path, json={"ref": 2, "version": 1, "a": 1, "b": 2}, headers=headers
                )
                assert r.status_code == 401, (method, path, headers, r.status_code)
                assert r.headers.get("WWW-Authenticate") == "Bearer"
    assert client.app.state.tasktune.pool.active("sentiment").version == 1  # nothing changed


def test_without_a_configured_token_admin_is_disabled_and_loopback_is_the_default(tmp_path, stub):
    from tasktune.serving.settings import ServeSettings

    assert ServeSettings().host == "127.0.0.1"
    pool, _ = stub
    app = create_app(settings_for(tmp_path, admin_token=None), pool=pool)
    with TestClient(app) as c:
        _wait_ready(c)
        for path, methods in _mutating_routes(app):
            for method in methods:
                r = c.request(method, path, json={"ref": 2}, headers=ADMIN)
                assert r.status_code == 403 and r.json()["error"]["type"] == "admin_disabled"


# --- R20 -------------------------------------------------------------------------------------------------
def test_log_rows_feedback_idempotent_and_live_accuracy_matches_offline(client, tmp_path):
    ids, truth = [], {}
    for i in range(12):
        texts = [f"review {i}", f"another review {i}"]
        r = predict(client, texts=texts)
        assert r.status_code == 200
        ids.append((r.json()["request_id"], len(texts)))
    for n, (rid, k) in enumerate(ids[:9]):
        labels = ["positive" if (n + j) % 3 else 0 for j in range(k)]
        if n == 4:
            labels[1] = None  # unknown: no feedback row
        r = client.post("/v1/feedback", json={"request_id": rid, "labels": labels})
        assert r.status_code == 200
        truth[rid] = labels
        again = client.post("/v1/feedback", json={"request_id": rid, "labels": labels})
        assert again.json()["recorded"] == 0 and again.json()["unchanged"] == sum(
            x is not None for x in labels
        )
    flipped = ["negative" if x == "positive" else "positive" for x in truth[ids[0][0]]]
    r = client.post("/v1/feedback", json={"request_id": ids[0][0], "labels": flipped})
    assert r.status_code == 409
    bad = client.post("/v1/feedback", json={"request_id": ids[10][0], "labels": ["meh", None]})
    assert bad.status_code == 422 and bad.json()["error"]["expected"] == ["negative", "positive"]
    short = client.post("/v1/feedback", json={"request_id": ids[10][0], "labels": ["positive"]})
    assert short.status_code == 422
    unknown = client.post("/v1/feedback", json={"request_id": "0" * 32, "labels": [1]})
    assert unknown.status_code == 404

    db = sqlite3.connect(tmp_path / "log.sqlite")
    n_rows = db.execute("SELECT COUNT(*) FROM predictions WHERE input_sha256 != ''").fetchone()[0]
    warmups = db.execute(
        "SELECT COUNT(*) FROM predictions WHERE request_id NOT IN ({})".format(",".join("?" * len(ids))),
        [rid for rid, _ in ids],
    ).fetchone()[0]
    assert n_rows - warmups == 24 and warmups == 0  # warm-up passes are not logged as traffic
    offline = db.execute(
        "SELECT COUNT(*), SUM(p.label = f.label) FROM predictions p JOIN feedback f USING (request_id, item)"
    ).fetchone()
    live = next(a for a in client.get("/v1/stats").json()["tasks"][0]["live_accuracy"] if a["version"] == 1)
    assert live["n_feedback"] == offline[0] == 17
    assert live["accuracy"] == round(offline[1] / offline[0], 4)


# --- R22 -------------------------------------------------------------------------------------------------
def test_metrics_are_prometheus_text_with_bounded_task_labels(client):
    predict(client)
    predict(client, task="topic")
    for i in range(5):
        predict(client, task=f"made-up-{i}")
    client.get("/v1/stats")
    text = client.get("/metrics").text
    tasks = set()
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        for sample in family.samples:
            if "task" in sample.labels:
                tasks.add(sample.labels["task"])
    assert tasks <= {"sentiment", "topic", "other"} and "other" in tasks
    assert {"tasktune_requests", "tasktune_request_latency_seconds", "tasktune_batch_rows"} <= names


# --- A/B ------------------------------------------------------------------------------------------------
def test_ab_split_feedback_verdict_and_promotion(client):
    assert client.post("/admin/tasks/sentiment/load", json={"ref": 2}, headers=ADMIN).status_code == 200
    r = client.post("/admin/tasks/sentiment/ab", json={"a": 1, "b": 2, "share_b": 0.5}, headers=ADMIN)
    assert r.status_code == 200
    arms = {}
    for i in range(120):
        body = predict(client, texts=[f"user text {i}"], key=f"user-{i}").json()
        arms.setdefault(body["arm"], 0)
        arms[body["arm"]] += 1
        assert body["version"] == (1 if body["arm"] == "A" else 2)
        again = predict(client, texts=["same user"], key=f"user-{i}").json()
        assert again["arm"] == body["arm"]  # sticky per key
        # B is right more often than A: feedback agrees with B's answer, and with A's on half of A's
        label = body["predictions"][0]["label"] if body["arm"] == "B" or i % 2 else None
        if label is not None:
            client.post("/v1/feedback", json={"request_id": body["request_id"], "labels": [label]})
    assert 30 < arms["A"] < 90
    ab = client.get("/v1/stats").json()["tasks"][0]["ab"]
    assert (
        ab["a"] == 1
        and ab["b"] == 2
        and ab["verdict"]["state"]
        in (
            "insufficient data",
            "no significant difference",
            "B better",
        )
    )
    r = client.post("/admin/tasks/sentiment/ab/promote", json={"arm": "B", "alias": None}, headers=ADMIN)
    assert r.status_code == 200 and r.json()["active_version"] == 2
    assert predict(client).json()["version"] == 2 and predict(client).json()["arm"] is None


def _gauge(client, name: str, task: str) -> float | None:
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name and sample.labels.get("task") == task:
                return sample.value
    return None


def test_feedback_names_labels_in_the_list_of_the_version_that_predicted(tmp_path):
    """Two versions of a task may order their labels differently: v2's answer, confirmed by name, is a
    correct answer (it was read with v1's label list and counted wrong)."""
    pool, _ = stub_pool(served("sentiment", 1), served("sentiment", 2, labels=("positive", "negative")))
    pool.load("sentiment", 2)
    with TestClient(create_app(settings_for(tmp_path), pool=pool)) as c:
        _wait_ready(c)
        body = predict(c, version=2).json()
        said = body["predictions"][0]["label"]
        r = c.post("/v1/feedback", json={"request_id": body["request_id"], "labels": [said]})
        assert r.status_code == 200 and r.json()["recorded"] == 1
        rows = {a["version"]: a for a in c.get("/v1/stats").json()["tasks"][0]["live_accuracy"]}
        assert rows[2]["n_feedback"] == 1 and rows[2]["accuracy"] == 1.0


def test_the_ab_verdict_counts_only_the_traffic_the_test_routed(client):
    for i in range(20):  # production traffic on v1 before the test, all of it answered wrong
        body = predict(client, texts=[f"before {i}"]).json()
        wrong = "negative" if body["predictions"][0]["label"] == "positive" else "positive"
        client.post("/v1/feedback", json={"request_id": body["request_id"], "labels": [wrong]})
    client.post("/admin/tasks/sentiment/load", json={"ref": 2}, headers=ADMIN)
    r = client.post("/admin/tasks/sentiment/ab", json={"a": 1, "b": 2, "share_b": 0.5}, headers=ADMIN)
    assert r.status_code == 200
    pinned = predict(client, texts=["pinned"], version=2).json()  # not routed by the test
    client.post("/v1/feedback", json={"request_id": pinned["request_id"], "labels": ["positive"]})
    verdict = client.get("/v1/stats").json()["tasks"][0]["ab"]["verdict"]
    assert verdict["n_a"] == 0 and verdict["n_b"] == 0


def test_a_running_ab_test_is_not_replaced_and_a_is_what_serves(client):
    client.post("/admin/tasks/sentiment/load", json={"ref": 2}, headers=ADMIN)
    ab = "/admin/tasks/sentiment/ab"
    assert client.post(ab, json={"a": 2, "b": 1}, headers=ADMIN).status_code == 409  # v1 serves, not v2
    assert client.post(ab, json={"a": 1, "b": 2}, headers=ADMIN).status_code == 200
    again = client.post(ab, json={"a": 1, "b": 2, "share_b": 0.5}, headers=ADMIN)
    assert again.status_code == 409 and "stop or promote it first" in again.text
    assert client.get("/v1/tasks").json()["tasks"][0]["ab"]["share_b"] == 0.1  # the first test runs on


def test_an_alias_the_registry_refuses_fails_before_the_pool_changes(client):
    client.post("/admin/tasks/sentiment/load", json={"ref": 2}, headers=ADMIN)
    client.post("/admin/tasks/sentiment/ab", json={"a": 1, "b": 2}, headers=ADMIN)
    for alias in ("Production", "latest", "v2"):
        r = client.post("/admin/tasks/sentiment/ab/promote", json={"arm": "B", "alias": alias}, headers=ADMIN)
        assert r.status_code == 422, alias
    task = client.get("/v1/tasks").json()["tasks"][0]
    assert task["active_version"] == 1 and task["ab"] is not None  # nothing switched


def test_a_scrape_alone_sees_live_accuracy_and_not_the_previous_versions(client):
    body = predict(client).json()
    client.post(
        "/v1/feedback", json={"request_id": body["request_id"], "labels": [body["predictions"][0]["label"]]}
    )
    assert _gauge(client, "tasktune_live_accuracy", "sentiment") == 1.0  # no /v1/stats call needed
    r = client.post("/admin/tasks/sentiment/activate", json={"ref": 2}, headers=ADMIN)
    assert r.status_code == 200
    assert _gauge(client, "tasktune_live_accuracy", "sentiment") is None  # v2 has no feedback yet


def test_a_version_unloaded_while_it_is_activated_is_not_made_active(stub):
    pool, _ = stub
    load = pool.load

    def load_then_unload(task, ref):  # an admin's unload landing between the load and the switch
        served_ = load(task, ref)
        pool.unload(task, served_.version)
        return served_

    pool.load = load_then_unload
    with pytest.raises(ServingError, match="unloaded while activating"):
        pool.activate("sentiment", 2)
    assert pool.routing["sentiment"].active == 1 and pool.active("sentiment").version == 1


def test_feedback_after_a_restart_reads_the_versions_labels_from_the_registry(tmp_path, stub):
    from tasktune.registry import Registry
    from tasktune.serving.pool import RegistryLoader
    from tests.serving.stubs import spec

    pool, loader = stub
    with pytest.raises(ServingError, match="not been served since this server started"):
        pool.spec_of("sentiment", 7)
    loader.task_spec = lambda task, version: spec(task, ("positive", "negative"))
    assert pool.spec_of("sentiment", 7).label_names == ["positive", "negative"]
    # The registry loader reads task.json alone (verified, no tensors).
    settings = settings_for(tmp_path)
    definition = spec("sentiment", ("positive", "negative")).definition()
    with Registry(settings.registry) as reg:
        reg.save("sentiment", "prompt", backbone=None, route="p", json_files={"task.json": definition})
    registry_loader = RegistryLoader(settings)
    assert registry_loader.task_spec("sentiment", 1).label_names == ["positive", "negative"]
    assert registry_loader.task_spec("sentiment", 2) is None
