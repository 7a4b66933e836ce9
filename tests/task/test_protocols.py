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


def test_train_limit_keeps_a_seeded_subset_and_the_same_dev(train):
    whole = full_data(train, 2, seed=13)
    reduced = full_data(train, 2, seed=13, train_limit=20)
    assert len(reduced.train) == 20 and reduced.dev == whole.dev
    assert set(reduced.train) <= set(whole.train)
    assert reduced.train == full_data(train, 2, seed=13, train_limit=20).train
    assert full_data(train, 2, seed=21, train_limit=20).train != reduced.train
    with pytest.raises(ValueError, match="train_limit"):
        full_data(train, 2, train_limit=0)


def test_reduced_runs_never_share_a_cell_with_full_ones():
    from tasktune.runner import cell_name

    assert cell_name("lora", "m", "full", 13) != cell_name("lora", "m", "full", 13, train_limit=800)
    assert cell_name("lora", "m", "few", 13, train_limit=800) == cell_name("lora", "m", "few", 13)


def test_few_shot_never_puts_one_text_in_both_train_and_dev(task_dir):
    """A text repeated in the split (SST-2 has 371) must not land in train and dev: it would inflate the
    dev score that selects checkpoints. Each text is drawn once; the split stays seeded."""
    from tests.conftest import make_rows

    rows = make_rows(30, labels=("negative",)) + make_rows(12, labels=("positive",))
    write_jsonl(task_dir / "train.jsonl", rows + [{"text": "the same review", "label": "positive"}] * 30)
    spec = load_task(task_dir / "task.yaml")
    split = load_split(spec, "train")
    for seed in FEW_SHOT_SEEDS:
        ps = few_shot(split, spec.label_names, k=4, seed=seed)
        texts = [e.text for e in (*ps.train, *ps.dev)]
        assert len(texts) == len(set(texts)) == 16
        again = few_shot(split, spec.label_names, k=4, seed=seed)
        assert [e.row for e in again.train] == [e.row for e in ps.train]
    # 42 positive rows pass the count check for K=7, but only 13 of them are distinct texts.
    with pytest.raises(DataError, match=r"'positive' has 13 distinct texts"):
        few_shot(split, spec.label_names, k=7, seed=13)
