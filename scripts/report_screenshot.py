"""Build the report of a run folder and screenshot its HTML with headless Chromium, to look at it.

    python scripts/report_screenshot.py runs/demo [--png report.png] [--width 1400 --height 3000]

Prints the path of the PNG. Needs Chromium (`apt-get install chromium`); the report itself does not.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tasktune.errors import TaskTuneError
from tasktune.report import build_report
from tasktune.report.browser import find_chromium, screenshot


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_dir", type=Path, help="run folder written by `tasktune run`")
    parser.add_argument("--out", type=Path, default=None, help="report folder (default RUN_DIR/report)")
    parser.add_argument("--png", type=Path, default=None, help="screenshot path (default OUT/report.png)")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=3000)
    args = parser.parse_args(argv)
    if find_chromium() is None:
        print("chromium not found: install it (apt-get install chromium)", file=sys.stderr)
        return 2
    try:
        paths = build_report(args.run_dir, args.out)
    except TaskTuneError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    png = screenshot(paths.html, args.png or paths.out_dir / "report.png", size=(args.width, args.height))
    print(png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
