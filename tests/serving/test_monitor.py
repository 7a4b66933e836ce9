"""The prediction log behind a database URL: several servers share one log (R20, R10)."""

import threading

import pytest

from tasktune.serving.monitor import URL_ENV, LoggedPrediction, PredictionLog
from tasktune.serving.settings import ServeSettings


def _rows(n: int, label: int = 1) -> list[LoggedPrediction]:
    return [LoggedPrediction(i, f"text {i}", label, [0.2, 0.8] if label else [0.8, 0.2]) for i in range(n)]


def test_two_servers_on_one_database_share_predictions_and_feedback(tmp_path):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    a, b = PredictionLog(url), PredictionLog(url)
    try:
        a.log("req-1", "sst2", 3, "A", _rows(2), latency_ms=5.0, ts=100.0)
        b.log("req-2", "sst2", 4, "B", _rows(1, label=0), latency_ms=6.0, ts=101.0)
        # Feedback reaching the other server finds the prediction, and either server sees it counted.
        assert b.prediction("req-1") == ("sst2", 3, 2)
        outcome = b.feedback("req-1", {0: 1, 1: 0})
        assert (outcome.recorded, outcome.unchanged, outcome.conflicts) == (2, 0, [])
        assert a.feedback("req-1", {0: 1}).unchanged == 1  # the same label again: a no-op
        assert a.feedback("req-1", {1: 1}).conflicts == [1]  # a different one: refused, first stands
        a.feedback("req-2", {0: 0})
        assert a.live_accuracy() == [
            {"task": "sst2", "version": 3, "n_feedback": 2, "correct": 1},
            {"task": "sst2", "version": 4, "n_feedback": 1, "correct": 1},
        ]
        assert a.live_accuracy("other") == []
        assert b.count() == 3 and a.label_counts("sst2", 3, 2) == [0, 2]
        recent = b.recent("sst2", 3, limit=5)
        assert recent["labels"].tolist() == [1, 1] and recent["length"].tolist() == [6, 6]
        assert a.prediction("unknown") is None
    finally:
        a.close()
        b.close()


def test_concurrent_writers_lose_nothing(tmp_path):
    url = f"sqlite:///{tmp_path / 'busy.db'}"
    logs = [PredictionLog(url) for _ in range(4)]
    errors = []

    def write(k: int) -> None:
        try:
            for j in range(25):
                logs[k].log(f"r{k}-{j}", "t", 1, None, _rows(3), latency_ms=1.0)
        except Exception as err:  # "database is locked" would land here
            errors.append(err)

    threads = [threading.Thread(target=write, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and logs[0].count() == 4 * 25 * 3
    for log in logs:
        log.close()


def test_the_log_url_comes_from_the_flag_then_the_environment_then_the_file(tmp_path, monkeypatch):
    monkeypatch.delenv(URL_ENV, raising=False)
    settings = ServeSettings(registry=tmp_path)
    assert settings.log_target == f"sqlite:///{tmp_path.absolute() / 'serving.sqlite'}"
    monkeypatch.setenv(URL_ENV, "postgresql+psycopg://u@h/log")
    assert settings.log_target == "postgresql+psycopg://u@h/log"
    explicit = ServeSettings(registry=tmp_path, log_url="sqlite:///elsewhere.db")
    assert explicit.log_target == "sqlite:///elsewhere.db"
    assert "elsewhere" not in repr(explicit)  # a URL may carry a password


def test_a_path_is_a_sqlite_file_readable_offline(tmp_path):
    import sqlite3

    log = PredictionLog(tmp_path / "deep" / "log.sqlite")
    log.log("r", "t", 1, None, _rows(2), latency_ms=1.0)
    log.close()
    rows = sqlite3.connect(tmp_path / "deep" / "log.sqlite").execute("SELECT COUNT(*) FROM predictions")
    assert rows.fetchone()[0] == 2


def test_an_unusable_database_is_a_clear_error(tmp_path):
    from tasktune.errors import TaskTuneError

    with pytest.raises(TaskTuneError, match="cannot open the prediction log at") as info:
        PredictionLog("nosuchdb://u:secret@h/x")
    assert "secret" not in str(info.value)
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(TaskTuneError, match="a-file"):
        PredictionLog(tmp_path / "a-file" / "log.sqlite")


def test_pruning_deletes_old_predictions_with_their_feedback_and_keeps_the_rest(tmp_path):
    log = PredictionLog(tmp_path / "log.sqlite")
    try:
        log.log("old", "sst2", 1, None, _rows(3), latency_ms=1.0, ts=100.0)
        log.log("new", "sst2", 1, None, _rows(2), latency_ms=1.0, ts=200.0)
        log.feedback("old", {0: 1, 1: 0})
        log.feedback("new", {0: 0})
        assert log.prune(before=150.0) == 3
        assert log.count() == 2 and log.prediction("old") is None
        # The old request's feedback went with it: live accuracy is the retained window's.
        assert log.live_accuracy() == [{"task": "sst2", "version": 1, "n_feedback": 1, "correct": 0}]
        assert log.prune(before=150.0) == 0  # nothing older is left
    finally:
        log.close()


def test_a_server_with_retention_prunes_at_start(tmp_path, stub):
    import time

    from fastapi.testclient import TestClient

    from tasktune.serving.app import create_app
    from tests.serving.conftest import _wait_ready, settings_for

    settings = settings_for(tmp_path, log_retention_days=1.0)
    seed = PredictionLog(settings.log_target)
    seed.log("stale", "sentiment", 1, None, _rows(2), latency_ms=1.0, ts=time.time() - 2 * 86400)
    seed.log("fresh", "sentiment", 1, None, _rows(1), latency_ms=1.0, ts=time.time() - 3600)
    seed.close()
    with TestClient(create_app(settings, pool=stub[0])) as c:
        _wait_ready(c)
        check = PredictionLog(settings.log_target)
        try:
            end = time.monotonic() + 10
            while check.prediction("stale") is not None and time.monotonic() < end:
                time.sleep(0.02)
            assert check.prediction("stale") is None and check.prediction("fresh") is not None
        finally:
            check.close()


def test_retention_must_be_positive():
    with pytest.raises(ValueError, match="log_retention_days"):
        ServeSettings(log_retention_days=0)
