"""A real uvicorn server on stub adaptations, for the graceful-shutdown test (runs in a subprocess).

python -m tests.serving.run_stub_server PORT LOG_DB DELAY_S
"""

from __future__ import annotations

import sys
from pathlib import Path

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


if __name__ == "__main__":
    main()
