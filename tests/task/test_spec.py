from pathlib import Path

import pytest

from tasktune.errors import TaskFileError
from tasktune.task.spec import load_task, parse_task

BASE = {
    "name": "reviews",
    "labels": ["negative", "positive"],
    "data": {"train": {"path": "train.jsonl"}},
}


def test_short_label_form_and_defaults():
    spec = parse_task(BASE)
    assert spec.label_names == ["negative", "positive"]
    assert spec.labels[0].label_words == ("negative",)
    assert spec.text_field == "text" and spec.metric == "accuracy" and spec.seed == 13


def test_unknown_field_is_named(tmp_path):
    path = tmp_path / "task.yaml"
    path.write_text("name: x\nlabels: [a, b]\ndata: {train: {path: t.jsonl}}\ntext_feild: sentence\n")
    with pytest.raises(TaskFileError) as err:
        load_task(path)
    assert str(path) in str(err.value)
    assert "unknown field 'text_feild'" in str(err.value)


def test_unknown_nested_field_is_named():
    bad = {**BASE, "data": {"train": {"path": "t.jsonl", "colums": {}}}}
    with pytest.raises(TaskFileError, match=r"unknown field 'data.train.colums'"):
        parse_task(bad)


def test_duplicate_label_names(tmp_path):
    with pytest.raises(TaskFileError, match=r"duplicate label name 'Positive'"):
        parse_task({**BASE, "labels": ["negative", "positive", "Positive"]}, source=tmp_path / "t.yaml")


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("name", "Bad Name!", "task name 'Bad Name!' must match"),
        ("metric", "bleu", "field 'metric'"),
        ("labels", ["only-one"], "at least 2"),
        ("constraints", {"max_latency_ms": -5}, "field 'constraints.max_latency_ms'"),
    ],
)
def test_bad_values_name_field_and_value(field, value, needle):
    with pytest.raises(TaskFileError) as err:
        parse_task({**BASE, field: value})
    assert needle in str(err.value)


def test_source_needs_exactly_one_origin():
    with pytest.raises(TaskFileError, match="exactly one of 'path'"):
        parse_task({**BASE, "data": {"train": {"path": "a.jsonl", "hf": "glue"}}})


def test_missing_task_file(tmp_path):
    with pytest.raises(TaskFileError, match="file not found"):
        load_task(tmp_path / "nope.yaml")


def test_invalid_yaml(tmp_path):
    path = tmp_path / "task.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(TaskFileError, match="not valid YAML"):
        load_task(path)


def test_hash_ignores_location_but_not_content(tmp_path):
    a = parse_task(BASE, base_dir=tmp_path)
    b = parse_task(BASE, base_dir=Path("/elsewhere"))
    c = parse_task({**BASE, "seed": 14})
    assert a.spec_hash() == b.spec_hash() != c.spec_hash()


def test_example_task_files_load():
    root = Path(__file__).resolve().parents[2] / "examples"
    files = sorted(root.rglob("*.yaml"))
    assert len(files) >= 4
    for f in files:
        spec = load_task(f)
        assert spec.num_labels >= 2
        assert "test" in spec.data


def test_prompt_hint_templates_are_checked_like_prompt_templates():
    bad = {**BASE, "prompt": {"input_template": "Review: {{ review }}"}}
    with pytest.raises(TaskFileError, match="'review', which is not a variable here"):
        parse_task(bad)
    with pytest.raises(TaskFileError, match="must place the input"):
        parse_task({**BASE, "prompt": {"input_template": "Review:"}})  # was accepted: no text shown
    with pytest.raises(TaskFileError, match="inside an expression"):
        parse_task({**BASE, "prompt": {"input_template": "{{ text | lower }}"}})
    assert parse_task({**BASE, "prompt": {"input_template": "Review: {{ text }}"}}).prompt.input_template
