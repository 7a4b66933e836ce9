"""``tasktune registry ...`` commands, invoked on the sub-app directly."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, get_peft_model, get_peft_model_state_dict
from typer.testing import CliRunner

from tasktune.cli import registry_cmd
from tasktune.cli.console import console
from tasktune.registry import Registry, RegistryError, peft_config_to_json
from tests.registry.conftest import llama_identity, make_tiny_llama, save_prompt

runner = CliRunner()


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    monkeypatch.setattr(console, "_width", 250)  # tables unwrapped, so figures can be asserted


@pytest.fixture
def four_kinds(tmp_path) -> Path:
    """One task, four routes: prompt, soft prompt (20 tokens), LoRA (r=4) and a full fine-tune."""
    root = tmp_path / "reg"
    base = make_tiny_llama(seed=0)
    identity = llama_identity(base)
    with Registry(root) as reg:
        save_prompt(reg, "reviews")
        reg.save(
            "reviews", "soft-prompt", backbone=identity, route="prompt-tuning", parent=1,
            tensors={"prompt_embeddings": torch.randn(20, 32)}, metrics={"accuracy": 0.84},
        )  # fmt: skip
        config = LoraConfig(r=4, target_modules=["q_proj", "v_proj"])
        lora = get_peft_model(make_tiny_llama(seed=0), config)
        reg.save(
            "reviews", "lora", backbone=identity, route="lora", tensors=get_peft_model_state_dict(lora),
            json_files={"lora_config.json": peft_config_to_json(config)}, metrics={"accuracy": 0.88},
        )  # fmt: skip
        reg.save("reviews", "full", backbone=identity, route="full-ft", tensors=base.state_dict())
    return root


def invoke(*args: str):
    return runner.invoke(registry_cmd.app, list(args))


def test_show_puts_the_four_kinds_side_by_side(four_kinds):
    result = invoke("show", "--registry", str(four_kinds))
    assert result.exit_code == 0, result.output
    with Registry(four_kinds) as reg:
        infos = reg.list()
        backbone_bytes = reg.load("reviews", 2).backbone.num_parameters * 4
    lines = {line.split("│")[3].strip(): line for line in result.output.splitlines() if line.count("│") > 5}
    assert set(lines) == {"prompt", "soft-prompt", "lora", "full"}
    for info in infos:
        assert f"{info.bytes:,}" in lines[info.kind]  # exact byte figure on the version's own row
    assert f"{backbone_bytes / 1024:.1f} KiB" in lines["full"]
    sizes = {i.kind: i.bytes for i in infos}
    assert sizes["soft-prompt"] < sizes["lora"] < sizes["full"]  # the point of the table
    ratio = float(re.search(r"([\d.]+)%", lines["full"].split("│")[9]).group(1))
    assert 95 < ratio < 110  # a full fine-tune costs the whole model (+ manifest)
    assert "—" in lines["prompt"]  # a text prompt has no backbone bytes


def test_show_one_version_prints_lineage_files_and_metrics(four_kinds):
    result = invoke("show", "reviews", "2", "--registry", str(four_kinds))
    assert result.exit_code == 0, result.output
    assert "lineage: v2 ← v1" in result.output
    assert "weights.safetensors" in result.output and "accuracy" in result.output and "0.84" in result.output
    assert re.search(r"vs backbone fp32 .* → \d+\.\d+%", result.output)


def test_list_alias_diff(four_kinds):
    assert invoke("alias", "reviews", "production", "3", "--registry", str(four_kinds)).exit_code == 0
    listed = invoke("list", "--registry", str(four_kinds)).output
    assert re.search(r"v3 .*lora.*production", listed) and "full-ft" in listed
    assert "production → v3" in invoke("alias", "reviews", "--registry", str(four_kinds)).output
    diff = invoke("diff", "reviews", "2", "production", "--registry", str(four_kinds)).output
    assert "metrics.accuracy" in diff and "0.84" in diff and "0.88" in diff and "kind" in diff


def test_export_import_verify_gc(four_kinds, tmp_path):
    archive = tmp_path / "sp.tar.gz"
    assert invoke("export", "reviews", "2", str(archive), "--registry", str(four_kinds)).exit_code == 0
    other = tmp_path / "other"
    result = invoke("import", str(archive), "--registry", str(other))
    assert result.exit_code == 0 and "as reviews v1" in result.output
    assert "ok: 1 version(s) verified" in invoke("verify", "--registry", str(other)).output
    (other / "tmp" / "w-reviews-deadbeef").mkdir()  # a crashed writer's leftover (no lock)
    failed = invoke("verify", "--registry", str(other))
    assert isinstance(failed.exception, RegistryError) and "w-reviews-deadbeef" in str(failed.exception)
    assert "gc: 1 leftover(s) removed" in invoke("gc", "--registry", str(other)).output
    assert invoke("verify", "--registry", str(other)).exit_code == 0


def test_user_mistakes_raise_registry_errors(four_kinds, tmp_path, monkeypatch):
    missing = invoke("list", "--registry", str(tmp_path / "nope"))
    assert isinstance(missing.exception, RegistryError) and "no registry at" in str(missing.exception)
    assert not (tmp_path / "nope").exists()
    bad = invoke("show", "../etc", "1", "--registry", str(four_kinds))
    assert isinstance(bad.exception, RegistryError) and "invalid task name" in str(bad.exception)
    monkeypatch.setenv("TASKTUNE_REGISTRY", str(four_kinds))
    unknown = invoke("show", "reviews", "9")
    assert isinstance(unknown.exception, RegistryError) and "no version 9" in str(unknown.exception)


def test_a_misspelt_task_is_an_error_not_ok(four_kinds):
    """`registry verify TYPO` printed 'ok: 0 version(s) verified' with exit 0: a deploy gate passed."""
    for command in (("verify", "reveiws"), ("list", "reveiws"), ("alias", "reveiws")):
        result = invoke(*command, "--registry", str(four_kinds))
        assert isinstance(result.exception, RegistryError), command
        assert "no task 'reveiws'" in str(result.exception) and "tasks: reviews" in str(result.exception)


def test_export_into_a_folder_or_nowhere(four_kinds, tmp_path):
    folder = tmp_path / "exports"
    folder.mkdir()
    assert invoke("export", "reviews", "2", str(folder), "--registry", str(four_kinds)).exit_code == 0
    assert (folder / "reviews-v2.tar.gz").is_file()
    gone = invoke("export", "reviews", "2", str(tmp_path / "no" / "x.tar.gz"), "--registry", str(four_kinds))
    assert isinstance(gone.exception, RegistryError) and "does not exist" in str(gone.exception)


def test_read_commands_work_on_a_registry_whose_database_is_elsewhere(tmp_path, monkeypatch):
    """With $TASKTUNE_REGISTRY_URL (e.g. a shared PostgreSQL) there is no <root>/registry.db."""
    monkeypatch.setenv("TASKTUNE_REGISTRY_URL", f"sqlite:///{tmp_path / 'elsewhere.db'}")
    with Registry(tmp_path / "reg") as reg:
        save_prompt(reg, "reviews")
    assert not (tmp_path / "reg" / "registry.db").exists()
    result = invoke("list", "--registry", str(tmp_path / "reg"))
    assert result.exit_code == 0 and "reviews" in result.output
    missing = invoke("list", "--registry", str(tmp_path / "typo"))
    assert isinstance(missing.exception, RegistryError) and "no registry at" in str(missing.exception)
