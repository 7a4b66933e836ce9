from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tasktune.serving.app import create_app
from tasktune.serving.settings import ServeSettings
from tests.serving.stubs import TOKEN, served, stub_pool


def settings_for(tmp_path, **overrides) -> ServeSettings:
    base = {
        "registry": tmp_path / "registry",
        "log_db": tmp_path / "log.sqlite",
        "admin_token": TOKEN,
        "max_texts": 16,
        "max_text_chars": 500,
        "max_payload_bytes": 20_000,
        "queue_rows": 64,
        "batch_wait_ms": 1.0,
    }
    return ServeSettings(**{**base, **overrides})


@pytest.fixture
def stub():
    """Two tasks: sentiment (v1 active, v2 loadable) and topic (3 labels)."""
    return stub_pool(
        served("sentiment", 1),
        served("sentiment", 2),
        served("topic", 1, labels=("world", "sports", "business")),
    )


@pytest.fixture
def client(tmp_path, stub):
    pool, _ = stub
    app = create_app(settings_for(tmp_path), pool=pool)
    with TestClient(app) as c:
        _wait_ready(c)
        yield c


def _wait_ready(c: TestClient, timeout: float = 10.0) -> None:
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if c.get("/health/ready").status_code == 200:
            return
        time.sleep(0.01)
    raise AssertionError("server never became ready")


ADMIN = {"Authorization": f"Bearer {TOKEN}"}
