import pytest

from tasktune.task.check import check_task, normalise
from tasktune.task.spec import load_task
from tests.conftest import write_jsonl


def test_report_counts_and_lengths(task_dir):
    report = check_task(load_task(task_dir / "task.yaml"), k=16)
    train = next(s for s in report.splits if s.name == "train")
    assert train.size == 80 and train.label_counts == {"negative": 40, "positive": 40}
    assert train.lengths.unit == "words" and train.lengths.min >= 4
    assert report.warnings == []
    assert report.overlaps[0].count == 0


def test_leakage_and_imbalance_are_reported(task_dir):
    rows = [{"text": f"neg {i}", "label": "negative"} for i in range(40)]
    rows += [{"text": f"pos {i}", "label": "positive"} for i in range(5)]
    rows.append(
        {"text": "Test  item 3 NEGATIVE", "label": "negative"}
    )  # same as a test text, modulo case/space
    write_jsonl(task_dir / "train.jsonl", rows)
    report = check_task(load_task(task_dir / "task.yaml"), k=None)
    assert report.overlaps[0].count == 1
    assert any("imbalanced" in w for w in report.warnings)
    assert any("leakage" in w for w in report.warnings)


def test_k_too_large_fails(task_dir):
    from tasktune.errors import DataError

    with pytest.raises(DataError, match="class too small"):
        check_task(load_task(task_dir / "task.yaml"), k=32)


def test_normalise():
    assert normalise("  A  b\tC ") == "a b c"
