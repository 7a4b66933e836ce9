"""``tasktune run`` (routes × backbones × seeds on a task) and ``tasktune demo`` (the bundled task)."""

from __future__ import annotations

from pathlib import Path

import typer

from tasktune.cli.console import console
from tasktune.cli.results_table import results_table
from tasktune.runner import RunOutcome, run_matrix
from tasktune.task.spec import load_task

DEMO_TASK = Path(__file__).resolve().parents[3] / "examples" / "demo-reviews" / "task.yaml"


def _split_csv(value: str | None) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else []


def _report(outcome: RunOutcome, title: str, out_dir: Path) -> None:
    if outcome.results:
        console.print(results_table(outcome.results, title))
    for f in outcome.failures:
        console.print(f"[red]cell {f.cell} failed:[/] {f.error}", highlight=False)
    console.print(
        f"{len(outcome.results)} cell(s) done ({outcome.reused} reused), {len(outcome.failures)} failed; "
        f"results in {out_dir}",
        highlight=False,
    )


def run(
    task_file: Path = typer.Argument(..., help="Path to task.yaml."),
    routes: str = typer.Option("majority", "--routes", help="Comma-separated route names."),
    backbones: str = typer.Option(
        "", "--backbones", help="Comma-separated backbones (for routes that need one)."
    ),
    protocol: str = typer.Option("full", "--protocol", help="zero | few | full"),
    seeds: str = typer.Option(
        "", "--seeds", help="Comma-separated seeds (default: 13,21,42,87,100 for few)."
    ),
    out: Path | None = typer.Option(None, "--out", help="Run folder (default runs/<task>)."),
    device: str | None = typer.Option(None, "--device", help="auto (default), cpu, cuda, cuda:N"),
    fresh: bool = typer.Option(False, "--fresh", help="Redo cells whose results already exist."),
    registry: Path | None = typer.Option(
        None, "--registry", envvar="TASKTUNE_REGISTRY", help="Keep every adaptation in this registry."
    ),
) -> None:
    """Run routes on a task under one protocol; print the comparison and keep every result as JSON."""
    spec = load_task(task_file)
    out_dir = out or Path("runs") / spec.name
    seed_list = [int(s) for s in _split_csv(seeds)]

    def on_cell(name, result, error):
        if result is not None:
            console.print(f"  [green]✓[/] {name}: accuracy {result.metrics['accuracy']:.1%}", highlight=False)

    with console.status(f"running {spec.name} ..."):
        outcome = run_matrix(
            spec,
            route_names=_split_csv(routes),
            backbone_names=_split_csv(backbones),
            protocol=protocol,
            seeds=seed_list or None,
            out_dir=out_dir,
            device=device,
            fresh=fresh,
            registry_root=registry,
            on_cell=on_cell,
        )
    _report(outcome, f"{spec.name}: test accuracy ({protocol} protocol)", out_dir)
    if outcome.failures:
        raise typer.Exit(1)


def demo(out: Path = typer.Option(Path("runs/demo"), "--out", help="Run folder.")) -> None:
    """The bundled demo end to end: check the task, prepare the embedded backbones, run every route."""
    from tasktune.cli import backbones_cmd, task_cmd

    console.rule("1. embedded backbones")
    backbones_cmd.prepare_cmd(names=None, force=False)
    backbones_cmd.list_()
    console.rule("2. task check")
    task_cmd.check(DEMO_TASK, k=16, backbone="smollm2-135m-instruct", allow_hub=False, json_out=None)
    console.rule("3. routes")
    # Zero-shot for now (no labelled example used); trained routes join as they land.
    run(
        DEMO_TASK,
        routes="majority,prompting",
        backbones="smollm2-135m-instruct,all-minilm-l6-v2",
        protocol="zero",
        seeds="",
        out=out,
        device=None,
        fresh=True,
        registry=Path("tasktune-registry"),
    )
