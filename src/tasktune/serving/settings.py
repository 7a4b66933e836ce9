"""What a server is started with: one typed, self-validating object (CLI flags map onto it 1:1)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tasktune.registry.store import DEFAULT_ROOT

TOKEN_ENV = "TASKTUNE_ADMIN_TOKEN"
_TASK_REF = re.compile(r"^[a-z0-9][a-z0-9._-]*(@[A-Za-z0-9._-]+)?$")


class ServeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    registry: Path = Path(DEFAULT_ROOT)
    # "task" (its production alias, else candidate, else its latest version) or "task@alias" /
    # "task@vN"; empty: every task in the registry.
    tasks: tuple[str, ...] = ()
    # Backbone name → embedded name or local folder, for adaptations made on a local model folder.
    backbones: dict[str, str] = Field(default_factory=dict)
    device: str | None = None
    allow_hub: bool = False  # a backbone named by hub id may download (network) when first needed
    host: str = "127.0.0.1"  # loopback unless the operator says otherwise (R18)
    port: int = Field(8000, ge=0, le=65535)

    # Request bounds (R11): checked before anything reaches a model.
    max_texts: int = Field(64, ge=1, le=4096)
    max_text_chars: int = Field(8000, ge=1, le=1_000_000)
    max_payload_bytes: int = Field(1_000_000, ge=1024)

    # Micro-batching (R12, R13).
    max_batch: int = Field(32, ge=1, le=1024)
    batch_wait_ms: float = Field(2.0, ge=0, le=1000)
    queue_rows: int = Field(1024, ge=1)  # texts waiting; beyond it requests get 429
    deadline_ms: float = Field(30_000, gt=0)  # default per-request deadline; a request may ask for less
    retry_after_s: int = Field(1, ge=1)
    # Computed key/value prefixes of shallow soft prompts kept for reuse (least recently used go first);
    # 0 recomputes them for every batch.
    prefix_cache_mb: int = Field(64, ge=0, le=1_000_000)

    admin_token: str | None = Field(default=None, repr=False)
    log_db: Path | None = None  # default: <registry>/serving.sqlite
    # A database URL instead (e.g. PostgreSQL shared by several replicas); default $TASKTUNE_LOG_URL.
    log_url: str | None = Field(default=None, repr=False)  # may carry a password
    log_predictions: bool = True
    # Days a prediction (and the feedback on it) is kept; None: forever. Checked at start and hourly.
    # Live accuracy, drift and A/B statistics then cover the retained window only.
    log_retention_days: float | None = Field(None, gt=0)

    # Monitoring.
    drift_window: int = Field(500, ge=10)  # latest predictions of the active version compared
    drift_alpha: float = Field(0.05, gt=0, lt=1)
    drift_min_live: int = Field(30, ge=5)
    warmup: bool = True
    shutdown_grace_s: float = Field(30.0, gt=0)

    @field_validator("tasks")
    @classmethod
    def _task_refs(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for ref in v:
            if not _TASK_REF.match(ref):
                raise ValueError(
                    f"{ref!r} is not a task reference: expected 'task' or 'task@alias' / 'task@v3'"
                )
        return v

    @field_validator("admin_token")
    @classmethod
    def _token_strength(cls, v: str | None) -> str | None:
        if v is not None and len(v) < 16:
            raise ValueError("the admin token must be at least 16 characters")
        return v

    @model_validator(mode="after")
    def _batch_fits_queue(self) -> ServeSettings:
        if self.max_texts > self.queue_rows:
            raise ValueError(f"max_texts ({self.max_texts}) cannot exceed queue_rows ({self.queue_rows})")
        return self

    @property
    def log_path(self) -> Path:
        return self.log_db or (self.registry / "serving.sqlite")

    @property
    def log_target(self) -> str:
        """The prediction log's database URL: --log-url, $TASKTUNE_LOG_URL, else the SQLite file."""
        from tasktune.serving.monitor import log_url

        return log_url(self.log_path, self.log_url)

    def task_refs(self) -> list[tuple[str, str | None]]:
        return [(r.split("@", 1)[0], r.split("@", 1)[1] if "@" in r else None) for r in self.tasks]


def token_from_env() -> str | None:
    return os.environ.get(TOKEN_ENV) or None
