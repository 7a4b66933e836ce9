"""Where tasktune keeps things on disk by default. Every path can be overridden."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$TASKTUNE_CACHE``, else ``$XDG_CACHE_HOME/tasktune``, else ``~/.cache/tasktune``."""
    if env := os.environ.get("TASKTUNE_CACHE"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "tasktune"
