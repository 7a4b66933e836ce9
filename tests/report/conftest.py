from pathlib import Path

import pytest

from tests.evaluation.synthetic import standard_run, write_run

EVIL_LABELS = ("<script>alert(1)</script>", "$x$ & co")


@pytest.fixture(scope="module")
def standard_run_dir(tmp_path_factory) -> Path:
    """Four cells × two seeds, a latency constraint, and labels that need escaping."""
    results = standard_run()
    for r in results:
        r.labels = list(EVIL_LABELS)
    return write_run(
        tmp_path_factory.mktemp("run"),
        results,
        constraints={"max_latency_ms": 35},
        labels=EVIL_LABELS,
        task="demo<i>",
    )


@pytest.fixture(scope="module")
def built(standard_run_dir):
    from tasktune.report import build_report

    return build_report(standard_run_dir)
