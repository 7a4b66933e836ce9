import pytest

from tasktune.errors import DataError
from tasktune.task.data import hash_examples, load_split, load_splits
from tasktune.task.spec import load_task
from tests.conftest import write_jsonl


def test_loads_valid_task(task_dir):
    spec = load_task(task_dir / "task.yaml")
    splits = load_splits(spec)
    assert len(splits["train"]) == 80 and len(splits["test"]) == 20
    assert splits["train"].label_counts(2).tolist() == [40, 40]
    assert splits["train"].examples[0].row == 1


def _task_with_train(task_dir, rows):
    write_jsonl(task_dir / "train.jsonl", rows)
    return load_task(task_dir / "task.yaml")


def test_missing_file(task_dir):
    (task_dir / "train.jsonl").unlink()
    with pytest.raises(DataError) as err:
        load_split(load_task(task_dir / "task.yaml"), "train")
    assert "train.jsonl" in str(err.value) and "data file not found" in str(err.value)


def test_empty_split(task_dir):
    spec = _task_with_train(task_dir, [])
    with pytest.raises(DataError, match="split 'train' is empty"):
        load_split(spec, "train")


def test_empty_text_names_line_and_field(task_dir):
    spec = _task_with_train(
        task_dir, [{"text": "fine", "label": "positive"}, {"text": "   ", "label": "negative"}]
    )
    with pytest.raises(DataError) as err:
        load_split(spec, "train")
    msg = str(err.value)
    assert "line 2" in msg and "field 'text'" in msg and "empty text" in msg


def test_unknown_label_names_value_and_expected(task_dir):
    spec = _task_with_train(
        task_dir, [{"text": "ok", "label": "positive"}, {"text": "meh", "label": "neutral"}]
    )
    with pytest.raises(DataError) as err:
        load_split(spec, "train")
    msg = str(err.value)
    assert (
        "line 2" in msg
        and "unknown label" in msg
        and "'neutral'" in msg
        and "['negative', 'positive']" in msg
    )


def test_malformed_row_names_line(task_dir):
    spec = _task_with_train(
        task_dir, [{"text": "ok", "label": "positive"}, "", '{"text": "broken", "label": ', ""]
    )
    with pytest.raises(DataError) as err:
        load_split(spec, "train")
    assert "line 3" in str(err.value) and "malformed JSON" in str(err.value)


def test_missing_field_in_row(task_dir):
    spec = _task_with_train(task_dir, [{"sentence": "wrong column", "label": "positive"}])
    with pytest.raises(DataError) as err:
        load_split(spec, "train")
    assert "line 1" in str(err.value) and "missing field" in str(err.value) and "'text'" in str(err.value)


def test_non_object_row(task_dir):
    spec = _task_with_train(task_dir, ['["a", "b"]'])
    with pytest.raises(DataError, match="not an object"):
        load_split(spec, "train")


def test_integer_labels_are_indices(task_dir):
    spec = _task_with_train(task_dir, [{"text": "a", "label": 1}, {"text": "b", "label": 0}])
    assert [e.label for e in load_split(spec, "train")] == [1, 0]
    spec = _task_with_train(task_dir, [{"text": "a", "label": 2}])
    with pytest.raises(DataError, match="unknown label"):
        load_split(spec, "train")


def test_column_mapping_and_csv(task_dir):
    (task_dir / "train.csv").write_text('sentence,y\n"good, really",positive\nbad,negative\n')
    (task_dir / "task.yaml").write_text(
        "name: tiny\nlabels: [negative, positive]\n"
        "data:\n  train: {path: train.csv, columns: {text: sentence, label: y}}\n  test: {path: test.jsonl}\n"
    )
    split = load_split(load_task(task_dir / "task.yaml"), "train")
    assert [(e.text, e.label) for e in split] == [("good, really", 1), ("bad", 0)]


def test_csv_empty_text_reports_line(task_dir):
    (task_dir / "train.csv").write_text("text,label\ngood,positive\n,negative\n")
    (task_dir / "task.yaml").write_text(
        "name: tiny\nlabels: [negative, positive]\n"
        "data:\n  train: {path: train.csv}\n  test: {path: test.jsonl}\n"
    )
    with pytest.raises(DataError) as err:
        load_split(load_task(task_dir / "task.yaml"), "train")
    assert "line 3" in str(err.value) and "field 'text'" in str(err.value) and "empty text" in str(err.value)


def test_parquet(task_dir):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(
        pa.table({"text": ["x y", "z"], "label": ["positive", "negative"]}), task_dir / "train.parquet"
    )
    (task_dir / "task.yaml").write_text(
        "name: tiny\nlabels: [negative, positive]\n"
        "data:\n  train: {path: train.parquet}\n  test: {path: test.jsonl}\n"
    )
    assert [e.label for e in load_split(load_task(task_dir / "task.yaml"), "train")] == [1, 0]


def test_hub_source_needs_permission(task_dir):
    (task_dir / "task.yaml").write_text(
        "name: tiny\nlabels: [negative, positive]\ndata:\n  train: {hf: glue, subset: sst2, split: train}\n"
    )
    with pytest.raises(DataError, match="needs the network"):
        load_split(load_task(task_dir / "task.yaml"), "train")


def test_content_hash_depends_on_content(task_dir):
    spec = load_task(task_dir / "task.yaml")
    train = load_split(spec, "train")
    assert train.content_hash() == hash_examples(train.examples)
    assert train.content_hash() != hash_examples(train.examples[:-1])
