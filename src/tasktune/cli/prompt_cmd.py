"""``tasktune prompt ...``: evaluate, search, A/B-test and export prompts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer
from rich.markup import escape
from rich.table import Table

from tasktune.cli.console import console
from tasktune.errors import TaskTuneError
from tasktune.task.data import load_split, load_splits
from tasktune.task.spec import load_task

app = typer.Typer(
    help="Prompt engineering: evaluate, search, A/B-test and export prompts.", no_args_is_help=True
)
BACKBONE = typer.Option("smollm2-135m-instruct", "--backbone", help="A causal LM: embedded name or folder.")
REGISTRY = typer.Option(
    Path("tasktune-registry"), "--registry", envvar="TASKTUNE_REGISTRY", help="Registry root."
)
ALLOW_HUB = typer.Option(False, "--allow-hub", help="Let hf: data sources and hub backbone ids download.")
SPLIT = typer.Option(
    None, "--split", help="Split to score on (default: the task's dev split, else test — with a warning)."
)


def _causal(name: str, device: str | None = None, allow_hub: bool = False):
    from tasktune.backbones.loading import load_backbone

    backbone = load_backbone(name, device=device, allow_hub=allow_hub)
    if backbone.kind != "causal":
        raise TaskTuneError(f"prompt A/B and evaluation need a causal LM; {name!r} is an {backbone.kind}")
    return backbone


def _scoring_split(spec, split: str | None) -> str:
    """Choosing between prompts is selection: it belongs on dev. Test is used only when asked for or when
    the task has no dev split, and then the user is told what that means for the figure."""
    if split is None:
        split = "dev" if "dev" in spec.data else "test"
    if split not in spec.data:
        raise TaskTuneError(f"task {spec.name!r} has no {split!r} split; it has {', '.join(spec.data)}")
    if split.startswith("test"):
        console.print(
            f"[yellow]note:[/] scoring on {split!r}: a prompt chosen here has been selected on test, so "
            "its test figure is optimistic; add a dev split to the task to choose on it",
            highlight=False,
        )
    return split


@app.command("ab")
def ab(
    task_file: Path = typer.Argument(..., help="task.yaml"),
    prompt_a: Path = typer.Argument(..., help="Prompt A (YAML of PromptConfig fields)."),
    prompt_b: Path = typer.Argument(..., help="Prompt B."),
    backbone: str = BACKBONE,
    split: str | None = SPLIT,
    limit: int = typer.Option(0, "--limit", help="Only the first N examples (0: all)."),
    device: str | None = typer.Option(None, "--device"),
    allow_hub: bool = ALLOW_HUB,
) -> None:
    """Paired evaluation of two prompts on the same examples: accuracy ± CI, McNemar's exact test, verdict."""
    from tasktune.routes.prompting.config import load_prompt
    from tasktune.routes.prompting.service import ab_test

    spec = load_task(task_file)
    config_a, config_b = load_prompt(prompt_a), load_prompt(prompt_b)
    split = _scoring_split(spec, split)
    examples = load_split(spec, split, allow_hub=allow_hub).examples
    examples = examples[:limit] if limit else examples
    train = load_split(spec, "train", allow_hub=allow_hub).examples if "train" in spec.data else ()
    b = _causal(backbone, device, allow_hub)
    with console.status(f"scoring {len(examples)} examples with both prompts ..."):
        outcome = ab_test(
            b,
            spec,
            config_a,
            config_b,
            examples,
            train=train,
            unlabelled=train,
            names=(prompt_a.stem, prompt_b.stem),
        )
    c = outcome.comparison
    table = Table(title=f"A/B on {spec.name}/{split} ({c.n} paired examples, {b.name})", title_justify="left")
    for col in ("prompt", "accuracy %", "95% CI"):
        table.add_column(col, justify="left" if col == "prompt" else "right")
    for name, acc, (lo, hi) in (
        (c.name_a, c.accuracy_a, c.accuracy_a_ci),
        (c.name_b, c.accuracy_b, c.accuracy_b_ci),
    ):
        table.add_row(name, f"{acc:.1%}", f"{lo:.1%} – {hi:.1%}")
    console.print(table)
    m = c.mcnemar
    console.print(
        f"McNemar exact test: {m.a_only} right only with {c.name_a}, {m.b_only} right only with {c.name_b}; "
        f"p = {m.p_value:.4g}",
        highlight=False,
    )
    console.print(f"[bold]{escape(c.verdict)}[/]", highlight=False)


@app.command("eval")
def eval_(
    task_file: Path = typer.Argument(..., help="task.yaml"),
    prompt: Path = typer.Argument(..., help="Prompt YAML."),
    backbone: str = BACKBONE,
    split: str | None = SPLIT,
    device: str | None = typer.Option(None, "--device"),
    allow_hub: bool = ALLOW_HUB,
) -> None:
    """Accuracy of one prompt on a split (calibration estimated from unlabelled training texts)."""
    from tasktune.evaluation.metrics import compute_metrics
    from tasktune.routes.prompting.config import load_prompt
    from tasktune.routes.prompting.service import prompt_probabilities

    spec = load_task(task_file)
    config = load_prompt(prompt)
    split = _scoring_split(spec, split)
    splits = load_splits(spec, allow_hub=allow_hub)
    examples = splits[split].examples
    train = splits["train"].examples if "train" in splits else ()
    b = _causal(backbone, device, allow_hub)
    with console.status(f"scoring {len(examples)} examples ..."):
        probs = prompt_probabilities(b, spec, config, examples, train=train, unlabelled=train)
    m = compute_metrics(np.array([e.label for e in examples]), probs)
    lo, hi = m.accuracy_ci95
    console.print(
        f"{prompt.stem}: accuracy {m.accuracy:.1%} (95% CI {lo:.1%}–{hi:.1%}), macro-F1 {m.macro_f1:.1%}, "
        f"ECE {m.ece:.3f} on {m.n} examples",
        highlight=False,
    )


@app.command("search")
def search_cmd(
    task_file: Path = typer.Argument(..., help="task.yaml"),
    protocol: str = typer.Option("few", "--protocol", help="zero | few | full"),
    seed: int = typer.Option(13, "--seed"),
    backbone: str = BACKBONE,
    registry: Path = REGISTRY,
    device: str | None = typer.Option(None, "--device"),
    allow_hub: bool = ALLOW_HUB,
) -> None:
    """Search prompts on dev (never test), print the best trials and store the winner in the registry."""
    import json

    from tasktune.backbones.loading import load_backbone
    from tasktune.registry import Registry
    from tasktune.routes import get_route
    from tasktune.routes.base import FitContext
    from tasktune.runner import protocol_splits

    spec = load_task(task_file)
    splits = load_splits(spec, allow_hub=allow_hub)
    ps = protocol_splits(spec, splits, protocol, seed)
    b = load_backbone(backbone, device=device, allow_hub=allow_hub)
    ctx = FitContext(
        spec, ps.train, ps.dev, ps.protocol, seed, b, tuple(e.text for e in splits.get("train", ()))
    )
    with console.status("searching prompts on dev ..."):
        fitted = get_route("prompting").fit(ctx)
    top = fitted.config.get("search_top") or []
    if top:
        table = Table(title="best prompts on dev", title_justify="left")
        for col in ("name", "chat", "demos", "calibration", "dev accuracy"):
            table.add_column(col)
        for row in top[:8]:
            table.add_row(
                row["name"],
                str(row["chat"]),
                str(row["demos"]),
                row["calibration"],
                f"{row['dev_accuracy']:.1%}",
            )
        console.print(table)
    with Registry(registry) as reg:
        version = reg.save(
            spec.name,
            "prompt",
            backbone=b.identity,
            route="prompting",
            json_files=fitted.artifact["json_files"],
            route_config={"protocol": protocol, "seed": seed},
            task_hash=spec.spec_hash(),
            seed=seed,
            data_hash=splits["train"].content_hash() if "train" in splits else None,
        )
    console.print(f"stored as {spec.name} v{version} in {registry}", markup=False)
    console.print(
        json.dumps(fitted.artifact["json_files"]["prompt.json"]["config"], indent=1), highlight=False
    )


@app.command("export")
def export(
    task_file: Path = typer.Argument(..., help="task.yaml (for label names and description)."),
    ref: str = typer.Option("latest", "--ref", help="Version number or alias."),
    registry: Path = REGISTRY,
) -> None:
    """Print a stored prompt as plain text to paste into any chat UI."""
    from tasktune.registry import Registry
    from tasktune.routes.prompting.service import as_plain_text

    spec = load_task(task_file)
    with Registry(registry) as reg:
        artifact = reg.load(spec.name, ref)
    if artifact.kind != "prompt" or "config" not in artifact.json_files.get("prompt.json", {}):
        raise TaskTuneError(f"{spec.name} {ref} is a {artifact.kind} adaptation, not a causal-LM prompt")
    print(as_plain_text(artifact.json_files["prompt.json"], spec))
