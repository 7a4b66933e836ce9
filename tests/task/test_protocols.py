import pytest

from tasktune.errors import DataError
from tasktune.task.data import load_split
from tasktune.task.protocols import FEW_SHOT_SEEDS, few_shot, full_data
from tasktune.task.spec import load_task
from tests.conftest import write_jsonl


@pytest.fixture
def train(task_dir):
    return load_split(load_task(task_dir / "task.yaml"), "train")


def test_seeds_are_lm_bff():
    assert FEW_SHOT_SEEDS == (13, 21, 42, 87, 100)


def test_few_shot_is_k_per_class_disjoint_and_seeded(train):
    names = ["negative", "positive"]
    a = few_shot(train, names, k=8, seed=13)
    b = few_shot(train, names, k=8, seed=13)
    c = few_shot(train, names, k=8, seed=21)
    assert len(a.train) == 16 and len(a.dev) == 16
    assert sorted(e.label for e in a.train) == [0] * 8 + [1] * 8
    assert not {e.row for e in a.train} & {e.row for e in a.dev}
    assert a.train == b.train and a.dev == b.dev
    assert a.train != c.train


def test_class_too_small_for_k(task_dir):
    rows = [{"text": f"n{i}", "label": "negative"} for i in range(40)] + [
        {"text": f"p{i}", "label": "positive"} for i in range(20)
    ]
    write_jsonl(task_dir / "train.jsonl", rows)
    split = load_split(load_task(task_dir / "task.yaml"), "train")
    with pytest.raises(DataError) as err:
        few_shot(split, ["negative", "positive"], k=16)
    assert "'positive' has 20" in str(err.value) and "at least 32" in str(err.value)


def test_full_data_holds_out_stratified_ten_percent(train):
    ps = full_data(train, 2, seed=13)
    assert len(ps.dev) == 8 and len(ps.train) == 72
    assert sorted(e.label for e in ps.dev) == [0] * 4 + [1] * 4
    assert not {e.row for e in ps.train} & {e.row for e in ps.dev}
    assert ps.train == full_data(train, 2, seed=13).train
