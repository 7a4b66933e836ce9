"""``tasktune backbones ...``: the embedded backbones, their preparation and identity."""

from __future__ import annotations

import time

import typer
from rich.markup import escape
from rich.table import Table

from tasktune.backbones.catalog import EMBEDDED
from tasktune.backbones.prepare import cached_folder, prepare
from tasktune.cli.console import console
from tasktune.errors import BackboneError

app = typer.Typer(help="List, inspect and prepare backbones.", no_args_is_help=True)


@app.command("list")
def list_() -> None:
    """The embedded backbones and whether each is ready to load offline."""
    table = Table(title="embedded backbones", title_justify="left")
    for col in ("name", "kind", "ready", "description"):
        table.add_column(col, overflow="fold")
    for b in EMBEDDED.values():
        try:
            ready = "yes" if cached_folder(b) is not None else "needs `tasktune backbones prepare`"
        except BackboneError as err:
            ready = f"[red]{err}[/]"
        table.add_row(b.name, b.kind, ready, b.description)
    console.print(table)


@app.command("prepare")
def prepare_cmd(
    names: list[str] = typer.Argument(None, help="Backbones to prepare (default: all embedded)."),
    force: bool = typer.Option(False, "--force", help="Convert again even if cached."),
) -> None:
    """Convert embedded backbones once into cached safetensors folders (later loads take ~1 s)."""
    for name in names or list(EMBEDDED):
        if name not in EMBEDDED:
            raise BackboneError(f"unknown embedded backbone {name!r}; known: {', '.join(EMBEDDED)}")
        start = time.perf_counter()
        with console.status(f"preparing {name} ..."):
            folder = prepare(EMBEDDED[name], force=force)
        console.print(
            f"[green]{name}[/] ready at {escape(str(folder))} ({time.perf_counter() - start:.1f} s)",
            highlight=False,
        )


@app.command("info")
def info(
    name: str = typer.Argument(..., help="Embedded name, local folder or (with --allow-hub) hub id."),
    device: str | None = typer.Option(None, "--device", help="auto (default), cpu, cuda, cuda:N"),
    allow_hub: bool = typer.Option(False, "--allow-hub"),
) -> None:
    """Load a backbone and print its identity (hashes adaptations are bound to), device and load time."""
    from tasktune.backbones.loading import load_backbone

    b = load_backbone(name, device=device, allow_hub=allow_hub)
    table = Table(title=f"backbone {b.name}", title_justify="left", show_header=False)
    table.add_column("field")
    table.add_column("value", overflow="fold")
    for key, value in b.identity.to_dict().items():
        table.add_row(key, f"{value:,}" if isinstance(value, int) else str(value))
    table.add_row("folder", str(b.path))
    table.add_row("device", f"{b.device.device} ({b.device.reason})")
    table.add_row("load time", f"{b.load_seconds:.2f} s")
    console.print(table)
