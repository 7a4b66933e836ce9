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


def _csv_task(task_dir, body: str, labels: str = "[negative, positive]"):
    (task_dir / "train.csv").write_text(body, encoding="utf-8")
    (task_dir / "task.yaml").write_text(
        f"name: tiny\nlabels: {labels}\ndata:\n  train: {{path: train.csv}}\n  test: {{path: test.jsonl}}\n"
    )
    return load_task(task_dir / "task.yaml")


def test_labels_named_by_numbers_are_names_not_positions(task_dir):
    """Yelp's stars or AG News' 1-4: with labels named "1".."3", the number 1 is the label named "1"."""
    write_jsonl(task_dir / "train.jsonl", [{"text": "a", "label": 1}, {"text": "b", "label": 3}])
    (task_dir / "task.yaml").write_text(
        'name: stars\nlabels: ["1", "2", "3"]\n'
        "data:\n  train: {path: train.jsonl}\n  test: {path: test.jsonl}\n"
    )
    spec = load_task(task_dir / "task.yaml")
    assert [spec.label_names[e.label] for e in load_split(spec, "train")] == ["1", "3"]
    csv_spec = _csv_task(task_dir, "text,label\nawful,1\nmeh,2\n", labels='["1", "2", "3"]')
    assert [csv_spec.label_names[e.label] for e in load_split(csv_spec, "train")] == ["1", "2"]


def test_csv_numbers_that_name_no_label_are_positions(task_dir):
    spec = _csv_task(task_dir, "text,label\ngood,1\nbad,0\nfine,positive\n")
    assert [e.label for e in load_split(spec, "train")] == [1, 0, 1]
    with pytest.raises(DataError, match=r"line 2.*unknown label.*'7'"):
        load_split(_csv_task(task_dir, "text,label\ngood,7\n"), "train")


def test_csv_cells_are_read_as_the_text_they_are(task_dir):
    """pandas reads "NA"/"null" as missing and numbers as numbers; a review may say exactly that."""
    spec = _csv_task(task_dir, "text,label\nNA,negative\nnull,positive\n007,negative\n")
    assert [e.text for e in load_split(spec, "train")] == ["NA", "null", "007"]
    # One empty label cell is blamed on its own line (pandas made the column floats and blamed line 2).
    with pytest.raises(DataError) as err:
        load_split(_csv_task(task_dir, "text,label\ngood,1\nbad,\nok,0\n"), "train")
    assert "line 3" in str(err.value) and "field 'label'" in str(err.value)


def test_byte_order_marks_and_bad_csv_headers(task_dir):
    (task_dir / "train.jsonl").write_bytes(b'\xef\xbb\xbf{"text": "a", "label": "positive"}\n')
    assert load_split(load_task(task_dir / "task.yaml"), "train").examples[0].label == 1
    spec = _csv_task(task_dir, "\ufefftext,label\ngood,positive\n")
    assert load_split(spec, "train").examples[0].text == "good"
    with pytest.raises(DataError, match=r"line 1.*bad CSV header"):
        load_split(_csv_task(task_dir, "text,text\ngood,positive\n"), "train")


def test_every_bad_row_is_reported_in_one_pass(task_dir):
    from tasktune.errors import DataErrors
    from tasktune.task import data

    rows = [{"text": "fine", "label": "positive"}] + [
        {"text": f"meh {i}", "label": "neutral"} for i in range(12)
    ]
    rows.insert(3, {"text": "  ", "label": "negative"})
    spec = _task_with_train(task_dir, rows)
    with pytest.raises(DataErrors) as err:
        load_split(spec, "train")  # stopped at line 2 before: fix, rerun, find line 3, ...
    assert len(err.value.problems) == 13 and (err.value.line, err.value.field) == (2, "label")
    msg = str(err.value)
    assert msg.startswith("13 bad rows in ") and "line 4, field 'text': empty text" in msg
    assert msg.count("unknown label") == 9 and "... and 3 more" in msg  # 10 shown
    # A file where every row is bad (a misnamed column) stops counting, and says so.
    many = [{"txt": f"r {i}", "label": "positive"} for i in range(data.MAX_PROBLEMS + 5)]
    with pytest.raises(DataErrors, match=f"^{data.MAX_PROBLEMS} or more bad rows"):
        load_split(_task_with_train(task_dir, many), "train")
