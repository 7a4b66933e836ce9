"""``tasktune task ...``: inspect a task file and its data."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from tasktune.cli.console import console
from tasktune.errors import TaskTuneError
from tasktune.task.check import CheckReport, check_task
from tasktune.task.protocols import DEFAULT_K
from tasktune.task.spec import load_task

app = typer.Typer(help="Inspect and validate a task file and its data.", no_args_is_help=True)


def render_check(report: CheckReport) -> None:
    table = Table(title=f"task {report.task}  (hash {report.task_hash[:12]})", title_justify="left")
    table.add_column("split")
    table.add_column("examples", justify="right")
    labels = list(report.splits[0].label_counts) if report.splits else []
    for name in labels:
        table.add_column(name, justify="right")
    table.add_column("source", overflow="fold")
    for s in report.splits:
        cells = [f"{n:,} ({n / s.size:.0%})" for n in s.label_counts.values()]
        table.add_row(s.name, f"{s.size:,}", *cells, s.source)
    console.print(table)

    lengths = Table(
        title=f"lengths ({report.splits[0].lengths.unit})" if report.splits else "lengths",
        title_justify="left",
    )
    for col in ("split", "min", "mean", "median", "p95", "max"):
        lengths.add_column(col, justify="right" if col != "split" else "left")
    for s in report.splits:
        ls = s.lengths
        lengths.add_row(
            s.name, str(ls.min), f"{ls.mean:.1f}", f"{ls.median:.0f}", f"{ls.p95:.0f}", str(ls.max)
        )
    console.print(lengths)

    for o in report.overlaps:
        line = f"overlap {o.train_split} → {o.eval_split}: {o.count} identical text(s)"
        console.print(("[yellow]" if o.count else "[green]") + line + "[/]", highlight=False)
        for ex in o.examples[:3]:
            console.print(f"    e.g. {ex[:100]!r}", highlight=False, markup=False)
    for w in report.warnings:
        console.print(f"[yellow]warning:[/] {escape(w)}", highlight=False)
    if report.few_shot_k:
        console.print(f"[green]few-shot protocol possible with K={report.few_shot_k}[/]")
    console.print("[bold green]task check passed[/]")


@app.command("check")
def check(
    task_file: Path = typer.Argument(..., help="Path to task.yaml."),
    k: int = typer.Option(
        DEFAULT_K, "--k", help="K per class the few-shot protocol needs (0: do not check)."
    ),
    backbone: str | None = typer.Option(
        None, "--backbone", help="Count lengths in this backbone's tokens instead of words."
    ),
    allow_hub: bool = typer.Option(False, "--allow-hub", help="Allow hub datasets/tokenizers (network)."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the report as JSON here."),
) -> None:
    """Validate every row of every split and print counts, lengths, imbalance and leakage."""
    spec = load_task(task_file)
    kwargs = {}
    if backbone:
        from tasktune.backbones.loading import load_tokenizer

        tok = load_tokenizer(backbone, allow_hub=allow_hub)
        kwargs = {
            "lengths": lambda texts: [
                len(ids) for ids in tok(list(texts), add_special_tokens=True)["input_ids"]
            ],
            "length_unit": f"{backbone} tokens",
        }
    if k < 0:
        raise TaskTuneError(f"--k {k}: expected K >= 1 per class, or 0 not to check the few-shot protocol")
    report = check_task(spec, k=k or None, allow_hub=allow_hub, **kwargs)
    render_check(report)
    if json_out:
        json_out.write_text(json.dumps(report.to_dict(), indent=1))
