"""The serving dashboard: one self-contained HTML page that polls GET /v1/stats and draws, per task,
traffic, latency, live accuracy, label mix, drift state and A/B status.

Self-contained because the server runs offline: inline CSS and JS, charts drawn as inline SVG by a few
small helpers (no chart library, font, image or CDN), and a Content-Security-Policy that allows nothing
else (inline script and style, same-origin fetch, data: images). The stats URL must therefore be on the
page's own origin.

Every string from the stats (task names, labels, backbone, drift details, recommendations) enters the DOM
through text nodes or setAttribute, never innerHTML, so a hostile task name or label stays text. The
page's own settings are put in by Python: the title HTML-escaped, the rest as JSON with `<`, `>` and `&`
escaped so that no value can close the <script> element.
"""

from __future__ import annotations

import json
import re
from functools import cache
from html import escape
from importlib.resources import files

__all__ = ["CSP", "dashboard_html", "dom_id"]

CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "connect-src 'self'; img-src data:"
)


def dom_id(task: str) -> str:
    """The id fragment the page uses for a task (`task-<id>`, `chart-traffic-<id>`, ...): the name with
    every character outside [A-Za-z0-9_-] replaced by "_". Mirrors domId() in the page's script; where two
    names collide the page adds "-2", "-3", ... to the later ones, skipping ids already handed out."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", str(task))


def _script_json(value: object) -> str:
    """JSON for inside <script>: with <, > and & escaped, no string can end the element or open a comment."""
    text = json.dumps(value)  # ensure_ascii: U+2028/2029 come out escaped too
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def dashboard_html(
    *, title: str = "tasktune serving", refresh_ms: int = 2000, stats_url: str = "/v1/stats"
) -> str:
    """The dashboard page, which fetches `stats_url` (same origin) every `refresh_ms` milliseconds."""
    if isinstance(refresh_ms, bool) or not isinstance(refresh_ms, int) or refresh_ms < 100:
        raise ValueError(f"refresh_ms must be an int of at least 100, not {refresh_ms!r}")
    if not isinstance(stats_url, str) or not stats_url:
        raise ValueError("stats_url must be a non-empty string")
    config = _script_json({"refreshMs": refresh_ms, "statsUrl": stats_url})
    css, js = _assets()
    script = js.replace("__CONFIG__", config)
    t = escape(str(title))
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{escape(CSP, quote=True)}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{t}</title>
<style>
{css}</style>
</head>
<body>
<header class="top">
  <h1>{t}</h1>
  <div class="meta">
    <span>uptime <b id="uptime">—</b></span>
    <span>queue <b id="queue">— / —</b><span class="meter" title="queue depth / capacity"
      ><span id="queue-fill"></span></span></span>
    <span>updated <b id="updated">never</b></span>
    <span>server time <b id="generated">—</b></span>
  </div>
  <div id="error" role="alert" hidden></div>
</header>
<main id="tasks" aria-live="polite">
  <p class="placeholder" id="waiting">Waiting for the first stats…</p>
</main>
<script>
{script}</script>
</body>
</html>
"""


@cache
def _assets() -> tuple[str, str]:
    """The page's stylesheet and script, read once from static/ (package data, installed with the code).
    They live in their own files so that editors and linters see CSS and JS; they are inlined into the
    page rather than served because the CSP allows nothing but inline script and style. The script is
    plain JS with no build step; its `__CONFIG__` is filled in by dashboard_html()."""
    static = files("tasktune.serving") / "static"
    return (
        (static / "dashboard.css").read_text(encoding="utf-8"),
        (static / "dashboard.js").read_text(encoding="utf-8"),
    )
