import json
from pathlib import Path

from tasktune.cli.main import main
from tests.conftest import write_jsonl


def test_task_check_prints_counts(task_dir, capsys):
    assert (
        main(["task", "check", str(task_dir / "task.yaml"), "--k", "8", "--json", str(task_dir / "r.json")])
        == 0
    )
    out = capsys.readouterr().out
    assert "task check passed" in out and "40 (50%)" in out
    assert json.loads((task_dir / "r.json").read_text())["splits"][0]["size"] == 80


def test_task_check_with_tokenizer(task_dir, tiny_llama_dir, capsys):
    assert (
        main(["task", "check", str(task_dir / "task.yaml"), "--k", "0", "--backbone", str(tiny_llama_dir)])
        == 0
    )
    assert "tokens" in capsys.readouterr().out


def test_user_error_is_one_message_not_a_traceback(task_dir, capsys):
    write_jsonl(
        task_dir / "train.jsonl", [{"text": "ok", "label": "positive"}, {"text": "x", "label": "meh"}]
    )
    assert main(["task", "check", str(task_dir / "task.yaml")]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "line 2" in err and "unknown label" in err
    assert "Traceback" not in err


def test_usage_error_exit_code(capsys):
    assert main(["task", "check"]) == 2


def test_run_writes_results_and_resumes(task_dir, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["run", str(task_dir / "task.yaml"), "--routes", "majority", "--out", str(out)]
    assert main(args) == 0
    files = list(out.glob("*--s*.json"))  # cells (run.json describes the run)
    assert [f.name for f in files] == ["majority--none--full--s13.json"]
    result = json.loads(files[0].read_text())
    assert result["metrics"]["accuracy"] == 0.5 and len(result["records"]) == 20
    assert main(args) == 0
    assert "1 reused" in capsys.readouterr().out


def test_run_unknown_route(task_dir, tmp_path, capsys):
    assert main(["run", str(task_dir / "task.yaml"), "--routes", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown route 'nope'" in capsys.readouterr().err


def test_backbones_list_and_info(tiny_bert_dir, capsys):
    assert main(["backbones", "list"]) == 0
    out = capsys.readouterr().out
    assert "smollm2-135m-instruct" in out and "all-minilm-l6-v2" in out
    assert main(["backbones", "info", str(tiny_bert_dir), "--device", "cpu"]) == 0
    assert "BertModel" in capsys.readouterr().out


def test_demo_task_file_is_bundled():
    from tasktune.cli.run_cmd import DEMO_TASK

    assert Path(DEMO_TASK).is_file()


def test_run_keeps_adaptations_in_the_registry(task_dir, tiny_llama_dir, tmp_path, capsys):
    from tasktune.registry import Registry

    out, reg = tmp_path / "run", tmp_path / "reg"
    args = [
        "run",
        str(task_dir / "task.yaml"),
        "--routes",
        "majority,prompting",
        "--backbones",
        str(tiny_llama_dir),
    ]
    assert main([*args, "--protocol", "zero", "--out", str(out), "--registry", str(reg)]) == 0
    with Registry(reg) as r:
        versions = r.list("tiny")
    assert [(v.kind, v.version) for v in versions] == [("prompt", 1)]
    cell = json.loads((out / f"prompting--{tiny_llama_dir.name}--zero--s13.json").read_text())
    assert cell["timings"]["artifact_bytes"] == versions[0].bytes > 0
    assert cell["info"]["route_config"]["registry_version"] == 1


def test_run_bad_seeds_and_hub_data_are_one_message(task_dir, tmp_path, capsys):
    assert main(["run", str(task_dir / "task.yaml"), "--routes", "majority", "--seeds", "13,x"]) == 2
    assert "--seeds: 'x' is not a whole number" in capsys.readouterr().err
    assert main(["run", str(task_dir / "task.yaml"), "--routes", "majority", "--seeds", "13,-5"]) == 2
    assert "--seeds: '-5' is negative" in capsys.readouterr().err
    (task_dir / "hub.yaml").write_text(
        "name: hubby\nlabels: [neg, pos]\ndata:\n  train: {hf: glue, subset: sst2, split: train}\n"
    )
    assert main(["run", str(task_dir / "hub.yaml"), "--routes", "majority", "--out", str(tmp_path)]) == 2
    assert "--allow-hub" in capsys.readouterr().err


def test_run_with_route_settings_is_its_own_cell(task_dir, tiny_llama_dir, tmp_path, capsys):
    from tasktune.evaluation.results import read_result

    base = ["run", str(task_dir / "task.yaml"), "--routes", "prompt_tuning", "--protocol", "few"]
    base += ["--seeds", "13", "--backbones", str(tiny_llama_dir), "--no-registry", "--out", str(tmp_path)]
    assert main([*base, "--set", "prompt_tuning.num_virtual_tokens=3"]) == 2
    assert "set init too" in capsys.readouterr().err  # the prompt start has its own length
    assert main([*base, "--set", "lora.lora.r=4"]) == 2
    assert "options given for route 'lora', which this run does not include" in capsys.readouterr().err
    assert main([*base, "--set", "prompt_tuning.train.lr=-1"]) == 2
    assert "train.lr = -1" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.json"))  # refused before anything ran

    settings = ["--set", "prompt_tuning.init=labels", "--set", "prompt_tuning.num_virtual_tokens=3"]
    settings += ["--set", "prompt_tuning.train.epochs=2"]
    assert main([*base, *settings]) == 0
    (cell,) = tmp_path.glob("prompt_tuning--*--o*.json")
    config = read_result(cell).info.route_config
    assert config["overrides"] == {"init": "labels", "num_virtual_tokens": 3, "train.epochs": 2}
    assert config["options"]["num_virtual_tokens"] == 3 and config["options"]["train"]["epochs"] == 2
    assert config["options"]["train"]["lr"] == 3e-2  # a label start brings its own learning rate
    out = capsys.readouterr().out
    assert "prompt_tuning[init=" in out


def test_demo_without_its_task_file_says_where_it_lives(tmp_path, capsys):
    assert main(["demo", "--task", str(tmp_path / "missing.yaml"), "--out", str(tmp_path / "run")]) == 2
    assert "run from a clone of the repository" in capsys.readouterr().err


def test_candidate_is_only_the_adaptation_the_recommended_cell_registered(task_dir, tmp_path, capsys):
    """Reused cells were registered by an earlier run, maybe in another registry: 'candidate' must not
    point at whatever v1 the registry given now holds."""
    from tasktune.cli.run_cmd import finish
    from tasktune.evaluation.results import write_result
    from tasktune.registry import Registry
    from tasktune.runner import RunOutcome, write_run_manifest
    from tasktune.task.spec import load_task
    from tests.evaluation.synthetic import correctness, make_result

    spec = load_task(task_dir / "task.yaml")
    out = tmp_path / "run"
    write_run_manifest(out, spec, protocol="few", eval_split="test")
    results = []
    for route, wrong in (("majority", range(50)), ("prompting", range(5))):
        r = make_result(
            route, "tiny-llama" if route != "majority" else None, correctness(100, wrong), task="tiny"
        )
        if route == "prompting":
            r.info.route_config.update(registry_version=1, selected_on="accuracy")
        write_result(r, out / f"{route}--{'tiny-llama' if r.info.backbone else 'none'}--few--s13.json")
        results.append(r)
    done = [RunOutcome(results=results)]
    prompt = {"p.json": {"x": 1}}
    with Registry(tmp_path / "a") as a, Registry(tmp_path / "b") as b:
        a.save("tiny", "prompt", backbone=None, route="prompting", json_files=prompt, run_id="prompting-13")
        b.save("tiny", "prompt", backbone=None, route="other", json_files=prompt, run_id="unrelated")
    finish(spec, out, done, tmp_path / "b")
    assert "is not in" in capsys.readouterr().out
    finish(spec, out, done, tmp_path / "a")
    assert "v1 is now 'candidate'" in capsys.readouterr().out
    with Registry(tmp_path / "a") as a, Registry(tmp_path / "b") as b:
        assert a.aliases("tiny") == {"candidate": 1} and b.aliases("tiny") == {}


def test_path_device_k_and_registry_mistakes_are_one_message(task_dir, tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    task = str(task_dir / "task.yaml")
    cases = [
        (["task", "check", task, "--json", str(tmp_path / "no" / "x.json")], "No such file or directory"),
        (["task", "check", task, "--k", "-3"], "--k -3: expected K >= 1"),
        (["run", task, "--routes", "majority", "--out", str(tmp_path / "afile")], "File exists"),
        (["run", task, "--routes", "majority", "--device", "gpu0"], "device 'gpu0': expected auto"),
        (["serve", "--registry", str(tmp_path)], "is not a registry"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        assert message in capsys.readouterr().err, argv
