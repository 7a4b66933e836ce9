"""R9: names cannot escape the registry root — traversal, encodings, NUL, backslashes, symlinks and
archive members outside the root are all refused before touching the filesystem."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from tasktune.registry import Registry, RegistryError, UnsafeNameError
from tasktune.registry.names import check_file_name, check_name, parse_ref, safe_join
from tests.registry.conftest import save_prompt, save_soft_prompt

BAD_NAMES = [
    "../x", "..", ".", "", "/etc/passwd", "/abs", "x/../../y", "a/b", "%2e%2e%2f", "..%2fx", "%2e%2e",
    "a\x00b", "a\\b", "..\\x", "C:\\x", "Sentiment", " x", "x ", "x\n", "ｘ", "-x", ".hidden", "a" * 65,
    "~root", "a:b",
]  # fmt: skip


@pytest.mark.parametrize("bad", BAD_NAMES)
def test_bad_task_names_are_refused_everywhere(registry: Registry, tmp_path, bad):
    with pytest.raises(UnsafeNameError, match="invalid task name"):
        check_name(bad)
    with pytest.raises(UnsafeNameError):
        save_prompt(registry, bad)
    for call in (registry.load, registry.show, registry.resolve, registry.list, registry.aliases):
        with pytest.raises(UnsafeNameError):
            call(bad)
    with pytest.raises(UnsafeNameError):
        registry.set_alias(bad, "prod", 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reg"]
    assert list(registry.artifacts_dir.iterdir()) == []


@pytest.mark.parametrize("bad", ["../x", "%2e%2e%2f", "a\x00b", "a\\b", "/abs", "..", 0, -1, True, 1.5, None])
def test_bad_references_are_refused(registry: Registry, bad):
    save_prompt(registry)
    with pytest.raises(UnsafeNameError):
        parse_ref(bad)
    with pytest.raises(RegistryError):
        registry.load("sentiment", bad)


@pytest.mark.parametrize(
    "bad",
    ["../w.json", "/w.json", "a/w.json", "w.json\x00", "a\\w.json", "%2e%2e%2fw.json", "w.bin", "w", ".json"],
)
def test_bad_file_names_are_refused(registry: Registry, bad):
    with pytest.raises(UnsafeNameError):
        check_file_name(bad)
    with pytest.raises(RegistryError):
        registry.save("t", "prompt", backbone=None, route="r", json_files={bad: {}})
    assert registry.list() == []


def test_good_names_pass():
    assert check_name("sst2.v1_x-y") == "sst2.v1_x-y"
    assert check_file_name("lora_config.json") == "lora_config.json"
    assert parse_ref("v12") == parse_ref("12") == parse_ref(12) == 12


def test_symlinked_version_folder_is_refused(registry: Registry, tmp_path):
    save_soft_prompt(registry)
    save_soft_prompt(registry)
    v1 = registry.root / "artifacts/sentiment/v1"
    os.rename(v1, tmp_path / "elsewhere")
    v1.symlink_to(tmp_path / "elsewhere")  # same bytes, reached through a link
    with pytest.raises(UnsafeNameError, match="symlink"):
        registry.load("sentiment", 1)
    assert any("symlink" in p for p in registry.verify())
    assert registry.load("sentiment", 2).version == 2


def test_symlinked_file_and_task_folder_are_refused(registry: Registry, tmp_path):
    save_soft_prompt(registry)
    weights = registry.root / "artifacts/sentiment/v1/weights.safetensors"
    copy = tmp_path / "copy.safetensors"
    copy.write_bytes(weights.read_bytes())
    weights.unlink()
    weights.symlink_to(copy)
    with pytest.raises(RegistryError, match="symlink"):
        registry.load("sentiment", 1)
    task_dir = registry.root / "artifacts/sentiment"
    os.rename(task_dir, tmp_path / "task-elsewhere")
    task_dir.symlink_to(tmp_path / "task-elsewhere")
    with pytest.raises(UnsafeNameError, match="symlink"):
        registry.load("sentiment", 1)
    with pytest.raises(UnsafeNameError, match="symlink"):
        save_soft_prompt(registry)  # never writes through a planted link


def test_safe_join_refuses_dot_components(tmp_path):
    for part in ("..", ".", "", "a/b", "a\\b", "a\x00"):
        with pytest.raises(UnsafeNameError):
            safe_join(tmp_path, part)


def _tar(tmp_path: Path, build) -> Path:
    out = tmp_path / "evil.tar.gz"
    with tarfile.open(out, "w:gz") as tar:
        build(tar)
    return out


def _file(name: str, data: bytes = b"{}") -> tuple[tarfile.TarInfo, io.BytesIO]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, io.BytesIO(data)


def _special(name: str, kind: bytes, target: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


EVIL_MEMBERS = {
    "parent traversal": lambda t: t.addfile(*_file("../escaped.json")),
    "absolute path": lambda t: t.addfile(*_file("/tmp/escaped-abs.json")),
    "nested path": lambda t: t.addfile(*_file("sub/../../escaped.json")),
    "encoded traversal": lambda t: t.addfile(*_file("%2e%2e%2fescaped.json")),
    "backslash": lambda t: t.addfile(*_file("..\\escaped.json")),
    "symlink": lambda t: t.addfile(_special("link.json", tarfile.SYMTYPE, "/etc/passwd")),
    "hard link": lambda t: t.addfile(_special("hard.json", tarfile.LNKTYPE, "/etc/passwd")),
    "device": lambda t: t.addfile(_special("dev.json", tarfile.CHRTYPE)),
    "fifo": lambda t: t.addfile(_special("fifo.json", tarfile.FIFOTYPE)),
    "directory": lambda t: t.addfile(_special("dir.json", tarfile.DIRTYPE)),
    "pickle suffix": lambda t: t.addfile(*_file("model.bin", b"\x80\x04")),
}


@pytest.mark.parametrize("case", sorted(EVIL_MEMBERS))
def test_archive_members_outside_root_are_refused(registry: Registry, tmp_path, case):
    save_prompt(registry)
    good = registry.root / "artifacts/sentiment/v1"

    def build(tar: tarfile.TarFile) -> None:
        for name in ("manifest.json", "prompt.json"):
            tar.add(good / name, arcname=name)
        EVIL_MEMBERS[case](tar)

    before = sorted(str(p) for p in tmp_path.rglob("*"))
    with pytest.raises(UnsafeNameError, match="member"):
        registry.import_archive(_tar(tmp_path, build))
    after = sorted(str(p) for p in tmp_path.rglob("*"))
    assert [p for p in after if p not in before] == [str(tmp_path / "evil.tar.gz")]
    assert [i.version for i in registry.list()] == [1]
    assert not Path("/tmp/escaped-abs.json").exists()
