"""``tasktune serve``: put the registry's adaptations behind HTTP (see :mod:`tasktune.serving`)."""

from __future__ import annotations

from pathlib import Path

import typer
from pydantic import ValidationError

from tasktune.errors import TaskTuneError
from tasktune.registry.store import DEFAULT_ROOT


def serve(
    registry: Path = typer.Option(
        DEFAULT_ROOT, "--registry", envvar="TASKTUNE_REGISTRY", help="Registry folder."
    ),
    tasks: str = typer.Option(
        "",
        "--tasks",
        help="Comma-separated 'task' or 'task@alias' / 'task@v3' (default: every task, "
        "each at its production alias, else its candidate alias, else its latest version).",
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Bind address (loopback unless you mean it)."),
    port: int = typer.Option(8000, "--port"),
    device: str = typer.Option(None, "--device", help="cpu, cuda, cuda:1, mps (default: best available)."),
    backbone: list[str] = typer.Option(
        [], "--backbone", help="NAME=PATH: where a backbone an adaptation names lives (repeatable)."
    ),
    admin_token_file: Path = typer.Option(
        None,
        "--admin-token-file",
        help="File holding the admin bearer token (else TASKTUNE_ADMIN_TOKEN; "
        "without one, admin routes are disabled).",
        exists=True,
        dir_okay=False,
    ),
    max_batch: int = typer.Option(32, "--max-batch", help="Texts per forward pass."),
    batch_wait_ms: float = typer.Option(2.0, "--batch-wait-ms", help="How long a batch waits to fill."),
    queue_rows: int = typer.Option(1024, "--queue", help="Texts that may wait; beyond it: 429."),
    prefix_cache_mb: int = typer.Option(
        64, "--prefix-cache-mb", help="Memory for soft prompts' computed key/value prefixes (LRU)."
    ),
    log_db: Path = typer.Option(None, "--log-db", help="Prediction log (default <registry>/serving.sqlite)."),
) -> None:
    """Serve adaptations: predictions, feedback, monitoring, A/B tests and a dashboard at /."""
    import uvicorn

    from tasktune.serving.app import create_app
    from tasktune.serving.settings import ServeSettings, token_from_env

    token = admin_token_file.read_text(encoding="utf-8").strip() if admin_token_file else token_from_env()
    mapping = {}
    for item in backbone:
        name, sep, where = item.partition("=")
        if not sep or not name or not where:
            raise TaskTuneError(f"--backbone {item!r}: expected NAME=PATH")
        mapping[name] = where
    try:
        settings = ServeSettings(
            registry=registry,
            tasks=tuple(t.strip() for t in tasks.split(",") if t.strip()),
            backbones=mapping,
            device=device,
            host=host,
            port=port,
            admin_token=token,
            max_batch=max_batch,
            batch_wait_ms=batch_wait_ms,
            queue_rows=queue_rows,
            prefix_cache_mb=prefix_cache_mb,
            log_db=log_db,
        )
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        raise TaskTuneError(f"invalid serve settings: {problems}") from None
    if not registry.is_dir():
        raise TaskTuneError(f"registry folder {registry} does not exist (run `tasktune run` first)")
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level="info",
        timeout_graceful_shutdown=int(settings.shutdown_grace_s),
    )
