"""``tasktune run`` (routes × backbones × seeds on a task, compared, reported, recommended) and
``tasktune demo`` (the bundled task end to end)."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from tasktune.cli.console import console
from tasktune.errors import TaskTuneError
from tasktune.evaluation.comparison import METRIC_NAMES
from tasktune.runner import RunOutcome, run_matrix
from tasktune.task.spec import TaskSpec, load_task

DEMO_TASK = Path(__file__).resolve().parents[3] / "examples" / "demo-reviews" / "task.yaml"
DEFAULT_REGISTRY = Path("tasktune-registry")


def _split_csv(value: str | None) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else []


def parse_seeds(value: str | None) -> list[int] | None:
    seeds = []
    for item in _split_csv(value):
        try:
            seed = int(item)
        except ValueError:
            raise TaskTuneError(f"--seeds: {item!r} is not a whole number (expected e.g. 13,21,42)") from None
        if seed < 0:  # numpy's generators take none
            raise TaskTuneError(f"--seeds: {item!r} is negative (expected whole numbers >= 0, e.g. 13,21,42)")
        seeds.append(seed)
    return seeds or None


def _progress() -> Progress:
    # Cells take seconds to hours, so the estimate is "time so far / cells done", shown per cell.
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
        transient=True,
    )


def run_cells(
    spec: TaskSpec,
    *,
    routes: list[str],
    backbones: list[str],
    protocol: str,
    seeds: list[int] | None,
    out_dir: Path,
    device: str | None,
    fresh: bool,
    registry: Path | None,
    train_limit: int | None = None,
    allow_hub: bool = False,
    route_options: dict | None = None,
) -> RunOutcome:
    """One protocol's matrix with a progress bar and an estimate of the time left."""
    clock = time.perf_counter()
    with _progress() as bar:
        task = bar.add_task(f"{spec.name} ({protocol})", total=None, info="")

        def on_start(name: str, index: int, total: int) -> None:
            left = ""
            if index:
                per = (time.perf_counter() - clock) / index
                left = f" | ~{per * (total - index) / 60:.0f} min left"
            bar.update(task, total=total, completed=index, info=f"{name}{left}")

        def on_cell(name, result, error):
            if result is not None:
                acc = result.metrics["accuracy"]
                bar.console.print(f"  [green]✓[/] {escape(name)}: accuracy {acc:.1%}", highlight=False)
            else:
                bar.console.print(f"  [red]✗[/] {escape(name)}: {escape(str(error))}", highlight=False)
            bar.advance(task)

        return run_matrix(
            spec,
            route_names=routes,
            backbone_names=backbones,
            protocol=protocol,
            seeds=seeds,
            out_dir=out_dir,
            device=device,
            fresh=fresh,
            registry_root=registry,
            train_limit=train_limit,
            allow_hub=allow_hub,
            route_options=route_options,
            on_cell=on_cell,
            on_start=on_start,
        )


def finish(spec: TaskSpec, out_dir: Path, outcomes: list[RunOutcome], registry: Path | None) -> bool:
    """Compare every result in the run folder, print the table and the recommendation, write the
    report, alias the recommended adaptation ``candidate``. Returns whether any cell failed."""
    from tasktune.adaptations import candidate_result
    from tasktune.cli.report_cmd import print_comparison
    from tasktune.report.build import build_report
    from tasktune.report.load import load_run
    from tasktune.runner import is_main_process

    if not is_main_process():  # data-parallel launch: rank 0 alone reports
        return False
    failures = [f for o in outcomes for f in o.failures]
    results = [r for o in outcomes for r in o.results]
    for warning in dict.fromkeys(w for o in outcomes for w in o.warnings):  # once each, in order
        console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
    if not results:
        for f in failures:
            _print_failure(f)
        raise TaskTuneError(f"no cell of {spec.name!r} produced a result; nothing to compare")
    paths = build_report(out_dir, failures=failures)
    print_comparison(
        paths.comparison,
        paths.recommendation,
        title=f"{spec.name}: test {METRIC_NAMES[paths.comparison.metric]}",
    )
    for f in failures:
        _print_failure(f)
    choice = paths.recommendation.choice
    if registry is not None and choice is not None:
        cell = paths.comparison.cell(choice)
        # The recommendation covers the whole folder (earlier runs too), so look there for the version.
        chosen = candidate_result(load_run(out_dir).results, cell.route, cell.backbone, cell.protocol)
        if chosen is not None:
            from tasktune.registry import Registry, RegistryError

            version = int(chosen.info.route_config["registry_version"])
            # A reused cell was registered by an earlier run, maybe in another registry (or one since
            # deleted): alias only the very adaptation that seed registered, found by its run id.
            with Registry(registry) as reg:
                try:
                    here = reg.show(spec.name, version).manifest.run_id == chosen.info.run_id
                except RegistryError:
                    here = False
                if here:
                    reg.set_alias(spec.name, "candidate", version)
            if here:
                console.print(
                    f"registry: {spec.name} v{version} is now 'candidate' ({registry})", highlight=False
                )
            else:
                console.print(
                    f"[yellow]registry:[/] the recommended cell's adaptation (v{version}, registered by an "
                    f"earlier run) is not in {registry}; rerun that cell with --fresh to register it here",
                    highlight=False,
                )
    reused = sum(o.reused for o in outcomes)
    console.print(
        f"{len(results)} cell(s) done ({reused} reused), {len(failures)} failed; results in {out_dir}",
        highlight=False,
        markup=False,
    )
    console.print(f"report: [bold]{escape(str(paths.html))}[/]", highlight=False)
    return bool(failures)


def run(
    task_file: Path = typer.Argument(..., help="Path to task.yaml."),
    routes: str = typer.Option(
        "majority,prompting,prompt_tuning,lora", "--routes", help="Comma-separated route names."
    ),
    backbones: str = typer.Option(
        "smollm2-135m-instruct", "--backbones", help="Comma-separated backbones (for routes that need one)."
    ),
    protocol: str = typer.Option("full", "--protocol", help="zero | few | full"),
    seeds: str = typer.Option("", "--seeds", help="Comma-separated seeds (default 13,21,42,87,100 for few)."),
    train_limit: int | None = typer.Option(
        None, "--train-limit", help="full protocol on a seeded random subset of this many training examples."
    ),
    out: Path | None = typer.Option(None, "--out", help="Run folder (default runs/<task>)."),
    device: str | None = typer.Option(None, "--device", help="auto (default), cpu, cuda, cuda:N"),
    fresh: bool = typer.Option(False, "--fresh", help="Redo cells whose results already exist."),
    registry: Path = typer.Option(
        DEFAULT_REGISTRY, "--registry", envvar="TASKTUNE_REGISTRY", help="Keep every adaptation here."
    ),
    no_registry: bool = typer.Option(False, "--no-registry", help="Keep results only, no adaptations."),
    allow_hub: bool = typer.Option(
        False, "--allow-hub", help="Let the task's hf: data sources and hub backbone ids download."
    ),
    set_: list[str] = typer.Option(
        [],
        "--set",
        help="ROUTE.OPTION=VALUE over the route's defaults, e.g. lora.lora.r=16, prompt_tuning.train.lr=0.01 "
        "(repeatable; a run with settings is its own cell, compared with the defaults').",
    ),
    options_file: Path | None = typer.Option(
        None, "--options", help="YAML of {route: {option: value}}; --set wins over it."
    ),
) -> None:
    """Run routes on a task, compare them with honest statistics, recommend one, write the report."""
    from tasktune.routes.overrides import load_options_file, merge, parse_set

    layers = [load_options_file(options_file)] if options_file else []
    route_options = merge(*layers, parse_set(set_))
    spec = load_task(task_file)
    out_dir = out or Path("runs") / spec.name
    reg = None if no_registry else registry
    if device is not None:  # a typo or an absent GPU: one message now, not a failure in every cell
        from tasktune.backbones.device import resolve_device

        resolve_device(device)
    outcome = run_cells(
        spec,
        routes=_split_csv(routes),
        backbones=_split_csv(backbones),
        protocol=protocol,
        seeds=parse_seeds(seeds),
        out_dir=out_dir,
        device=device,
        fresh=fresh,
        registry=reg,
        train_limit=train_limit,
        allow_hub=allow_hub,
        route_options=route_options,
    )
    if finish(spec, out_dir, [outcome], reg):
        raise typer.Exit(1)


# The demo on a 2-core CPU in minutes: zero-shot prompting on both backbones, then prompt tuning and
# fine-tuning (full with a head, LoRA) trained on the 270 labelled reviews (30 held out as dev) on the
# encoder, where a CPU trains each in under a minute. Training SmolLM2 on CPU takes ~10 min per route
# on this data, so it is left to `tasktune run` (or a GPU).
DEMO_PLAN = (
    ("zero", "majority,prompting", "smollm2-135m-instruct,all-minilm-l6-v2"),
    ("full", "prompt_tuning,finetune_head,lora", "all-minilm-l6-v2"),
)


def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", help="Run folder."),
    task_file: Path = typer.Option(DEMO_TASK, "--task", help="The demo task (the checkout's by default)."),
) -> None:
    """The bundled demo end to end: check the task, prepare the embedded backbones, run all three routes,
    compare, recommend, write the report."""
    from tasktune.cli import backbones_cmd, task_cmd

    if not task_file.is_file():
        # The demo data lives in the source checkout (examples/), not in an installed package.
        raise TaskTuneError(
            f"demo task {task_file} not found: run from a clone of the repository (make demo), "
            "or give a task with --task"
        )

    console.rule("1. embedded backbones")
    backbones_cmd.prepare_cmd(names=None, force=False)
    backbones_cmd.list_()
    console.rule("2. task check")
    task_cmd.check(task_file, k=16, backbone="smollm2-135m-instruct", allow_hub=False, json_out=None)
    console.rule("3. routes: prompting, prompt tuning, fine-tuning")
    spec = load_task(task_file)
    outcomes = []
    for protocol, routes, backbones in DEMO_PLAN:
        outcomes.append(
            run_cells(
                spec,
                routes=_split_csv(routes),
                backbones=_split_csv(backbones),
                protocol=protocol,
                seeds=None,
                out_dir=out,
                device=None,
                fresh=True,
                registry=DEFAULT_REGISTRY,
            )
        )
    console.rule("4. comparison, recommendation, report")
    if finish(spec, out, outcomes, DEFAULT_REGISTRY):
        raise typer.Exit(1)


def _print_failure(f) -> None:
    console.print(f"[red]cell {escape(str(f.cell))} failed:[/] {escape(str(f.error))}", highlight=False)
