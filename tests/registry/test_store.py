"""Saving, loading, versions, aliases, lineage, diff and export/import round trips."""

from __future__ import annotations

import stat

import pytest
import torch

from tasktune.registry import KINDS, Registry, RegistryError, UnsafeNameError
from tests.registry.conftest import identity, save_prompt, save_soft_prompt, write_tar


def test_round_trip_keeps_tensors_json_and_provenance(registry: Registry):
    tensor = torch.randn(20, 32)
    version = registry.save(
        "sentiment",
        "soft-prompt",
        backbone=identity(),
        route="prompt-tuning",
        tensors={"prompt_embeddings": tensor},
        json_files={"prompt_config.json": {"num_virtual_tokens": 20}},
        route_config={"lr": 0.3, "init": "vocab"},
        metrics={"accuracy": 0.8, "macro_f1": 0.75},
        task_hash="th",
        data_hash="dh",
        seed=13,
        run_id="run-1",
    )
    art = registry.load("sentiment", version)
    assert version == 1 and art.version == 1 and art.kind == "soft-prompt"
    assert torch.equal(art.tensors["prompt_embeddings"], tensor)
    assert art.json_files == {"prompt_config.json": {"num_virtual_tokens": 20}}
    m = art.manifest
    assert (m.seed, m.run_id, m.data_hash, m.task_hash, m.route_config["lr"]) == (
        13,
        "run-1",
        "dh",
        "th",
        0.3,
    )
    assert m.package_versions["torch"] == torch.__version__ and m.created.endswith("+00:00")
    assert set(m.files) == {"weights.safetensors", "prompt_config.json"}
    assert art.backbone == identity()


def test_versions_are_dense_immutable_and_read_only(registry: Registry):
    first = save_soft_prompt(registry)
    before = (registry.root / "artifacts/sentiment/v1/weights.safetensors").read_bytes()
    second = save_soft_prompt(registry, tokens=10)
    assert (first, second) == (1, 2)
    assert (registry.root / "artifacts/sentiment/v1/weights.safetensors").read_bytes() == before
    mode = (registry.root / "artifacts/sentiment/v2/weights.safetensors").stat().st_mode
    assert not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    assert registry.load("sentiment", 1).tensors["prompt_embeddings"].shape == (20, 32)
    assert registry.load("sentiment").tensors["prompt_embeddings"].shape == (10, 32)  # latest


def test_tasks_are_numbered_independently(registry: Registry):
    assert [save_prompt(registry, "a"), save_prompt(registry, "b"), save_prompt(registry, "a")] == [1, 1, 2]
    assert registry.tasks() == ["a", "b"]
    assert [(i.task, i.version) for i in registry.list()] == [("a", 1), ("a", 2), ("b", 1)]
    assert [i.version for i in registry.list("a")] == [1, 2]


def test_aliases_resolve_move_and_delete(registry: Registry):
    for _ in range(3):
        save_prompt(registry)
    assert registry.set_alias("sentiment", "production", 2) == 2
    assert registry.resolve("sentiment", "production") == 2
    assert registry.resolve("sentiment", "v3") == registry.resolve("sentiment", "latest") == 3
    registry.set_alias("sentiment", "production", "latest")
    assert registry.aliases("sentiment") == {"production": 3}
    assert registry.show("sentiment", 3).aliases == ("production",)
    registry.remove_alias("sentiment", "production")
    with pytest.raises(RegistryError, match="no alias 'production'"):
        registry.resolve("sentiment", "production")


@pytest.mark.parametrize("bad", ["latest", "3", "v3", "Prod", "../prod"])
def test_reserved_or_unsafe_aliases_are_refused(registry: Registry, bad: str):
    save_prompt(registry)
    with pytest.raises(UnsafeNameError):
        registry.set_alias("sentiment", bad, 1)


def test_unknown_references_name_what_exists(registry: Registry):
    save_prompt(registry)
    with pytest.raises(RegistryError, match=r"no version 7 \(versions: \[1\]\)"):
        registry.load("sentiment", 7)
    with pytest.raises(RegistryError, match="'other' has no versions"):
        registry.load("other")
    with pytest.raises(RegistryError, match="parent version 9 does not exist"):
        save_prompt(registry, parent=9)


def test_lineage_and_diff(registry: Registry):
    save_soft_prompt(registry)
    save_soft_prompt(registry, parent=1, tokens=8)
    registry.save(
        "sentiment", "soft-prompt", backbone=identity(), route="prompt-tuning", parent=2,
        tensors={"prompt_embeddings": torch.zeros(8, 32)}, metrics={"accuracy": 0.9},
    )  # fmt: skip
    assert registry.lineage("sentiment") == [3, 2, 1]
    fields = {d.field: (d.a, d.b) for d in registry.diff("sentiment", 1, 3)}
    assert fields["metrics.accuracy"] == (0.81, 0.9)
    assert fields["parent"] == (None, 2)
    assert "files.weights.safetensors.sha256" in fields and "kind" not in fields


@pytest.mark.parametrize(
    ("kind", "tensors", "json_files", "message"),
    [
        ("soft-prompt", {"prompt_embeddings": torch.zeros(4, 16)}, {}, "hidden_size 32"),
        ("soft-prompt", {"embeddings": torch.zeros(4, 32)}, {}, "only 'prompt_embeddings'"),
        (
            "soft-prompt",
            {"prompt_embeddings": torch.zeros(4, 32), "head.weight": torch.zeros(2, 32)},
            {},
            "needs both 'head.weight' and 'head.bias'",
        ),
        (
            "soft-prompt",
            {
                "prompt_embeddings": torch.zeros(4, 32),
                "head.weight": torch.zeros(2, 16),
                "head.bias": torch.zeros(2),
            },
            {},
            r"expected \(num_labels, 32\)",
        ),
        (
            "deep-prompt",
            {
                "prompt_embeddings": torch.zeros(4, 64),
                "head.weight": torch.zeros(2, 32),
                "head.bias": torch.zeros(2),
            },
            {"prefix_config.json": {}},
            "holds only 'prompt_embeddings', got",
        ),
        ("deep-prompt", {"prompt_embeddings": torch.zeros(4, 2 * 2 * 16)}, {}, "prefix_config.json"),
        ("lora", {"x.lora_A.weight": torch.zeros(2, 2)}, {}, "lora_config.json"),
        ("prompt", {"w": torch.zeros(1)}, {"prompt.json": {}}, "holds no tensors"),
        ("full", {}, {}, "needs tensors"),
        ("adapter", {}, {}, "unknown artifact kind"),
        ("full", {"w": [1.0, 2.0]}, {}, "'w' is a list, not a torch.Tensor"),
    ],
)
def test_kind_conventions_are_enforced(registry: Registry, kind, tensors, json_files, message):
    with pytest.raises(RegistryError, match=message):
        registry.save("t", kind, backbone=identity(), route="r", tensors=tensors, json_files=json_files)
    assert registry.list() == [] and not any(registry.tmp_dir.iterdir())


def test_non_json_metrics_are_refused_before_writing(registry: Registry):
    with pytest.raises(RegistryError, match="not valid JSON"):
        registry.save(
            "t", "prompt", backbone=None, route="r", json_files={"p.json": {}}, metrics={"a": float("nan")}
        )
    with pytest.raises(RegistryError, match="cannot be stored as JSON"):
        registry.save("t", "prompt", backbone=None, route="r", json_files={"p.json": {"x": object()}})
    assert registry.list() == [] and not any(registry.tmp_dir.iterdir())


def test_export_import_round_trip(registry: Registry, tmp_path):
    save_soft_prompt(registry)
    save_soft_prompt(registry, parent=1, tokens=5)
    archive = registry.export("sentiment", 2, tmp_path / "sp.tar.gz")
    other = Registry(tmp_path / "other")
    assert other.import_archive(archive) == ("sentiment", 1)
    art, orig = other.load("sentiment", 1), registry.load("sentiment", 2)
    assert torch.equal(art.tensors["prompt_embeddings"], orig.tensors["prompt_embeddings"])
    assert art.manifest.files == orig.manifest.files
    assert art.manifest.parent is None  # v1 of the source registry does not exist here
    assert registry.import_archive(archive) == ("sentiment", 3)
    assert registry.load("sentiment", 3).manifest.parent == 1  # here it does
    assert other.verify() == [] and registry.verify() == []


def test_every_kind_has_a_documented_convention():
    from tasktune.registry import manifest

    for kind in KINDS:
        assert f"``{kind}``" in manifest.__doc__


def test_the_database_url_comes_from_the_environment_for_every_command(tmp_path, monkeypatch):
    shared = tmp_path / "elsewhere" / "meta.db"
    shared.parent.mkdir()
    monkeypatch.setenv("TASKTUNE_REGISTRY_URL", f"sqlite:///{shared}")
    with Registry(tmp_path / "reg") as reg:
        version = save_prompt(reg)
    assert shared.is_file() and not (tmp_path / "reg" / "registry.db").exists()
    with Registry(tmp_path / "reg") as reg:  # another process, same variable: the same versions
        assert [v.version for v in reg.list("sentiment")] == [version]


def test_an_unusable_database_url_is_one_message_without_the_password(tmp_path, monkeypatch):
    monkeypatch.setenv("TASKTUNE_REGISTRY_URL", "nosuchdialect://user:s3cret@db.example/tasktune")
    with pytest.raises(RegistryError, match=r"\$TASKTUNE_REGISTRY_URL \(nosuchdialect://user:\*\*\*@") as err:
        Registry(tmp_path / "reg")
    assert "s3cret" not in str(err.value)


def test_an_import_keeps_lineage_only_to_the_very_parent(registry: Registry, tmp_path):
    """Version numbers belong to the registry that made them: an unrelated local v1 must not become the
    imported version's parent."""
    save_soft_prompt(registry)
    save_soft_prompt(registry, parent=1, tokens=5)
    archive = registry.export("sentiment", 2, tmp_path / "sp.tar.gz")
    other = Registry(tmp_path / "other")
    save_soft_prompt(other, tokens=7)  # an unrelated v1
    assert other.import_archive(archive) == ("sentiment", 2)
    assert other.load("sentiment", 2).manifest.parent is None
    assert registry.import_archive(archive) == ("sentiment", 3)
    assert registry.load("sentiment", 3).manifest.parent == 1  # the same registry: its real parent


def _rewritten(archive, out, change_manifest=None, files=None):
    """A hand-made archive: ``archive``'s members with some replaced, the manifest's hashes made to match."""
    import hashlib
    import json
    import tarfile

    with tarfile.open(archive, "r:gz") as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    members.update(files or {})
    manifest = json.loads(members.pop("manifest.json"))
    manifest["files"] = {
        n: {"sha256": hashlib.sha256(b).hexdigest(), "bytes": len(b)} for n, b in sorted(members.items())
    }
    (change_manifest or (lambda m: None))(manifest)
    members["manifest.json"] = json.dumps(manifest).encode()
    return write_tar(out, members)


def test_an_import_is_held_to_the_rules_save_enforces(registry: Registry, tmp_path):
    from tasktune.registry import IntegrityError

    save_soft_prompt(registry)
    archive = registry.export("sentiment", 1, tmp_path / "sp.tar.gz")
    other = Registry(tmp_path / "other")
    no_backbone = _rewritten(archive, tmp_path / "a.tar.gz", lambda m: m.update(backbone=None))
    with pytest.raises(RegistryError, match="must record its backbone identity"):
        other.import_archive(no_backbone)  # it would pass every backbone check at load
    bad_json = _rewritten(archive, tmp_path / "b.tar.gz", files={"notes.json": b"{not json"})
    with pytest.raises(IntegrityError, match=r"notes\.json is not valid JSON"):
        other.import_archive(bad_json)
    wrong_width = _rewritten(archive, tmp_path / "c.tar.gz", lambda m: m["backbone"].update(hidden_size=64))
    with pytest.raises(RegistryError, match="hidden"):
        other.import_archive(wrong_width)  # 32-wide embeddings recorded for a 64-wide backbone
    assert other.list() == []
