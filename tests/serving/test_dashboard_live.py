"""The dashboard of a real server under load: a uvicorn process on loopback (stub adaptations) takes
concurrent traffic and feedback while headless Chromium renders ``/``; the charts must show that
traffic (bars, latency lines, accuracy bars, label mix) and a screenshot must be a real page."""

from __future__ import annotations

import signal
import subprocess
import threading
import time

import httpx
import pytest

from tasktune.report.browser import dump_dom_url, screenshot_url
from tests.serving.run_stub_server import start_stub_server
from tests.serving.test_dashboard import _data_marks, _Tree


@pytest.fixture
def loaded_server(tmp_path):
    proc, base = start_stub_server(tmp_path / "log.sqlite", 0.01)
    stop = threading.Event()
    sent = []

    def traffic(seed: int) -> None:
        with httpx.Client(base_url=base, timeout=30) as c:
            i = 0
            while not stop.is_set():
                i += 1
                r = c.post("/v1/predict", json={"task": "sentiment", "texts": [f"review {seed} {i}", "ok"]})
                sent.append(r.status_code)
                if r.status_code == 200 and i % 2:
                    c.post(
                        "/v1/feedback", json={"request_id": r.json()["request_id"], "labels": ["positive", 0]}
                    )

    threads = [threading.Thread(target=traffic, args=(s,), daemon=True) for s in range(4)]
    for t in threads:
        t.start()
    while len(sent) < 80:  # enough for every chart before the first render
        time.sleep(0.05)
    try:
        yield base, sent
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_dashboard_under_load_draws_every_chart(loaded_server, chromium, tmp_path):
    base, sent = loaded_server
    tree = _Tree(dump_dom_url(f"{base}/", chromium=chromium))
    for chart in ("traffic", "latency", "accuracy", "labels"):
        svg = tree.by_id[f"chart-{chart}-sentiment"]
        assert svg.tag == "svg"
        assert _data_marks(svg), f"{chart} chart drew no data under load"
    assert "drift" in tree.by_id["drift-sentiment"].text().lower()
    assert "no A/B test" in tree.by_id["ab-sentiment"].text()
    png = screenshot_url(f"{base}/", tmp_path / "dashboard.png", size=(1400, 1800), chromium=chromium)
    import matplotlib.image

    image = matplotlib.image.imread(png)
    assert image.shape[:2] == (1800, 1400)
    assert image[..., :3].std() > 0.02  # not one flat colour
    assert sent and set(sent) == {200}
