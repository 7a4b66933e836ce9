"""Library functions behind ``tasktune prompt ...``: evaluate one prompt, A/B two prompts on the same
examples, and print a stored prompt as plain text for any chat UI."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tasktune.backbones.loading import Backbone
from tasktune.evaluation.evaluator import predict
from tasktune.evaluation.significance import PairedComparison, compare_paired
from tasktune.routes.base import FitContext
from tasktune.routes.prompting.config import PromptConfig
from tasktune.routes.prompting.route import fit_causal_prompt
from tasktune.task.data import Example
from tasktune.task.spec import TaskSpec


@dataclass
class ABOutcome:
    comparison: PairedComparison
    probs_a: np.ndarray
    probs_b: np.ndarray


def prompt_probabilities(
    backbone: Backbone,
    task: TaskSpec,
    config: PromptConfig,
    examples: Sequence[Example],
    *,
    train: Sequence[Example] = (),
    unlabelled: Sequence[str] = (),
    batch_size: int = 16,
) -> np.ndarray:
    ctx = FitContext(
        task, tuple(train), (), "few" if train else "zero", config.seed, backbone, tuple(unlabelled)
    )
    scorer, _ = fit_causal_prompt(ctx, config)
    return predict(scorer, examples, batch_size=batch_size).probs


def ab_test(
    backbone: Backbone,
    task: TaskSpec,
    config_a: PromptConfig,
    config_b: PromptConfig,
    examples: Sequence[Example],
    *,
    train: Sequence[Example] = (),
    unlabelled: Sequence[str] = (),
    names: tuple[str, str] = ("A", "B"),
) -> ABOutcome:
    """Both prompts on the same examples; paired statistics on per-example correctness."""
    y = np.array([e.label for e in examples])
    pa = prompt_probabilities(backbone, task, config_a, examples, train=train, unlabelled=unlabelled)
    pb = prompt_probabilities(backbone, task, config_b, examples, train=train, unlabelled=unlabelled)
    comparison = compare_paired(names[0], pa.argmax(1) == y, names[1], pb.argmax(1) == y)
    return ABOutcome(comparison, pa, pb)


def as_plain_text(prompt: dict, task: TaskSpec, placeholder: str = "<paste the text here>") -> str:
    """A stored prompt (``prompt.json``) as text a person can paste into any chat window."""
    from tasktune.routes.prompting.template import PromptRenderer

    config = PromptConfig.model_validate(prompt["config"]).model_copy(update={"chat": False})
    renderer = PromptRenderer(config, task)
    index = task.label_index()
    stored = prompt.get("demonstrations", [])
    demos = [Example(d["text"], index[d["label"]], d.get("text_pair")) for d in stored]
    pair = "<paste the second text here>" if task.text_pair_field is not None else None
    text = renderer.render(Example(placeholder, 0, pair), demos).text
    words = ", ".join(
        f"{name} = {' / '.join(w)}" for name, w in zip(task.label_names, renderer.words, strict=True)
    )
    lines = [text, "", f"# label words: {words}"]
    if prompt.get("bias") is not None:
        lines.append(
            f"# calibrated ({config.calibration}): tasktune subtracts a per-label log-probability bias "
            f"{[round(b, 3) for b in prompt['bias']]}"
            "; a chat UI cannot, so expect more of the favoured label."
        )
    return "\n".join(lines)
