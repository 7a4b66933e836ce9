from tasktune.routes.base import FitContext
from tasktune.routes.registry import ROUTES
from tasktune.runner import run_matrix
from tasktune.task.spec import load_task


class Boom:
    name = "boom"
    needs_backbone = False

    def fit(self, ctx: FitContext):
        raise RuntimeError("exploded on purpose")


def test_one_failing_cell_does_not_stop_the_others(task_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(ROUTES, "boom", Boom)
    outcome = run_matrix(
        load_task(task_dir / "task.yaml"),
        route_names=["boom", "majority"],
        protocol="few",
        out_dir=tmp_path,
        k=8,
    )
    assert len(outcome.results) == 5  # majority on the 5 few-shot seeds
    assert len(outcome.failures) == 5 and "exploded on purpose" in outcome.failures[0].error
    assert sorted(r.info.seed for r in outcome.results) == [13, 21, 42, 87, 100]


def test_network_guard_blocks_outside_connections():
    import socket

    import pytest

    with pytest.raises(AssertionError, match="network connection"):
        socket.create_connection(("198.51.100.1", 80), timeout=0.1)
