"""One-file export and import of a version: a gzip'd tar holding ``manifest.json`` and its files.

Import trusts nothing in the archive (RELIABILITY R9, R6, R7). Before any byte lands outside a
private temp folder every member is checked: a regular file (no symlinks, hard links, devices,
folders), a plain name (no ``/``, ``..``, absolute paths, backslashes, NUL, percent-encoding), only
``.json``/``.safetensors``, no duplicates, exactly the files the manifest lists, and each file's size
and sha256 as recorded. Members are streamed, never ``extract``-ed, so tar's own path handling is
never involved. Only a fully verified folder is committed, through the same path as ``save``.
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING

from tasktune.registry.artifact import check_contents
from tasktune.registry.errors import IntegrityError, RegistryError, UnsafeNameError
from tasktune.registry.files import TempFolder, check_safetensors_header, sha256_file, verify_file
from tasktune.registry.manifest import Manifest, parse_manifest
from tasktune.registry.names import MANIFEST_NAME, check_file_name

if TYPE_CHECKING:
    from tasktune.registry.store import Registry

MAX_MEMBERS = 256
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
_CHUNK = 1 << 22


def export_archive(registry: Registry, task: str, ref: int | str, out_file: Path) -> Path:
    """Verify the version, then write it as one ``.tar.gz`` (deterministic member order and
    metadata); the archive appears atomically at ``out_file`` (in it as ``<task>-v<N>.tar.gz`` when
    it is a folder)."""
    info = registry.show(task, ref)
    folder, manifest = registry.check_version(info)
    for name, entry in manifest.files.items():
        verify_file(folder / name, entry.sha256, entry.bytes)
    out_file = out_file.absolute()
    if out_file.is_dir():
        out_file = out_file / f"{info.task}-v{info.version}.tar.gz"
    if not out_file.parent.is_dir():
        raise RegistryError(f"cannot export to {out_file}: folder {out_file.parent} does not exist")
    tmp = out_file.with_name(f".{out_file.name}.{os.getpid()}.tmp")
    try:
        with tarfile.open(tmp, "w:gz", format=tarfile.PAX_FORMAT) as tar:
            for name in [MANIFEST_NAME, *sorted(manifest.files)]:
                member = tarfile.TarInfo(name)
                member.size = (folder / name).stat().st_size
                member.mode, member.mtime = 0o444, 0
                with (folder / name).open("rb") as fh:
                    tar.addfile(member, fh)
        os.replace(tmp, out_file)
    except OSError as err:  # no space, no permission, a folder in the way
        raise RegistryError(f"cannot export to {out_file}: {err.strerror or err}") from err
    finally:
        tmp.unlink(missing_ok=True)
    return out_file


def _check_member(member: tarfile.TarInfo, archive: Path) -> None:
    if not member.isreg():
        what = "symlink" if member.issym() else "hard link" if member.islnk() else "non-regular entry"
        raise UnsafeNameError(f"{archive}: member {member.name!r} is a {what}; only regular files allowed")
    try:
        check_file_name(member.name)
    except UnsafeNameError as err:
        raise UnsafeNameError(f"{archive}: refusing member {member.name!r}: {err}") from err


def import_archive(registry: Registry, archive: Path) -> tuple[str, int]:
    """Validate ``archive`` completely, then commit it as the next version of its task."""
    if not archive.is_file():
        raise RegistryError(f"{archive}: no such archive file")
    try:
        tar = tarfile.open(archive, "r:gz")  # noqa: SIM115 - closed by the `with tar` below
    except (tarfile.TarError, OSError) as err:
        raise RegistryError(f"{archive}: not a tasktune archive (.tar.gz): {err}") from err
    with tar:
        try:
            members = tar.getmembers()
        except (tarfile.TarError, OSError, EOFError) as err:
            raise IntegrityError(f"{archive}: corrupt archive: {err}") from err
        if len(members) > MAX_MEMBERS:
            raise RegistryError(f"{archive}: {len(members)} members, more than the {MAX_MEMBERS} allowed")
        for member in members:
            _check_member(member, archive)
        by_name = {m.name: m for m in members}
        if len(by_name) != len(members):
            raise IntegrityError(f"{archive}: duplicate member names")
        if MANIFEST_NAME not in by_name or by_name[MANIFEST_NAME].size > MAX_MANIFEST_BYTES:
            raise IntegrityError(f"{archive}: missing or oversized {MANIFEST_NAME}")
        manifest_bytes = _read_member(tar, by_name[MANIFEST_NAME])
        manifest = parse_manifest(manifest_bytes, f"{archive}:{MANIFEST_NAME}")
        expected, present = set(manifest.files), set(by_name) - {MANIFEST_NAME}
        if expected != present:
            raise IntegrityError(
                f"{archive}: members do not match the manifest (unlisted: {sorted(present - expected)}, "
                f"missing: {sorted(expected - present)})"
            )
        for name in expected:
            if by_name[name].size != manifest.files[name].bytes:
                declared, recorded = by_name[name].size, manifest.files[name].bytes
                raise IntegrityError(f"{archive}: {name} is {declared} bytes, manifest says {recorded}")
        tmp = TempFolder(registry.tmp_dir, f"import-{manifest.task}")
        try:
            for name in sorted(expected):
                _stream_member(tar, by_name[name], tmp.path / name)
                digest, size = sha256_file(tmp.path / name)
                if digest != manifest.files[name].sha256 or size != manifest.files[name].bytes:
                    raise IntegrityError(f"{archive}: {name}: sha256 differs from manifest, nothing imported")
                if name.endswith(".safetensors"):
                    check_safetensors_header(tmp.path / name, size)
            _check_contents(manifest, tmp.path, archive)
            if manifest.parent is not None:
                # Version numbers belong to the registry that made them: keep the lineage only where
                # the version of that number here is the very parent (its manifest hash), else an
                # unrelated local version would become the import's ancestor.
                here = registry._manifest_sha256(manifest.task, manifest.parent)
                if manifest.parent_sha256 is None or here != manifest.parent_sha256:
                    manifest = manifest.model_copy(update={"parent": None, "parent_sha256": None})
                    manifest_bytes = manifest.to_json_bytes()
            version = registry._commit(tmp, manifest, manifest_bytes)
        finally:
            tmp.close()
    return manifest.task, version


def _check_contents(manifest: Manifest, folder: Path, archive: Path) -> None:
    """The rules ``save`` enforces, on the verified files: JSON that parses, tensors as the kind needs."""
    import json

    from safetensors.torch import load_file

    tensors, json_files = {}, {}
    for name in manifest.files:
        if name.endswith(".safetensors"):
            tensors.update(load_file(str(folder / name)))
            continue
        try:
            json_files[name] = json.loads((folder / name).read_bytes())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise IntegrityError(f"{archive}: {name} is not valid JSON ({err}); nothing imported") from None
    check_contents(manifest.kind, tensors, json_files, manifest.backbone_identity, f"{archive}")


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    fh = tar.extractfile(member)
    if fh is None:  # pragma: no cover - regular files always have a stream
        raise IntegrityError(f"cannot read archive member {member.name!r}")
    return fh.read(member.size + 1)[: member.size]


def _stream_member(tar: tarfile.TarFile, member: tarfile.TarInfo, dest: Path) -> None:
    fh = tar.extractfile(member)
    if fh is None:  # pragma: no cover
        raise IntegrityError(f"cannot read archive member {member.name!r}")
    with fh as src, dest.open("xb") as out:
        while block := src.read(_CHUNK):
            out.write(block)
        out.flush()
        os.fsync(out.fileno())
