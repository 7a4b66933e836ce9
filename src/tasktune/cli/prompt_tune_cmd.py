"""``tasktune prompt-tune ...``: inspect trained soft prompts."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from tasktune.cli.console import console
from tasktune.errors import TaskTuneError

app = typer.Typer(help="Prompt tuning: inspect trained soft prompts.", no_args_is_help=True)


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
        b = load_backbone(backbone or info.manifest.backbone["name"])
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
