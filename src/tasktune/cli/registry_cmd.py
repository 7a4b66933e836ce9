"""``tasktune registry ...``: list, inspect, compare, alias, export/import, verify and tidy the
adaptation registry. Thin: each command opens the registry, calls one library method, prints."""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.table import Table

from tasktune.cli.console import console
from tasktune.registry import Registry, RegistryError, VersionInfo
from tasktune.registry.store import DEFAULT_ROOT, URL_ENV

app = typer.Typer(
    help="Versioned adaptations: list, show sizes and lineage, diff, alias, export/import, verify, gc.",
    no_args_is_help=True,
)

REGISTRY_OPTION = typer.Option(
    DEFAULT_ROOT, "--registry", envvar="TASKTUNE_REGISTRY", help="Registry folder.", show_default=True
)


def _open(path: Path, create: bool = False) -> Registry:
    # Read commands must not conjure an empty registry out of a typo. With $TASKTUNE_REGISTRY_URL the
    # database is elsewhere (e.g. a shared PostgreSQL) and the folder holds only the artifact files.
    exists = (path / "registry.db").is_file() or (
        bool(os.environ.get(URL_ENV)) and (path / "artifacts").is_dir()
    )
    if not create and not exists:
        raise RegistryError(f"no registry at {path} (expected {path / 'registry.db'}; set --registry)")
    return Registry(path)


def _known(reg: Registry, task: str | None) -> None:
    """A task named on the command line must have versions: a typo must not read as 'ok, 0 versions'."""
    if task is not None and not reg.list(task):
        tasks = sorted({i.task for i in reg.list()})
        raise RegistryError(f"no task {task!r} in {reg.root} (tasks: {', '.join(tasks) or 'none yet'})")


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{n:,} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def backbone_bytes(info: VersionInfo) -> int | None:
    """The backbone's size as fp32 weights: what a full copy of the model costs to store."""
    backbone = info.manifest.backbone_identity
    return None if backbone is None else backbone.num_parameters * 4


def size_ratio(info: VersionInfo) -> str:
    full = backbone_bytes(info)
    return "—" if not full else f"{info.bytes / full:.3%}"


def _metrics_summary(info: VersionInfo, limit: int = 3) -> str:
    items = [(k, v) for k, v in info.manifest.metrics.items() if isinstance(v, int | float)]
    return ", ".join(f"{k}={v:.4g}" for k, v in items[:limit])


@app.command("list")
def list_versions(task: str | None = typer.Argument(None), registry: Path = REGISTRY_OPTION) -> None:
    """Every version per task: kind, route, bytes, aliases."""
    with _open(registry) as reg:
        _known(reg, task)
        infos = reg.list(task)
    table = Table(title=f"registry {registry}", title_justify="left")
    for col in ("task", "version", "kind", "route", "bytes", "created", "parent", "aliases"):
        table.add_column(col, justify="right" if col in ("version", "bytes", "parent") else "left")
    for i in infos:
        table.add_row(
            i.task, f"v{i.version}", i.kind, i.manifest.route, human_bytes(i.bytes), i.created,
            f"v{i.parent}" if i.parent else "", ", ".join(i.aliases),
        )  # fmt: skip
    console.print(table if infos else "no versions yet")


@app.command()
def show(
    task: str | None = typer.Argument(None, help="Task name (all tasks if omitted)."),
    ref: str | None = typer.Argument(None, help="Version, vN, 'latest' or alias; omit for a size overview."),
    registry: Path = REGISTRY_OPTION,
) -> None:
    """Sizes side by side (artifact bytes vs the backbone's fp32 bytes), or one version in detail."""
    with _open(registry) as reg:
        if ref is None:
            _show_sizes(reg.list(task))
        else:
            if task is None:
                raise RegistryError("give a task name before the version reference")
            info = reg.show(task, ref)
            _show_detail(info, reg.lineage(task, info.version))


def _show_sizes(infos: list[VersionInfo]) -> None:
    table = Table(
        title="artifact sizes (storage is per adaptation; the backbone is shared)", title_justify="left"
    )
    for col in (
        "task",
        "version",
        "kind",
        "route",
        "artifact",
        "bytes",
        "backbone",
        "backbone fp32",
        "ratio",
    ):
        table.add_column(col, justify="left" if col in ("task", "kind", "route", "backbone") else "right")
    table.add_column("metrics")
    for i in infos:
        full = backbone_bytes(i)
        backbone = i.manifest.backbone_identity
        table.add_row(
            i.task, f"v{i.version}", i.kind, i.manifest.route, human_bytes(i.bytes), f"{i.bytes:,}",
            backbone.name if backbone else "—", human_bytes(full) if full else "—", size_ratio(i),
            _metrics_summary(i),
        )  # fmt: skip
    console.print(table if infos else "no versions yet")


def _show_detail(info: VersionInfo, lineage: list[int]) -> None:
    m = info.manifest
    backbone = m.backbone_identity
    console.print(f"[bold]{info.task} v{info.version}[/]  {m.kind} via {m.route}  created {m.created}")
    console.print(
        f"aliases: {', '.join(info.aliases) or '—'}    lineage: {' ← '.join(f'v{v}' for v in lineage)}"
    )
    if backbone is not None:
        console.print(
            f"backbone: {backbone.name} ({backbone.architecture}, {backbone.num_parameters:,} params, "
            f"hidden {backbone.hidden_size}, weights {backbone.weights_hash[:12]})"
        )
    full = backbone_bytes(info)
    size = f"size: {human_bytes(info.bytes)} ({info.bytes:,} bytes)"
    if full:
        size += f" vs backbone fp32 {human_bytes(full)} ({full:,} bytes) → {size_ratio(info)}"
    console.print(size)
    files = Table(title="files", title_justify="left")
    for col in ("file", "bytes", "sha256"):
        files.add_column(col, justify="right" if col == "bytes" else "left")
    for name, entry in sorted(m.files.items()):
        files.add_row(name, f"{entry.bytes:,}", entry.sha256[:16] + "…")
    console.print(files)
    if m.metrics:
        metrics = Table(title="metrics", title_justify="left")
        metrics.add_column("metric")
        metrics.add_column("value", justify="right")
        for key, value in m.metrics.items():
            metrics.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
        console.print(metrics)
    console.print(
        f"task hash {m.task_hash or '—'}  data hash {m.data_hash or '—'}  seed {m.seed}  "
        f"run {m.run_id or '—'}  git {m.git_revision or '—'}",
        highlight=False,
    )


@app.command()
def diff(task: str, a: str, b: str, registry: Path = REGISTRY_OPTION) -> None:
    """Manifest differences between two versions (config, metrics, backbone, files)."""
    with _open(registry) as reg:
        va, vb = reg.resolve(task, a), reg.resolve(task, b)
        differences = reg.diff(task, va, vb)
    table = Table(title=f"{task}: v{va} vs v{vb}", title_justify="left")
    for col in ("field", f"v{va}", f"v{vb}"):
        table.add_column(col, overflow="fold")
    for d in differences:
        table.add_row(d.field, "—" if d.a is None else str(d.a), "—" if d.b is None else str(d.b))
    console.print(table if differences else f"v{va} and v{vb} have identical manifests")


@app.command()
def alias(
    task: str,
    name: str | None = typer.Argument(None, help="Alias, e.g. production."),
    ref: str | None = typer.Argument(None, help="Version to point the alias at."),
    delete: bool = typer.Option(False, "--delete", help="Remove the alias."),
    registry: Path = REGISTRY_OPTION,
) -> None:
    """Set (TASK NAME REF), delete (TASK NAME --delete) or list (TASK) aliases."""
    with _open(registry) as reg:
        _known(reg, task)
        if name is None:
            for alias_name, version in reg.aliases(task).items():
                console.print(f"{alias_name} → v{version}")
        elif delete:
            reg.remove_alias(task, name)
            console.print(f"removed alias {name!r} of {task}")
        elif ref is None:
            raise RegistryError(f"give the version for alias {name!r} (e.g. `alias {task} {name} 3`)")
        else:
            console.print(f"{task}: {name} → v{reg.set_alias(task, name, ref)}")


@app.command("export")
def export_cmd(task: str, ref: str, out: Path, registry: Path = REGISTRY_OPTION) -> None:
    """Write one version (manifest + files, verified) to a single .tar.gz file."""
    with _open(registry) as reg:
        path = reg.export(task, ref, out)
    console.print(f"exported {task} {ref} → {path} ({human_bytes(path.stat().st_size)})", markup=False)


@app.command("import")
def import_cmd(archive: Path, registry: Path = REGISTRY_OPTION) -> None:
    """Validate an exported archive completely, then add it as the task's next version."""
    with _open(registry, create=True) as reg:
        task, version = reg.import_archive(archive)
    console.print(f"imported {archive} as {task} v{version}", markup=False)


@app.command()
def verify(task: str | None = typer.Argument(None), registry: Path = REGISTRY_OPTION) -> None:
    """Re-hash every file and check the layout; fails listing each problem."""
    with _open(registry) as reg:
        _known(reg, task)
        problems = reg.verify(task)
        count = len(reg.list(task))
    if problems:
        raise RegistryError(
            f"{len(problems)} problem(s) in {registry}:\n" + "\n".join(f"  - {p}" for p in problems)
        )
    console.print(f"ok: {count} version(s) verified in {registry}", markup=False)


@app.command()
def gc(registry: Path = REGISTRY_OPTION) -> None:
    """Remove leftovers of interrupted writes (never a committed version)."""
    with _open(registry) as reg:
        removed = reg.gc()
    for path in removed:
        console.print(f"removed {path}", markup=False)
    console.print(f"gc: {len(removed)} leftover(s) removed")
