from tasktune.backbones.loading import load_backbone
from tasktune.cli.main import main
from tasktune.registry import Registry


def _save_soft_prompt(tiny_llama_dir, registry):
    """A soft prompt sitting exactly on vocabulary tokens 20, 21 and 22 of the tiny llama."""
    b = load_backbone(str(tiny_llama_dir), device="cpu")
    prompt = b.model.get_input_embeddings().weight.detach()[[20, 21, 22]].clone()
    with Registry(registry) as reg:
        reg.save(
            "demo",
            "soft-prompt",
            backbone=b.identity,
            route="prompt_tuning",
            tensors={"prompt_embeddings": prompt},
        )
    return b


def test_explain_lists_nearest_tokens(tiny_llama_dir, tmp_path, capsys):
    b = _save_soft_prompt(tiny_llama_dir, tmp_path / "reg")
    args = [
        "prompt-tune",
        "explain",
        "demo",
        "--backbone",
        str(tiny_llama_dir),
        "--registry",
        str(tmp_path / "reg"),
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "3 virtual tokens" in out
    for i in (20, 21, 22):
        assert repr(b.tokenizer.convert_ids_to_tokens(i)) + " 1.00" in out


def test_explain_on_a_local_folder_backbone_says_to_name_the_folder(tiny_llama_dir, tmp_path, capsys):
    b = _save_soft_prompt(tiny_llama_dir, tmp_path / "reg")
    # The manifest records the folder by its name only, which does not load from here.
    assert main(["prompt-tune", "explain", "demo", "--registry", str(tmp_path / "reg")]) == 2
    err = capsys.readouterr().err
    assert f"trained on backbone {b.name!r}" in err and "--backbone PATH" in err


def test_explain_refuses_other_kinds(tiny_llama_dir, tmp_path, capsys):
    b = load_backbone(str(tiny_llama_dir), device="cpu")
    with Registry(tmp_path / "reg") as reg:
        reg.save(
            "demo", "prompt", backbone=b.identity, route="prompting", json_files={"prompt.json": {"x": 1}}
        )
    assert main(["prompt-tune", "explain", "demo", "--registry", str(tmp_path / "reg")]) == 2
    assert "explain reads shallow soft prompts" in capsys.readouterr().err


def test_sweep_trains_each_length_and_writes_dev_and_test_accuracy(tiny_llama_dir, tmp_path, capsys):
    import json

    from tests.conftest import write_tiny_task

    (tmp_path / "task").mkdir()
    task = write_tiny_task(tmp_path / "task", n_train=40, n_test=5)
    out = tmp_path / "sweep.json"
    args = ["prompt-tune", "sweep", str(task), "--lengths", "2,6", "--seeds", "13", "--backbone"]
    assert main([*args, str(tiny_llama_dir), "--device", "cpu", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "length sweep" in printed
    data = json.loads(out.read_text())
    assert [r["length"] for r in data["rows"]] == [2, 6]
    hidden = load_backbone(str(tiny_llama_dir), device="cpu").hidden_size
    assert [r["trainable_parameters"] for r in data["rows"]] == [2 * hidden, 6 * hidden]
    for cell in data["cells"]:
        assert 0 <= cell["test_accuracy"] <= 1 and cell["dev_accuracy"] is not None


def test_sweep_refuses_bad_lengths_and_the_prompt_init(tiny_llama_dir, tmp_path, capsys):
    from tests.conftest import write_tiny_task

    (tmp_path / "task").mkdir()
    task = str(write_tiny_task(tmp_path / "task"))
    base = ["prompt-tune", "sweep", task, "--backbone", str(tiny_llama_dir)]
    assert main([*base, "--lengths", "5,x"]) == 2
    assert "comma-separated integers" in capsys.readouterr().err
    assert main([*base, "--lengths", "0"]) == 2
    assert main([*base, "--init", "prompt"]) == 2
    assert "zero-shot prompt's length" in capsys.readouterr().err
