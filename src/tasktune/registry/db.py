"""Registry metadata through SQLAlchemy Core, so a Postgres URL can replace the default SQLite file.

SQLite is set up for several writing processes (RELIABILITY R10): WAL (readers never block the
writer), a 30 s busy timeout (a writer waits instead of failing with "database is locked"), and write
transactions opened with ``BEGIN IMMEDIATE`` — taking the write lock up front means a transaction
never has to upgrade a read lock, the case where SQLite gives up at once regardless of the timeout.
Write transactions are kept short: files are written and fsynced before the lock is taken.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    ForeignKeyConstraint,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
)

BUSY_TIMEOUT_S = 30
_WRITE = "tasktune_write"  # execution option marking a write transaction

metadata = MetaData()

versions = Table(
    "versions",
    metadata,
    Column("task", String(64), primary_key=True),
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("kind", String(16), nullable=False),
    Column("created", String(40), nullable=False),
    Column("parent", Integer, nullable=True),
    Column("run_id", String(200), nullable=True),
    Column("bytes", Integer, nullable=False),
    Column("path", String(200), nullable=False),  # relative to the registry root
    Column("manifest", Text, nullable=False),  # the manifest.json bytes, as written
    Column("manifest_sha256", String(64), nullable=False),
)

aliases = Table(
    "aliases",
    metadata,
    Column("task", String(64), primary_key=True),
    Column("alias", String(64), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("updated", String(40), nullable=False),
    ForeignKeyConstraint(["task", "version"], ["versions.task", "versions.version"]),
)


def _setup_sqlite(engine: Engine, synchronous: str) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself instead of pysqlite's implicit BEGIN.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_S * 1000}")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute(f"PRAGMA synchronous = {synchronous}")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get(_WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def redact(url: str) -> str:
    """The URL as it may be printed: any password replaced by ***."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not even parseable: print nothing of it but its scheme
        return url.split(":", 1)[0] + ":…"


def make_engine(url: str, tables: MetaData = metadata, *, synchronous: str = "FULL") -> Engine:
    """An engine on ``url`` with ``tables`` created if missing. ``synchronous`` (SQLite only): FULL
    makes a committed registry version survive power loss; NORMAL (with WAL) survives a crash of the
    process, enough for a log that is written on every request."""
    is_sqlite = url.startswith("sqlite")
    connect_args = {"timeout": BUSY_TIMEOUT_S} if is_sqlite else {}
    engine = create_engine(url, connect_args=connect_args)
    if is_sqlite:
        _setup_sqlite(engine, synchronous)
    # On SQLite BEGIN IMMEDIATE also serialises concurrent first opens racing on CREATE TABLE.
    with write_tx(engine, serialise=False) as conn:
        tables.create_all(conn)
    return engine


@contextmanager
def write_tx(engine: Engine, *, serialise: bool = True) -> Iterator[Connection]:
    """A short write transaction that commits on success. Writers are serialised — SQLite's
    ``BEGIN IMMEDIATE`` takes the database write lock; on PostgreSQL a table lock does the same —
    so "max(version) + 1" is allocated race-free inside it."""
    with engine.connect() as conn:
        conn = conn.execution_options(**{_WRITE: True})
        with conn.begin():
            if serialise and engine.dialect.name == "postgresql":
                conn.exec_driver_sql("LOCK TABLE versions IN SHARE ROW EXCLUSIVE MODE")
            yield conn


@contextmanager
def read_tx(engine: Engine) -> Iterator[Connection]:
    """A read transaction: one consistent snapshot for several queries."""
    with engine.connect() as conn, conn.begin():
        yield conn


def integrity_check(engine: Engine) -> list[str]:
    """SQLite's own consistency check; [] when fine (and on other databases)."""
    if engine.dialect.name != "sqlite":
        return []
    with engine.connect() as conn:
        rows = [r[0] for r in conn.exec_driver_sql("PRAGMA integrity_check").fetchall()]
    return [] if rows == ["ok"] else [f"database integrity_check: {r}" for r in rows]
