"""A real uvicorn server on stub adaptations, for the graceful-shutdown test (runs in a subprocess).

python -m tests.serving.run_stub_server PORT LOG_DB DELAY_S
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import uvicorn

from tasktune.serving.app import create_app
from tasktune.serving.settings import ServeSettings
from tests.serving.stubs import StubScorer, served, stub_pool


def main() -> None:
    port, log_db, delay = int(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
    pool, _ = stub_pool(served("sentiment", 1, scorer=StubScorer(delay=delay)))
    settings = ServeSettings(registry=log_db.parent / "registry", log_db=log_db, port=port, batch_wait_ms=50)
    uvicorn.run(
        create_app(settings, pool=pool),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=20,
    )


REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_stub_server(log_db: Path, delay: float, *, timeout: float = 60) -> tuple[subprocess.Popen, str]:
    """Start this module as a subprocess on a free loopback port; return it and its base URL once it
    says it is ready (the test fails if it dies or never gets there)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.serving.run_stub_server", str(port), str(log_db), str(delay)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health/ready", timeout=1).status_code == 200:
                return proc, base
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise AssertionError(f"the stub server died: {proc.stdout.read().decode()[-2000:]}")
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("the stub server never became ready")


if __name__ == "__main__":
    main()
