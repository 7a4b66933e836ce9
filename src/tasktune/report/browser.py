"""Render report.html in headless Chromium (the DOM it builds, a screenshot), to check the page and to
look at it. Optional: only the check script and a test use it; reports never need a browser.

The flags keep Chromium off the network (no background services, updates, sync or QUIC) and give it a
throw-away profile, so a render is offline and leaves nothing behind.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser")
_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


def find_chromium() -> str | None:
    for name in CHROMIUM_CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def _run(chromium: str, args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="tasktune-chromium-") as profile:
        cmd = [chromium, *_FLAGS, f"--user-data-dir={profile}", *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"chromium exited with {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    return proc


def _chromium(chromium: str | None) -> str:
    found = chromium or find_chromium()
    if found is None:
        raise FileNotFoundError("chromium not found")
    return found


def _dump(target: str, extra: list[str], chromium: str | None, timeout: float) -> str:
    return _run(_chromium(chromium), [*extra, "--dump-dom", target], timeout).stdout


def _shoot(
    target: str, png: Path, size: tuple[int, int], extra: list[str], chromium: str | None, timeout: float
) -> Path:
    png = Path(png).resolve()
    png.parent.mkdir(parents=True, exist_ok=True)
    png.unlink(missing_ok=True)
    args = [*extra, f"--screenshot={png}", f"--window-size={size[0]},{size[1]}", target]
    _run(_chromium(chromium), args, timeout)
    if not png.is_file():
        raise RuntimeError(f"chromium did not write the screenshot {png}")
    return png


def dump_dom(html: Path, *, chromium: str | None = None, timeout: float = 120) -> str:
    """The DOM after Chromium has parsed and laid out the page, serialised as HTML."""
    return _dump(Path(html).resolve().as_uri(), [], chromium, timeout)


def screenshot(
    html: Path,
    png: Path,
    *,
    size: tuple[int, int] = (1400, 3000),
    chromium: str | None = None,
    timeout: float = 120,
) -> Path:
    return _shoot(Path(html).resolve().as_uri(), png, size, [], chromium, timeout)


# Pages served over HTTP (the serving dashboard on loopback): these take a URL rather than a file, and
# give the page's scripts virtual time to run (its fetch of /v1/stats, its timers) before the dump or the
# screenshot. With a virtual-time budget Chromium fast-forwards timers but waits for network requests in
# flight, so the result does not depend on how loaded the machine is. --no-proxy-server keeps a proxy
# from the environment out of a loopback connection.
def _url_flags(virtual_time_budget_ms: int) -> list[str]:
    return ["--no-proxy-server", f"--virtual-time-budget={int(virtual_time_budget_ms)}"]


def dump_dom_url(
    url: str,
    *,
    virtual_time_budget_ms: int = 5000,
    chromium: str | None = None,
    timeout: float = 120,
) -> str:
    """The DOM of the page at `url` after its scripts have had `virtual_time_budget_ms` of virtual time."""
    return _dump(url, _url_flags(virtual_time_budget_ms), chromium, timeout)


def screenshot_url(
    url: str,
    png: Path,
    *,
    size: tuple[int, int] = (1400, 1800),
    virtual_time_budget_ms: int = 5000,
    chromium: str | None = None,
    timeout: float = 120,
) -> Path:
    """A PNG of the page at `url`, `size` = (width, height), after its scripts have had virtual time."""
    return _shoot(url, png, size, _url_flags(virtual_time_budget_ms), chromium, timeout)
