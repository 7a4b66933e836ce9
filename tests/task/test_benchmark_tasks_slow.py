"""The example task files on the real benchmark data in ../shared/data."""

import pytest

from tasktune.task.check import check_task
from tasktune.task.spec import load_task
from tests.conftest import REPO, SHARED_DATA

pytestmark = pytest.mark.slow


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data is not beside this checkout")
def test_sst2_check_counts():
    report = check_task(load_task(REPO / "examples" / "sst2.yaml"), k=16)
    sizes = {s.name: s.size for s in report.splits}
    assert sizes == {"train": 67_349, "test": 872, "test-sentences": 1_821}
    test = next(s for s in report.splits if s.name == "test")
    assert test.label_counts == {"negative": 428, "positive": 444}


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data is not beside this checkout")
@pytest.mark.parametrize(("name", "train", "test"), [("mr", 8_662, 2_000), ("agnews", 5_600, 2_000)])
def test_other_benchmark_tasks(name, train, test):
    report = check_task(load_task(REPO / "examples" / f"{name}.yaml"), k=16)
    assert {s.name: s.size for s in report.splits} == {"train": train, "test": test}
