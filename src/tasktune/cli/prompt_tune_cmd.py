"""``tasktune prompt-tune ...``: inspect trained soft prompts; sweep their length."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from tasktune.cli.console import console
from tasktune.errors import BackboneError, TaskTuneError

app = typer.Typer(
    help="Prompt tuning: inspect trained soft prompts, sweep their length.", no_args_is_help=True
)


@app.command("explain")
def explain(
    task: str = typer.Argument(..., help="Task name in the registry."),
    ref: str = typer.Option("latest", "--ref", help="Version number or alias."),
    backbone: str = typer.Option(
        "", "--backbone", help="Backbone (default: the one the prompt was trained on)."
    ),
    k: int = typer.Option(5, "--k", help="Nearest tokens per virtual token."),
    registry: Path = typer.Option(Path("tasktune-registry"), "--registry", envvar="TASKTUNE_REGISTRY"),
) -> None:
    """The vocabulary tokens nearest to each learned virtual token of a shallow soft prompt."""
    from tasktune.backbones.loading import load_backbone
    from tasktune.registry import Registry
    from tasktune.routes.prompt_tuning.explain import nearest_tokens

    with Registry(registry) as reg:
        info = reg.show(task, ref)
        if info.manifest.kind != "soft-prompt":
            raise TaskTuneError(
                f"{task} {ref} is a {info.manifest.kind} adaptation; explain reads shallow soft prompts"
            )
        name = backbone or info.manifest.backbone["name"]
        try:
            b = load_backbone(name)
        except BackboneError as err:
            if backbone:
                raise
            # A local folder is recorded by its name only: where it lives is the user's to say.
            raise BackboneError(
                f"{err}. {task} v{info.version} was trained on backbone {name!r}; if that is a local "
                "folder, pass it with --backbone PATH"
            ) from None
        artifact = reg.load(task, ref, expect_backbone=b.identity)
    prompt = artifact.tensors["prompt_embeddings"]
    rows = nearest_tokens(prompt, b.model.get_input_embeddings().weight.detach().cpu(), b.tokenizer, k)
    table = Table(
        title=f"{task} v{artifact.version}: nearest tokens of {len(rows)} virtual tokens",
        title_justify="left",
    )
    table.add_column("#", justify="right")
    table.add_column(f"nearest {k} (cosine)")
    for i, row in enumerate(rows):
        table.add_row(str(i), "  ".join(f"{tok!r} {sim:.2f}" for tok, sim in row))
    console.print(table)


@app.command("sweep")
def sweep(
    task_file: Path = typer.Argument(..., help="The task's YAML file."),
    lengths: str = typer.Option("1,5,20,50", "--lengths", help="Prompt lengths to train, comma-separated."),
    backbone: str = typer.Option("smollm2-135m-instruct", "--backbone", help="Backbone name or folder."),
    protocol: str = typer.Option("few", "--protocol", help="few or full."),
    seeds: str = typer.Option("13,21,42", "--seeds", help="Seeds per length, comma-separated."),
    depth: str = typer.Option("shallow", "--depth", help="shallow or deep."),
    init: str = typer.Option("labels", "--init", help="random, vocab, text or labels."),
    train_limit: int = typer.Option(0, "--train-limit", help="full protocol: a random subset of train."),
    device: str = typer.Option("", "--device", help="cpu, cuda, ... (default: the best available)."),
    out: Path = typer.Option(None, "--out", help="Also write the sweep as JSON here."),
    allow_hub: bool = typer.Option(False, "--allow-hub", help="Let hf: data and hub backbones download."),
) -> None:
    """Train soft prompts of several lengths; dev and test accuracy per length (choose on dev)."""
    import json

    from tasktune.backbones.loading import load_backbone
    from tasktune.routes.prompt_tuning.sweep import sweep_lengths, to_json
    from tasktune.task.data import load_splits
    from tasktune.task.spec import load_task

    try:
        length_list = [int(v) for v in lengths.split(",") if v.strip()]
        seed_list = [int(v) for v in seeds.split(",") if v.strip()]
    except ValueError as e:
        raise TaskTuneError(f"--lengths and --seeds take comma-separated integers: {e}") from e
    spec = load_task(task_file)
    splits = load_splits(spec, allow_hub=allow_hub)
    b = load_backbone(backbone, device=device or None, allow_hub=allow_hub)

    def show(cell) -> None:
        console.print(
            f"length {cell.length:4d} seed {cell.seed}: dev {cell.dev_accuracy} test "
            f"{cell.test_accuracy:.4f} ({cell.fit_seconds:.0f} s)"
        )

    rows, cells = sweep_lengths(
        spec,
        splits,
        b,
        lengths=length_list,
        seeds=seed_list,
        protocol=protocol,
        depth=depth,
        init=init,
        train_limit=train_limit or None,
        on_cell=show,
    )
    table = Table(title=f"{spec.name}: soft-prompt length sweep ({protocol}, {depth}, init {init})")
    for col in ("length", "trainable", "dev acc (mean)", "test acc (mean ± std)", "fit s"):
        table.add_column(col, justify="right")
    for r in rows:
        dev = f"{100 * r.dev_mean:.1f}" if r.dev_mean is not None else "–"
        test = f"{100 * r.test_mean:.1f} ± {100 * r.test_std:.1f}"
        table.add_row(str(r.length), f"{r.trainable_parameters:,}", dev, test, f"{r.fit_seconds_mean:.0f}")
    console.print(table)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(to_json(rows, cells), indent=1) + "\n", encoding="utf-8")
