"""``tasktune serve``: put the registry's adaptations behind HTTP (see :mod:`tasktune.serving`)."""

from __future__ import annotations

import os
from pathlib import Path

import typer
from pydantic import ValidationError

from tasktune.errors import TaskTuneError
from tasktune.registry.store import DEFAULT_ROOT
from tasktune.serving.settings import ServeSettings

_FIELDS = ServeSettings.model_fields


def _opt(field: str, flag: str, help: str):
    """An option whose default is the settings model's own, so the two cannot drift apart."""
    return typer.Option(_FIELDS[field].default, flag, help=help)


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
    allow_hub: bool = _opt("allow_hub", "--allow-hub", "Let a backbone named by hub id download."),
    max_texts: int = _opt("max_texts", "--max-texts", "Texts one request may carry; beyond it: 422."),
    max_text_chars: int = _opt("max_text_chars", "--max-text-chars", "Characters per text; beyond it: 422."),
    max_payload_bytes: int = _opt(
        "max_payload_bytes", "--max-payload-bytes", "Request body limit in bytes; beyond it: 413."
    ),
    max_batch: int = _opt("max_batch", "--max-batch", "Texts per forward pass."),
    batch_wait_ms: float = _opt("batch_wait_ms", "--batch-wait-ms", "How long a batch waits to fill."),
    queue_rows: int = _opt("queue_rows", "--queue", "Texts that may wait; beyond it: 429."),
    deadline_ms: float = _opt("deadline_ms", "--deadline-ms", "Default per-request deadline (504 past it)."),
    retry_after_s: int = _opt("retry_after_s", "--retry-after-s", "Retry-After sent with a 429."),
    prefix_cache_mb: int = _opt(
        "prefix_cache_mb", "--prefix-cache-mb", "Memory for soft prompts' computed key/value prefixes (LRU)."
    ),
    log_db: Path = typer.Option(None, "--log-db", help="Prediction log (default <registry>/serving.sqlite)."),
    log_url: str = typer.Option(
        None,
        "--log-url",
        help="Prediction log in a database instead (e.g. one PostgreSQL shared by several servers; "
        "default $TASKTUNE_LOG_URL).",
    ),
    log_predictions: bool = _opt(
        "log_predictions", "--log-predictions/--no-log-predictions", "Keep every prediction (monitoring)."
    ),
    log_retention_days: float = _opt(
        "log_retention_days",
        "--log-retention-days",
        "Delete predictions (and their feedback) older than this many days (default: keep all).",
    ),
    drift_window: int = _opt("drift_window", "--drift-window", "Latest predictions compared for drift."),
    drift_alpha: float = _opt("drift_alpha", "--drift-alpha", "Significance level of the drift test."),
    drift_min_live: int = _opt(
        "drift_min_live", "--drift-min-live", "Predictions needed before a drift test."
    ),
    warmup: bool = _opt("warmup", "--warmup/--no-warmup", "Load and run every adaptation before serving."),
    shutdown_grace_s: float = _opt("shutdown_grace_s", "--shutdown-grace-s", "Drain time on SIGTERM."),
) -> None:
    """Serve adaptations: predictions, feedback, monitoring, A/B tests and a dashboard at /."""
    # Every flag named as its setting goes through unchanged (tests check each setting has one).
    flags = {name: value for name, value in locals().items() if name in _FIELDS}
    import uvicorn

    from tasktune.serving.app import create_app
    from tasktune.serving.settings import token_from_env

    token = admin_token_file.read_text(encoding="utf-8").strip() if admin_token_file else token_from_env()
    mapping = {}
    for item in backbone:
        name, sep, where = item.partition("=")
        if not sep or not name or not where:
            raise TaskTuneError(f"--backbone {item!r}: expected NAME=PATH")
        mapping[name] = where
    try:
        settings = ServeSettings(
            **{
                **flags,
                "tasks": tuple(t.strip() for t in tasks.split(",") if t.strip()),
                "backbones": mapping,
                "admin_token": token,
            }
        )
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        raise TaskTuneError(f"invalid serve settings: {problems}") from None
    if not registry.is_dir():
        raise TaskTuneError(f"registry folder {registry} does not exist (run `tasktune run` first)")
    # Any folder would do as a registry (an empty one gets created): a typo must not serve nothing.
    from tasktune.registry.store import URL_ENV

    if not (registry / "registry.db").is_file() and not (
        os.environ.get(URL_ENV) and (registry / "artifacts").is_dir()
    ):
        raise TaskTuneError(
            f"{registry} is not a registry (no registry.db in it); give the folder `tasktune run --registry` "
            "wrote, or set TASKTUNE_REGISTRY_URL for a shared database"
        )
    from tasktune.serving.monitor import PredictionLog

    PredictionLog(settings.log_target).close()  # a bad URL or an unreachable database: say so before serving
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level="info",
        timeout_graceful_shutdown=int(settings.shutdown_grace_s),
    )
