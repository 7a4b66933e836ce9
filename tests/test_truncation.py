from tasktune import truncation
from tasktune.backbones.loading import load_backbone


def test_only_inputs_longer_than_the_limit_are_counted(tiny_bert_dir):
    tok = load_backbone(str(tiny_bert_dir), device="cpu").tokenizer
    exact = len(tok("a b c")["input_ids"])  # with [CLS] and [SEP]
    truncation.take()
    enc = truncation.tokenize_bounded(
        tok, ["a b c", "a", "a b c d e f"], None, exact, "test input", padding=True
    )
    assert [sum(m) for m in enc["attention_mask"]] == [exact, exact - 2, exact]
    assert truncation.take() == {f"test input (limit {exact} tokens)": 1}
    assert truncation.take() == {}  # cleared


def test_a_run_says_how_many_test_inputs_were_cut(tmp_path, tiny_bert_dir):
    from tasktune.runner import run_matrix
    from tasktune.task.spec import load_task
    from tests.conftest import write_tiny_task

    task = write_tiny_task(tmp_path)
    long = {"text": " ".join(["word"] * 400), "label": "positive"}
    with (tmp_path / "test.jsonl").open("a") as f:
        import json

        f.write(json.dumps(long) + "\n")
    out = run_matrix(
        load_task(task),
        route_names=["prompting"],
        backbone_names=[str(tiny_bert_dir)],
        protocol="zero",
        out_dir=tmp_path / "run",
    )
    (result,) = out.results  # the tiny model has 128 positions: the limit is that, not the 256 asked for
    assert result.info.route_config["truncated_test_inputs"] == {"encoder embedding (limit 128 tokens)": 1}
    assert any(
        "1 of 21 test inputs cut to fit the encoder embedding (limit 128 tokens)" in w for w in out.warnings
    )
