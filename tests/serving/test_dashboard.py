"""The serving dashboard page: a fast check of the HTML itself, then the page served with a static stats
JSON from a loopback HTTP server and rendered in headless Chromium (its fetch and its JS included): the
charts, badges and boxes must be in the DOM it builds, hostile names must stay text, and a screenshot
must be a real page."""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import numpy as np
import pytest

from tasktune.report.browser import dump_dom_url, screenshot_url
from tasktune.serving.dashboard import CSP, dashboard_html, dom_id

CHARTS = ("traffic", "latency", "accuracy", "labels")
HOSTILE_TASK = "<img src=x onerror=alert(1)>"
# Run as markup, this would mark <body>: a behavioural check on top of the serialised text.
HOSTILE_LABEL = "<img src=x onerror=document.body.dataset.pwned=1>"
HOSTILE_BACKBONE = "<script>document.body.dataset.pwned=2</script>"
T0 = 1763892000  # 2025-11-23T10:00:00Z, on a minute


def _full_task() -> dict:
    minutes = [i for i in range(30) if i != 12]  # like the server: only minutes that had requests
    latency = [{"t": T0 + 60 * i, "p50": 10.0 + i % 5, "p99": 35.0 + i % 7} for i in minutes]
    return {
        "task": "sst2",
        "backbone": "smollm2-135m-instruct",
        "route": "prompt_tuning",
        "active_version": 3,
        "labels": ["negative", "positive", HOSTILE_LABEL],
        "traffic": {"total": 1200, "per_minute": [{"t": T0 + 60 * i, "count": 30 + i} for i in minutes]},
        "latency_ms": {"p50": 12.5, "p95": 30.1, "p99": 45.0, "per_minute": latency},
        "live_accuracy": [
            {"version": 2, "n_feedback": 0, "accuracy": None},
            {"version": 3, "n_feedback": 80, "accuracy": 0.91},
            {"version": 4, "n_feedback": 9, "accuracy": None},
        ],
        "label_mix": {"live": [510, 690, 12], "reference": [428, 444, 10]},
        "drift": {
            "state": "drift",
            "signals": [
                {
                    "name": "label_mix",
                    "state": "drift",
                    "p_value": 0.0021,
                    "detail": "the <b>live</b> label mix moved away from the reference set",
                },
                {"name": "confidence", "state": "ok", "p_value": 0.41, "detail": "mean confidence is stable"},
            ],
        },
        "ab": {
            "a": 3,
            "b": 4,
            "share_b": 0.1,
            "verdict": {
                "state": "insufficient data",
                "n_a": 80,
                "n_b": 9,
                "acc_a": 0.91,
                "acc_b": None,
                "difference": None,
                "p_value": None,
                "recommendation": "keep collecting feedback: B has 9 of the 30 labels it needs",
            },
        },
    }


def _empty_task() -> dict:
    return {
        "task": HOSTILE_TASK,
        "backbone": HOSTILE_BACKBONE,
        "route": "prompting",
        "active_version": None,
        "labels": ["a", "b"],
        "traffic": {"total": 0, "per_minute": []},
        "latency_ms": {"p50": None, "p95": None, "p99": None, "per_minute": []},
        "live_accuracy": [],
        "label_mix": {"live": [0, 0], "reference": None},
        "drift": {"state": "insufficient data", "signals": []},
        "ab": None,
    }


STATS = {
    "generated": "2026-11-23T10:00:00Z",
    "uptime_s": 123.4,
    "queue": {"depth": 3, "capacity": 256},
    "tasks": [_full_task(), _empty_task()],
}


def _named(name: str, live: list[int]) -> dict:
    return {**_empty_task(), "task": name, "backbone": "b", "labels": [f"l{i}" for i in range(len(live))],
            "label_mix": {"live": live, "reference": None}}  # fmt: skip


# Names that map to one id ("a.b" and "a_b" -> "a_b") next to one that is the first's suffixed id; the
# first has 50 evenly used labels (2 % each: the y axis steps by 0.5 %).
COLLIDING = {
    "generated": "2026-11-23T10:00:00Z",
    "uptime_s": 5,
    "queue": {"depth": 0, "capacity": 256},
    "tasks": [_named("a.b", [10] * 50), _named("a_b", [1, 1]), _named("a_b-2", [1, 1])],
}
NO_TASKS = {
    "generated": "2026-11-23T10:00:00Z",
    "uptime_s": 5,
    "queue": {"depth": 0, "capacity": 256},
    "tasks": [],
}


# ---- a loopback server: GET / is the dashboard, GET /v1/stats the fixture; /flaky answers once, then 500.


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        hits = self.server.hits  # type: ignore[attr-defined]
        hits[self.path] += 1
        if self.path == "/":
            self._send(200, "text/html; charset=utf-8", dashboard_html(refresh_ms=60_000))
        elif self.path == "/v1/stats":
            self._send(200, "application/json", json.dumps(STATS))
        elif self.path == "/flaky":
            page = dashboard_html(title="flaky", refresh_ms=500, stats_url="/v1/flaky-stats")
            self._send(200, "text/html; charset=utf-8", page)
        elif self.path == "/colliding":
            page = dashboard_html(title="colliding", refresh_ms=60_000, stats_url="/v1/colliding-stats")
            self._send(200, "text/html; charset=utf-8", page)
        elif self.path == "/v1/colliding-stats":
            self._send(200, "application/json", json.dumps(COLLIDING))
        elif self.path == "/v1/flaky-stats" and hits[self.path] == 1:
            self._send(200, "application/json", json.dumps(NO_TASKS))
        elif self.path == "/v1/flaky-stats":
            self._send(500, "application/json", '{"detail": "boom"}')
        else:
            self._send(404, "text/plain", "not found")

    def _send(self, status: int, content_type: str, body: str) -> None:
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args):  # keep the test output quiet
        pass


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.hits = Counter()  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


def _url(httpd, path: str) -> str:
    return f"http://127.0.0.1:{httpd.server_address[1]}{path}"


# ---- a small tree of the dumped DOM, to look at one element by id


class _Node:
    def __init__(self, tag: str, attrs: dict[str, str | None]):
        self.tag, self.attrs, self.children = tag, attrs, []

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def descendants(self):
        for c in self.children:
            if isinstance(c, _Node):
                yield c
                yield from c.descendants()

    def classes(self) -> set[str]:
        return set((self.attrs.get("class") or "").split())


class _Tree(HTMLParser):
    VOID: ClassVar[set[str]] = {
        "area",
        "base",
        "br",
        "col",
        "embed",
        "hr",
        "img",
        "input",
        "link",
        "meta",
        "source",
        "track",
        "wbr",
    }

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.root = _Node("#root", {})
        self.stack = [self.root]
        self.by_id: dict[str, _Node] = {}
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        node = _Node(tag, dict(attrs))
        self.stack[-1].children.append(node)
        if node.attrs.get("id"):
            self.by_id[node.attrs["id"]] = node
        if tag not in self.VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in self.VOID:
            self.stack.pop()

    def handle_endtag(self, tag):
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data):
        self.stack[-1].children.append(data)


def _data_marks(svg: _Node) -> list[_Node]:
    """The drawn data: bars, lines and dots (frame, axes and legend are not marked "data")."""
    return [
        n
        for n in svg.descendants()
        if n.tag in ("rect", "path", "polyline", "circle") and "data" in n.classes()
    ]


# ---- fast: the page itself, no browser


def test_page_is_self_contained_with_a_strict_csp():
    page = dashboard_html()
    assert page.startswith("<!DOCTYPE html>")
    meta = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', page)
    assert meta and meta.group(1).replace("&#x27;", "'") == CSP
    assert CSP == (
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
        "connect-src 'self'; img-src data:"
    )
    # The SVG namespace URI is an identifier for createElementNS, never fetched; nothing else may be a URL.
    rest = page.replace('"http://www.w3.org/2000/svg"', "")
    for external in ("http://", "https://", "//cdn", "src=", "@import", "url(http", "<link"):
        assert external not in rest, external
    # static/dashboard.css and .js are inlined: neither may close its element early.
    assert page.count("<script>") == 1 and page.count("</script>") == 1
    assert page.count("<style>") == 1 and page.count("</style>") == 1
    for helper in ("function bars(", "function lines(", "function axis(", "function domId("):
        assert helper in page, helper
    for prefix in ("chart-traffic-", "chart-latency-", "chart-accuracy-", "chart-labels-", "drift-", "ab-"):
        assert f'"{prefix}"' in page, prefix
    assert "innerHTML" not in page and "insertAdjacentHTML" not in page and "document.write" not in page
    assert "createTextNode" in page and "setAttribute" in page
    assert '"refreshMs": 2000' in page and '"statsUrl": "/v1/stats"' in page


def test_settings_cannot_break_out_of_the_page():
    page = dashboard_html(
        title="</title><script>alert(1)</script>", stats_url="/x</script><script>alert(2)//"
    )
    assert page.count("</script>") == 1 and page.count("<script>") == 1
    assert "<title>&lt;/title&gt;&lt;script&gt;alert(1)&lt;/script&gt;</title>" in page
    assert '"/x\\u003c/script\\u003e\\u003cscript\\u003ealert(2)//"' in page
    for bad in (0, 99, 2.5, True, "2000"):
        with pytest.raises(ValueError):
            dashboard_html(refresh_ms=bad)
    with pytest.raises(ValueError):
        dashboard_html(stats_url="")


def test_dom_id_replaces_everything_outside_the_safe_set():
    assert dom_id("sst2") == "sst2"
    assert dom_id("ag_news-v2") == "ag_news-v2"
    assert dom_id(HOSTILE_TASK) == "_img_src_x_onerror_alert_1__"
    assert dom_id("café 🙂") == "caf___"  # one "_" per character, as the page's /u regex does


def test_loopback_server_serves_page_and_stats(server):
    import urllib.request

    with urllib.request.urlopen(_url(server, "/"), timeout=10) as resp:
        assert resp.status == 200 and "chart-traffic-" in resp.read().decode()
    with urllib.request.urlopen(_url(server, "/v1/stats"), timeout=10) as resp:
        assert json.loads(resp.read()) == STATS


# ---- in Chromium


@pytest.fixture(scope="module")
def dom(server, chromium) -> str:
    return dump_dom_url(_url(server, "/"), chromium=chromium, virtual_time_budget_ms=5000)


@pytest.fixture(scope="module")
def tree(dom) -> _Tree:
    return _Tree(dom)


def test_every_task_gets_a_card_with_four_charts(tree, server):
    assert server.hits["/v1/stats"] >= 1  # the page fetched its stats
    for task in STATS["tasks"]:
        sid = dom_id(task["task"])
        assert tree.by_id[f"task-{sid}"].tag == "section"
        for chart in CHARTS:
            svg = tree.by_id[f"chart-{chart}-{sid}"]
            assert svg.tag == "svg", chart
            assert svg.attrs.get("role") == "img" and svg.attrs.get("aria-label"), chart
            texts = [n.text() for n in svg.descendants() if n.tag == "text"]
            assert len(texts) >= 3, chart  # a title and two axis labels


def test_full_task_charts_draw_their_data(tree):
    sid = dom_id("sst2")
    marks = {chart: _data_marks(tree.by_id[f"chart-{chart}-{sid}"]) for chart in CHARTS}
    assert sum(m.tag == "rect" for m in marks["traffic"]) == 29  # one bar per minute with requests
    xs = [float(m.attrs["x"]) for m in marks["traffic"]]
    step = xs[1] - xs[0]
    assert xs[12] - xs[11] == pytest.approx(2 * step, rel=1e-3)  # the minute without requests keeps its slot
    # p50 and p99, each broken in two by the minute without requests, plus a dot per point
    assert sum(m.tag == "polyline" for m in marks["latency"]) == 4
    assert sum(m.tag == "circle" for m in marks["latency"]) == 2 * 29
    assert len(marks["accuracy"]) == 3
    assert sum("pending-bar" in m.classes() for m in marks["accuracy"]) == 2  # the two null accuracies
    assert sum(m.tag == "rect" for m in marks["labels"]) == 6  # live and reference per label
    accuracy_text = tree.by_id[f"chart-accuracy-{sid}"].text()
    assert "0.91" in accuracy_text and "n<30" in accuracy_text and "no feedback" in accuracy_text
    assert "n=80" in accuracy_text and "n=9" in accuracy_text
    caption = tree.by_id[f"chart-latency-{sid}"]
    figure = next(n for n in tree.root.descendants() if n.tag == "figure" and caption in n.children)
    assert (
        "p50 12.5 ms" in figure.text() and "p95 30.1 ms" in figure.text() and "p99 45.0 ms" in figure.text()
    )


def test_empty_task_charts_show_their_empty_state(tree):
    sid = dom_id(HOSTILE_TASK)
    for chart in CHARTS:
        svg = tree.by_id[f"chart-{chart}-{sid}"]
        assert _data_marks(svg) == [], chart
        assert any("empty" in n.classes() for n in svg.descendants()), chart
    assert "no traffic yet" in tree.by_id[f"chart-traffic-{sid}"].text()
    assert "no traffic yet" in tree.by_id[f"chart-latency-{sid}"].text()
    assert "no feedback yet" in tree.by_id[f"chart-accuracy-{sid}"].text()
    assert "no traffic yet" in tree.by_id[f"chart-labels-{sid}"].text()


def test_drift_badge_and_ab_box(tree):
    drift = tree.by_id["drift-sst2"]
    badge = next(n for n in drift.descendants() if "badge" in n.classes())
    assert badge.text() == "drift" and "bad" in badge.classes()
    assert "label_mix" in drift.text() and "p 0.002" in drift.text() and "confidence" in drift.text()
    ab = tree.by_id["ab-sst2"]
    verdict = next(n for n in ab.descendants() if "badge" in n.classes())
    assert verdict.text() == "insufficient data"
    assert "A = v3 · B = v4 · 10% of traffic to B" in ab.text()
    assert "keep collecting feedback" in ab.text()
    sid = dom_id(HOSTILE_TASK)
    assert "insufficient data" in tree.by_id[f"drift-{sid}"].text()
    assert "no A/B test" in tree.by_id[f"ab-{sid}"].text()


def test_header_shows_uptime_queue_and_no_error(tree):
    assert tree.by_id["uptime"].text() == "2m 03s"
    assert tree.by_id["queue"].text() == "3 / 256"
    assert tree.by_id["updated"].text() != "never"
    assert "hidden" in tree.by_id["error"].attrs


def test_hostile_strings_stay_text(dom, tree):
    assert "&lt;img src=x onerror=alert(1)&gt;" in dom  # the task name, as text
    assert "&lt;script&gt;document.body.dataset.pwned=2&lt;/script&gt;" in dom  # the backbone
    assert "the &lt;b&gt;live&lt;/b&gt; label mix" in dom  # a drift detail
    assert not re.search(r"<img\b", dom, re.IGNORECASE)  # no element was made from them
    assert "data-pwned" not in dom  # and nothing ran
    assert [n for n in tree.root.descendants() if n.tag == "img"] == []
    assert tree.by_id[f"task-{dom_id(HOSTILE_TASK)}"] is not None
    headings = [n.text() for n in tree.root.descendants() if n.tag == "h2"]
    assert HOSTILE_TASK in headings
    labels_chart = tree.by_id["chart-labels-sst2"]
    assert any(HOSTILE_LABEL in n.text() for n in labels_chart.descendants() if n.tag == "title")


def test_failed_fetch_keeps_the_last_data_and_shows_a_banner(server, chromium):
    dom = dump_dom_url(_url(server, "/flaky"), chromium=chromium, virtual_time_budget_ms=3000)
    tree = _Tree(dom)
    assert server.hits["/v1/flaky-stats"] >= 2  # one good answer, then at least one 500
    assert "No tasks loaded" in tree.by_id["no-tasks"].text()
    error = tree.by_id["error"]
    assert "hidden" not in error.attrs
    assert "HTTP 500" in error.text() and "showing the data from" in error.text()
    assert tree.by_id["uptime"].text() == "5s"  # the last good stats stay on screen


def test_screenshot_is_a_real_page(server, chromium, tmp_path):
    import matplotlib.image

    png = screenshot_url(_url(server, "/"), tmp_path / "dashboard.png", size=(1400, 1800), chromium=chromium)
    image = matplotlib.image.imread(png)
    assert image.shape[:2] == (1800, 1400)
    pixels = image[..., :3].reshape(-1, 3)
    assert np.ptp(pixels, axis=0).max() > 0.5  # dark text on a light page, not a blank screen
    assert len(np.unique((pixels[::97] * 255).astype(np.uint8), axis=0)) > 20  # the charts bring colours


def test_colliding_task_ids_stay_unique_and_percent_ticks_show_their_step(server, chromium):
    tree = _Tree(dump_dom_url(_url(server, "/colliding"), chromium=chromium, virtual_time_budget_ms=3000))
    sections = [n.attrs["id"] for n in tree.root.descendants() if n.tag == "section" and n.attrs.get("id")]
    assert sections == ["task-a_b", "task-a_b-2", "task-a_b-2-2"]  # was a_b, a_b-2, a_b-2
    ids = [n.attrs["id"] for n in tree.root.descendants() if n.attrs.get("id")]
    assert len(ids) == len(set(ids))
    labels = tree.by_id["chart-labels-a_b"]
    ticks = [n.text() for n in labels.descendants() if n.tag == "text" and n.text().endswith("%")]
    assert len(ticks) >= 3 and len(set(ticks)) == len(ticks), ticks  # was "0% 1% 1% 2% 2%"
    assert "0.5%" in ticks


def test_a_stats_request_that_never_answers_is_reported_not_waited_for(tmp_path):
    """Run in Node (headless Chromium's virtual time stands still while a fetch is pending): the first
    stats request answers, the next never does; the page must show its error banner, not freeze."""
    import shutil
    import subprocess
    import time
    from pathlib import Path

    node = shutil.which("node")
    if node is None:
        pytest.skip("needs Node.js")
    release = threading.Event()

    class Stalling(BaseHTTPRequestHandler):
        calls = 0

        def do_GET(self):
            Stalling.calls += 1
            if Stalling.calls > 1:
                release.wait(30)  # answers only when the test ends
            data = json.dumps(NO_TASKS).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Stalling)
    httpd.daemon_threads = True
    httpd.handle_error = lambda request, client_address: None  # the aborted request's broken pipe
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    script = Path(__file__).parents[2] / "src" / "tasktune" / "serving" / "static" / "dashboard.js"
    harness = Path(__file__).with_name("dashboard_node_harness.js")
    config = json.dumps({"refreshMs": 500, "statsUrl": f"http://127.0.0.1:{httpd.server_address[1]}/s"})
    try:
        start = time.monotonic()
        out = subprocess.run(
            [node, str(harness), str(script), config, "7.5"], capture_output=True, text=True, timeout=60
        )
    finally:
        release.set()
        httpd.shutdown()
        httpd.server_close()
    assert out.returncode == 0, out.stderr
    state = json.loads(out.stdout.strip().splitlines()[-1])
    assert Stalling.calls >= 2 and time.monotonic() - start < 30
    # Before: error hidden, figures from the first answer shown as current, polling stopped for good.
    assert state["hidden"] is False and "showing the data from" in state["banner"], state
