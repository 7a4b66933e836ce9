"""Checking and tidying a registry: ``diff`` of two manifests, ``verify`` of every stored byte, and
``gc`` of what crashed writers left behind (never a committed version)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from sqlalchemy import select

from tasktune.registry import db
from tasktune.registry.errors import RegistryError
from tasktune.registry.files import check_safetensors_header, remove_path, stale_temp_entries, verify_file
from tasktune.registry.manifest import Manifest
from tasktune.registry.names import check_name, parse_version_dir, safe_join

if TYPE_CHECKING:
    from tasktune.registry.store import Registry


class Difference(NamedTuple):
    field: str  # dotted path, e.g. "metrics.accuracy" or "files.weights.safetensors.bytes"
    a: Any
    b: Any


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(value, dict) and value:
        for key in sorted(value):
            _flatten(value[key], f"{prefix}.{key}" if prefix else str(key), out)
    else:
        out[prefix] = value


def diff(a: Manifest, b: Manifest) -> list[Difference]:
    """Every manifest field (nested dicts flattened) whose value differs between ``a`` and ``b``."""
    left: dict[str, Any] = {}
    right: dict[str, Any] = {}
    _flatten(a.model_dump(mode="json"), "", left)
    _flatten(b.model_dump(mode="json"), "", right)
    out = []
    for key in sorted(left.keys() | right.keys()):
        va, vb = left.get(key), right.get(key)
        if va != vb:  # an absent field and a null one read the same to a user
            out.append(Difference(key, va, vb))
    return out


def verify(registry: Registry, task: str | None = None) -> list[str]:
    """Re-check every version (files, hashes, safetensors framing, JSON) and the folder layout;
    returns one readable line per problem, [] when everything is sound."""
    problems = list(db.integrity_check(registry.engine))
    try:
        infos = registry.list(task)
    except RegistryError as err:  # e.g. a record whose manifest text was altered
        return [*problems, str(err)]
    for info in infos:
        try:
            folder, manifest = registry.check_version(info)
            for name, entry in manifest.files.items():
                verify_file(folder / name, entry.sha256, entry.bytes)
                if name.endswith(".safetensors"):
                    check_safetensors_header(folder / name, entry.bytes)
                else:
                    json.loads((folder / name).read_bytes())
        except (RegistryError, ValueError, OSError) as err:
            problems.append(f"{info.task} v{info.version}: {err}")
    committed = {(i.task, i.version) for i in registry.list()}
    orphans = [p for p in _orphans(registry, committed) if task is None or p.parent.name == task]
    problems += [f"{p}: not a committed version (left by a crashed write; run gc)" for p in orphans]
    if task is None:
        leftovers = stale_temp_entries(registry.tmp_dir)
        problems += [f"{p}: temporary leftover of an unfinished write (run gc)" for p in leftovers]
        problems += _foreign_entries(registry)
    return problems


def gc(registry: Registry) -> list[Path]:
    """Remove temp folders of dead writers and version folders without a committed row.

    Orphan version folders are identified under the write lock: a live writer holds that lock from
    its rename to its commit, so a folder without a row at that moment can only be a crash leftover.
    """
    removed = []
    for entry in stale_temp_entries(registry.tmp_dir):
        remove_path(entry)
        removed.append(entry)
    with db.write_tx(registry.engine) as conn:
        rows = conn.execute(select(db.versions.c.task, db.versions.c.version))
        committed = {(r.task, r.version) for r in rows}
        for path in _orphans(registry, committed):
            remove_path(path)
            removed.append(path)
        tasks = {t for t, _ in committed}
        for task_dir in _task_dirs(registry):
            if task_dir.name not in tasks and not any(task_dir.iterdir()):
                task_dir.rmdir()
                removed.append(task_dir)
    return removed


def _task_dirs(registry: Registry) -> list[Path]:
    out = []
    for entry in sorted(registry.artifacts_dir.iterdir()):
        try:
            check_name(entry.name)
            safe_join(registry.artifacts_dir, entry.name)
        except RegistryError:
            continue  # reported by _foreign_entries, never touched
        if entry.is_dir():
            out.append(entry)
    return out


def _orphans(registry: Registry, committed: set[tuple[str, int]]) -> list[Path]:
    out = []
    for task_dir in _task_dirs(registry):
        for entry in sorted(task_dir.iterdir()):
            version = parse_version_dir(entry.name)
            if version is not None and not entry.is_symlink() and (task_dir.name, version) not in committed:
                out.append(entry)
    return out


def _foreign_entries(registry: Registry) -> list[str]:
    """Anything in the artifact tree that the registry never writes (links, odd names): reported only."""
    problems = []
    for entry in sorted(registry.artifacts_dir.iterdir()):
        if entry.is_symlink() or not entry.is_dir() or not _valid_name(entry.name):
            problems.append(f"{entry}: unexpected entry in the artifact tree (not written by the registry)")
            continue
        for sub in sorted(entry.iterdir()):
            if sub.is_symlink() or not sub.is_dir() or parse_version_dir(sub.name) is None:
                problems.append(f"{sub}: unexpected entry in the artifact tree (not written by the registry)")
    return problems


def _valid_name(name: str) -> bool:
    try:
        check_name(name)
    except RegistryError:
        return False
    return True
