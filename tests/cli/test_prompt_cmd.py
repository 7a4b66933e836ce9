from tasktune.cli.main import main


def _prompts(tmp_path):
    a = tmp_path / "short.yaml"
    a.write_text("name: short\ncue: 'Answer:'\nchat: false\n")
    b = tmp_path / "fewshot.yaml"
    b.write_text("name: fewshot\ncue: 'It was'\ndemos_per_class: 1\ncalibration: contextual\nchat: false\n")
    return a, b


def test_prompt_ab_prints_test_and_verdict(task_dir, tiny_llama_dir, tmp_path, capsys):
    a, b = _prompts(tmp_path)
    code = main(
        ["prompt", "ab", str(task_dir / "task.yaml"), str(a), str(b), "--backbone", str(tiny_llama_dir)]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "McNemar exact test" in out and "p =" in out
    assert "20 paired examples" in out
    assert "selected on test" in out  # no dev split in this task: test is used, and the user is told
    assert ("better than" in out) or ("No significant difference" in out) or ("identical" in out.lower())


def test_prompt_eval(task_dir, tiny_llama_dir, tmp_path, capsys):
    a, _ = _prompts(tmp_path)
    assert (
        main(["prompt", "eval", str(task_dir / "task.yaml"), str(a), "--backbone", str(tiny_llama_dir)]) == 0
    )
    assert "accuracy" in capsys.readouterr().out


def test_bad_prompt_file_is_a_clear_error(task_dir, tiny_llama_dir, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("instruction: '{{ text.__class__ }}'\n")
    code = main(["prompt", "eval", str(task_dir / "task.yaml"), str(bad), "--backbone", str(tiny_llama_dir)])
    assert code == 2
    err = capsys.readouterr().err
    assert "bad.yaml" in err and "instruction" in err and "__class__" in err


def test_search_stores_in_registry_and_export_prints_text(task_dir, tiny_llama_dir, tmp_path, capsys):
    reg = tmp_path / "reg"
    task = str(task_dir / "task.yaml")
    args = [
        "prompt",
        "search",
        task,
        "--protocol",
        "few",
        "--backbone",
        str(tiny_llama_dir),
        "--registry",
        str(reg),
    ]
    assert main(args) == 0
    assert "stored as tiny v1" in capsys.readouterr().out
    assert main(["prompt", "export", task, "--registry", str(reg)]) == 0
    out = capsys.readouterr().out
    assert "<paste the text here>" in out and "label words" in out


def test_prompt_ab_scores_on_dev_when_the_task_has_one(task_dir, tiny_llama_dir, tmp_path, capsys):
    from tests.conftest import make_rows, write_jsonl

    write_jsonl(task_dir / "dev.jsonl", make_rows(3))
    task = task_dir / "task.yaml"
    task.write_text(task.read_text() + "  dev: {path: dev.jsonl}\n")
    a, b = _prompts(tmp_path)
    assert main(["prompt", "ab", str(task), str(a), str(b), "--backbone", str(tiny_llama_dir)]) == 0
    out = capsys.readouterr().out
    assert "tiny/dev (6 paired examples" in out and "selected on test" not in out
    assert (
        main(["prompt", "eval", str(task), str(a), "--split", "nope", "--backbone", str(tiny_llama_dir)]) == 2
    )
    assert "no 'nope' split; it has train, test, dev" in capsys.readouterr().err
