"""The versioned registry: metadata rows in a database, artifact folders on disk.

Writing a version (RELIABILITY R5, R6): files go to a private temp folder under ``<root>/tmp`` (same
filesystem, so the final rename is atomic), each file and the folder are fsynced, then — inside one
short write transaction — the next version number is allocated, the folder is renamed to
``artifacts/<task>/v<N>`` and the row inserted. A crash before the commit leaves either a temp folder
or an unreferenced ``v<N>`` folder, both invisible (only rows are listed) and removed by :meth:`gc`.
Versions are never updated or overwritten; their files are made read-only.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import os
import uuid
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select

from tasktune.backbones.identity import BackboneIdentity
from tasktune.provenance import git_revision, package_versions, utc_now
from tasktune.registry import db, maintenance, queries
from tasktune.registry.artifact import Artifact, VersionInfo, check_backbone, check_contents, prepare_tensors
from tasktune.registry.errors import IntegrityError, RegistryError
from tasktune.registry.files import (
    ORPHAN_PREFIX,
    TempFolder,
    check_safetensors_header,
    fsync_path,
    scan_artifact_folder,
    sha256_file,
    verify_file,
    write_bytes_durably,
)
from tasktune.registry.manifest import KINDS, FileEntry, Manifest, json_safe
from tasktune.registry.names import (
    LATEST,
    MANIFEST_NAME,
    WEIGHTS_NAME,
    check_alias,
    check_file_name,
    check_name,
    safe_join,
    version_dir_name,
)

if TYPE_CHECKING:
    import torch

DEFAULT_ROOT = "./tasktune-registry"
# The metadata database for every command (run, serve, prompt, registry): e.g. a PostgreSQL URL shared
# by several machines, postgresql+psycopg://user@host/tasktune (its driver installed). Artifact files
# stay under the registry folder either way. Unset: <root>/registry.db (SQLite).
URL_ENV = "TASKTUNE_REGISTRY_URL"
# Installed versions cannot change under a running process; asking importlib.metadata on every
# save would cost more than writing a small artifact.
_installed_versions = lru_cache(maxsize=1)(package_versions)


class Registry:
    """Versioned, immutable adaptation artifacts with aliases, lineage and integrity checks."""

    def __init__(self, root: Path | str = DEFAULT_ROOT, url: str | None = None):
        self.root = Path(root).absolute()
        for sub in ("artifacts", "tmp"):
            safe_join(self.root, sub).mkdir(parents=True, exist_ok=True)
        self.artifacts_dir = safe_join(self.root, "artifacts")
        self.tmp_dir = safe_join(self.root, "tmp")
        self.url = url or os.environ.get(URL_ENV) or f"sqlite:///{self.root / 'registry.db'}"
        try:
            self.engine = db.make_engine(self.url)
        except Exception as err:  # a bad URL, a missing driver, a server that does not answer
            where = f"${URL_ENV}" if url is None and os.environ.get(URL_ENV) else "the registry URL"
            raise RegistryError(
                f"cannot open the registry database at {where} ({db.redact(self.url)}): {err}"
            ) from err

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------------------------

    def save(
        self,
        task: str,
        kind: str,
        *,
        backbone: BackboneIdentity | None,
        route: str,
        tensors: dict[str, torch.Tensor] | None = None,
        json_files: dict[str, Any] | None = None,
        route_config: dict[str, Any] | None = None,
        metrics: dict[str, Any] | None = None,
        task_hash: str | None = None,
        data_hash: str | None = None,
        seed: int | None = None,
        parent: int | None = None,
        run_id: str | None = None,
    ) -> int:
        """Store a new immutable version of ``task`` and return its number (1, 2, ...)."""
        check_name(task)
        where = f"task {task!r}"
        if kind not in KINDS:
            choices = ", ".join(KINDS)
            raise RegistryError(f"{where}: unknown artifact kind {kind!r}; expected one of: {choices}")
        tensors, json_files = dict(tensors or {}), dict(json_files or {})
        for name in json_files:
            if check_file_name(name) == MANIFEST_NAME or not name.endswith(".json"):
                raise RegistryError(f"{where}: JSON file {name!r} must end in .json, not be {MANIFEST_NAME}")
        check_contents(kind, tensors, json_files, backbone, where)
        payload = {name: json_safe(value, f"{where}, {name}") for name, value in json_files.items()}
        parent_sha256 = self._manifest_sha256(task, parent) if parent is not None else None
        tmp = TempFolder(self.tmp_dir, task)
        try:
            if tensors:
                from safetensors.torch import save_file

                weights = tmp.path / WEIGHTS_NAME
                save_file(prepare_tensors(tensors), str(weights), metadata={"format": "pt"})
                fsync_path(weights)
            for name, data in payload.items():
                write_bytes_durably(tmp.path / name, data)
            files = {}
            for path in sorted(tmp.path.iterdir()):
                digest, size = sha256_file(path)
                files[path.name] = FileEntry(sha256=digest, bytes=size)
            manifest = Manifest(
                kind=kind,  # type: ignore[arg-type]
                task=task,
                task_hash=task_hash,
                backbone=None if backbone is None else backbone.to_dict(),
                route=route,
                route_config=route_config or {},
                metrics=metrics or {},
                data_hash=data_hash,
                seed=seed,
                package_versions=_installed_versions(),
                git_revision=git_revision(),
                created=utc_now(),
                parent=parent,
                parent_sha256=parent_sha256,
                run_id=run_id,
                files=files,
            )
            return self._commit(tmp, manifest, manifest.to_json_bytes())
        finally:
            tmp.close()

    def _manifest_sha256(self, task: str, version: int) -> str | None:
        """A version's manifest hash, None where it does not exist (the commit then refuses the parent)."""
        try:
            return self.show(task, version).manifest_sha256
        except RegistryError:
            return None

    def _commit(self, tmp: TempFolder, manifest: Manifest, manifest_bytes: bytes) -> int:
        """Finish a fully written temp folder: manifest, fsync, allocate, rename, insert — R5."""
        write_bytes_durably(tmp.path / MANIFEST_NAME, manifest_bytes)
        for path in tmp.path.iterdir():
            path.chmod(0o444)  # immutable by intent; a stray write fails loudly
        fsync_path(tmp.path)
        task = manifest.task
        with db.write_tx(self.engine) as conn:
            if manifest.parent is not None and not queries.exists(conn, task, manifest.parent):
                raise RegistryError(f"task {task!r}: parent version {manifest.parent} does not exist")
            version = (queries.last(conn, task) or 0) + 1
            task_dir = safe_join(self.artifacts_dir, task)
            if not task_dir.exists():
                task_dir.mkdir()
                fsync_path(self.artifacts_dir)
            target = safe_join(task_dir, version_dir_name(version))
            if os.path.lexists(target):
                # We hold the write lock and no row has this number: a writer crashed between its
                # rename and its commit. Move the leftover aside for gc; never reuse its files.
                aside = f"{ORPHAN_PREFIX}{task}-{target.name}-{uuid.uuid4().hex[:8]}"
                os.rename(target, self.tmp_dir / aside)
            os.rename(tmp.path, target)
            try:
                fsync_path(task_dir)
                conn.execute(
                    insert(db.versions).values(
                        task=task,
                        version=version,
                        kind=manifest.kind,
                        created=manifest.created,
                        parent=manifest.parent,
                        run_id=manifest.run_id,
                        bytes=manifest.total_bytes + len(manifest_bytes),
                        path=f"artifacts/{task}/{target.name}",
                        manifest=manifest_bytes.decode(),
                        manifest_sha256=_sha256(manifest_bytes),
                    )
                )
            except BaseException:
                os.rename(target, tmp.path)  # still under the lock: put it back for cleanup
                raise
        return version

    def set_alias(self, task: str, alias: str, ref: int | str) -> int:
        """Point ``alias`` (e.g. ``production``) at a version; returns the version number."""
        check_alias(alias)
        with db.write_tx(self.engine) as conn:
            version = queries.resolve(conn, task, ref)
            table = db.aliases
            key = (table.c.task == task) & (table.c.alias == alias)
            if conn.execute(select(table.c.version).where(key)).first() is None:
                conn.execute(insert(table).values(task=task, alias=alias, version=version, updated=utc_now()))
            else:
                conn.execute(table.update().where(key).values(version=version, updated=utc_now()))
        return version

    def remove_alias(self, task: str, alias: str) -> None:
        check_name(task)
        check_alias(alias)
        with db.write_tx(self.engine) as conn:
            key = (db.aliases.c.task == task) & (db.aliases.c.alias == alias)
            if conn.execute(db.aliases.delete().where(key)).rowcount == 0:
                raise RegistryError(f"task {task!r} has no alias {alias!r}")

    # -- reading ---------------------------------------------------------------------------------

    def resolve(self, task: str, ref: int | str = LATEST) -> int:
        """A version number, ``vN``, ``latest`` or an alias → the version number."""
        with db.read_tx(self.engine) as conn:
            return queries.resolve(conn, task, ref)

    def load(
        self, task: str, ref: int | str = LATEST, expect_backbone: BackboneIdentity | None = None
    ) -> Artifact:
        """Verify and load one version. Forbidden or unexpected files, hash or size mismatches and a
        backbone other than ``expect_backbone`` are refused before any tensor is deserialised."""
        info = self.show(task, ref)
        folder, manifest = self.check_version(info)
        where = f"{task} v{info.version}"
        if expect_backbone is not None:
            check_backbone(manifest, expect_backbone, where)
        for name, entry in manifest.files.items():
            verify_file(folder / name, entry.sha256, entry.bytes)
        tensors: dict[str, torch.Tensor] = {}
        json_files: dict[str, Any] = {}
        for name in manifest.files:
            if name.endswith(".safetensors"):
                from safetensors.torch import load_file

                check_safetensors_header(folder / name, manifest.files[name].bytes)
                tensors.update(load_file(str(folder / name)))
            else:
                json_files[name] = json.loads((folder / name).read_bytes())
        return Artifact(task, info.version, manifest, folder, tensors, json_files)

    def check_version(self, info: VersionInfo) -> tuple[Path, Manifest]:
        """Folder scan (no symlinks, no unlisted or forbidden files) and manifest hash vs the row."""
        folder = safe_join(self.artifacts_dir, info.task, version_dir_name(info.version))
        manifest = info.manifest
        scan_artifact_folder(folder, {MANIFEST_NAME, *manifest.files})
        on_disk = (folder / MANIFEST_NAME).read_bytes()
        if _sha256(on_disk) != info.manifest_sha256:
            raise IntegrityError(
                f"{folder / MANIFEST_NAME}: sha256 differs from the registry record, manifest refused"
            )
        return folder, manifest

    def show(self, task: str, ref: int | str = LATEST) -> VersionInfo:
        """The row, aliases and manifest of one version (no file access)."""
        with db.read_tx(self.engine) as conn:
            version = queries.resolve(conn, task, ref)
            return queries.infos(conn, task, version)[0]

    def aliases(self, task: str) -> dict[str, int]:
        check_name(task)
        with db.read_tx(self.engine) as conn:
            query = select(db.aliases).where(db.aliases.c.task == task).order_by(db.aliases.c.alias)
            rows = conn.execute(query)
            return {r.alias: r.version for r in rows}

    def lineage(self, task: str, ref: int | str = LATEST) -> builtins.list[int]:
        """The version and its ancestors, newest first (parents recorded at save time)."""
        chain: builtins.list[int] = []
        current: int | None = self.resolve(task, ref)
        while current is not None and current not in chain:
            chain.append(current)
            current = self.show(task, current).parent
        return chain

    def tasks(self) -> builtins.list[str]:
        with db.read_tx(self.engine) as conn:
            query = select(db.versions.c.task).distinct().order_by(db.versions.c.task)
            return [r[0] for r in conn.execute(query)]

    def list(self, task: str | None = None) -> builtins.list[VersionInfo]:
        """All versions (of one task, or of every task), oldest first."""
        if task is not None:
            check_name(task)
        with db.read_tx(self.engine) as conn:
            return queries.infos(conn, task, None)

    # -- maintenance (see maintenance.py) ---------------------------------------------------------

    def diff(self, task: str, a: int | str, b: int | str) -> builtins.list[maintenance.Difference]:
        return maintenance.diff(self.show(task, a).manifest, self.show(task, b).manifest)

    def verify(self, task: str | None = None) -> builtins.list[str]:
        return maintenance.verify(self, task)

    def gc(self) -> builtins.list[Path]:
        return maintenance.gc(self)

    def export(self, task: str, ref: int | str, out_file: Path | str) -> Path:
        from tasktune.registry.archive import export_archive

        return export_archive(self, task, ref, Path(out_file))

    def import_archive(self, file: Path | str) -> tuple[str, int]:
        from tasktune.registry.archive import import_archive

        return import_archive(self, Path(file))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
