"""Read queries shared by the store and its maintenance: resolve a reference, list rows.

All functions take an open connection, so a caller can run several of them in one snapshot or
inside its own write transaction.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import Connection, func, select

from tasktune.registry import db
from tasktune.registry.artifact import VersionInfo
from tasktune.registry.errors import IntegrityError, RegistryError
from tasktune.registry.manifest import parse_manifest
from tasktune.registry.names import LATEST, check_name, parse_ref


def last(conn: Connection, task: str) -> int | None:
    query = select(func.max(db.versions.c.version)).where(db.versions.c.task == task)
    return conn.execute(query).scalar()


def exists(conn: Connection, task: str, version: int) -> bool:
    key = (db.versions.c.task == task) & (db.versions.c.version == version)
    return conn.execute(select(db.versions.c.version).where(key)).first() is not None


def resolve(conn: Connection, task: str, ref: int | str) -> int:
    """``3``, ``"3"``, ``"v3"``, ``"latest"`` or an alias → a version number that exists."""
    check_name(task)
    parsed = parse_ref(ref)
    if parsed == LATEST:
        version = last(conn, task)
        if version is None:
            raise RegistryError(f"task {task!r} has no versions")
        return version
    if isinstance(parsed, int):
        if not exists(conn, task, parsed):
            rows = conn.execute(select(db.versions.c.version).where(db.versions.c.task == task))
            known = sorted(r[0] for r in rows)
            raise RegistryError(f"task {task!r} has no version {parsed} (versions: {known or 'none'})")
        return parsed
    key = (db.aliases.c.task == task) & (db.aliases.c.alias == parsed)
    row = conn.execute(select(db.aliases.c.version).where(key)).first()
    if row is None:
        names = [r[0] for r in conn.execute(select(db.aliases.c.alias).where(db.aliases.c.task == task))]
        raise RegistryError(f"task {task!r} has no alias {parsed!r} (aliases: {names or 'none'})")
    return row[0]


def infos(conn: Connection, task: str | None, version: int | None) -> list[VersionInfo]:
    """Rows (optionally of one task / one version) with their aliases and parsed manifests."""
    query = select(db.versions).order_by(db.versions.c.task, db.versions.c.version)
    if task is not None:
        query = query.where(db.versions.c.task == task)
    if version is not None:
        query = query.where(db.versions.c.version == version)
    names: dict[tuple[str, int], list[str]] = {}
    for r in conn.execute(select(db.aliases).order_by(db.aliases.c.alias)):
        names.setdefault((r.task, r.version), []).append(r.alias)
    out = []
    for r in conn.execute(query):
        where = f"registry record {r.task} v{r.version}"
        recorded = r.manifest.encode()
        # The row is the root of trust for the files; a hand-edited row is refused too.
        if hashlib.sha256(recorded).hexdigest() != r.manifest_sha256:
            raise IntegrityError(f"{where}: manifest text does not match its recorded sha256")
        out.append(
            VersionInfo(
                task=r.task,
                version=r.version,
                kind=r.kind,
                created=r.created,
                parent=r.parent,
                run_id=r.run_id,
                bytes=r.bytes,
                aliases=tuple(names.get((r.task, r.version), ())),
                manifest=parse_manifest(recorded, where),
                manifest_sha256=r.manifest_sha256,
            )
        )
    return out
