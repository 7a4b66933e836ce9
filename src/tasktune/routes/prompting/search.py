"""Prompt search: instruction/cue variants × chat or plain × label-word sets × demonstrations ×
calibration, each scored on the dev split (never on test); the best is kept.

Small models are very sensitive to wording, so the search is the route, not an extra. It is cheap
where it can be: one scoring pass per (variant, chat, demonstrations) scores the union of all
label-word sets, and calibration choices reuse the same scores.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from tasktune.backbones.loading import Backbone
from tasktune.errors import DataError
from tasktune.evaluation.metrics import macro_f1
from tasktune.routes.prompting import calibration
from tasktune.routes.prompting.config import PromptConfig
from tasktune.routes.prompting.demos import DemoSelector
from tasktune.routes.prompting.predictor import CausalPromptScorer
from tasktune.routes.prompting.scoring import label_scores
from tasktune.task.data import Example
from tasktune.task.spec import TaskSpec

log = logging.getLogger(__name__)
GENERIC_CUES = ("Answer:", "The answer is")


def base_variants(task: TaskSpec) -> list[PromptConfig]:
    """The task author's wording (when given) and generic ones."""
    variants = []
    hint = task.prompt
    if hint.instruction or hint.input_template or hint.cue:
        fields = {k: v for k, v in hint.model_dump().items() if v is not None}
        variants.append(PromptConfig(name="task", **fields))
    variants += [PromptConfig(name=f"generic-{i}", cue=cue) for i, cue in enumerate(GENERIC_CUES)]
    return variants


def zero_shot_config(task: TaskSpec, *, has_unlabelled: bool) -> PromptConfig:
    """The zero-shot prompt: chosen without any label — the task's wording, first label words, and
    mean calibration on unlabelled training texts when there are some (contextual otherwise)."""
    base = base_variants(task)[0]
    first = {label.name: (label.label_words[0],) for label in task.labels}
    return base.model_copy(
        update={"label_words": first, "calibration": "mean" if has_unlabelled else "contextual"}
    )


def word_sets(task: TaskSpec) -> dict[str, list[tuple[str, ...]]]:
    sets = {
        "first": [(label.label_words[0],) for label in task.labels],
        "all": [tuple(label.label_words) for label in task.labels],
        "names": [(label.name,) for label in task.labels],
    }
    unique: dict[str, list[tuple[str, ...]]] = {}
    for name, ws in sets.items():
        if ws not in unique.values():
            unique[name] = ws
    return unique


@dataclass
class Trial:
    config: PromptConfig
    dev_accuracy: float
    dev_nll: float
    preds: dict[int, tuple[int, int]] = field(default_factory=dict, repr=False)  # place → (label, pred)
    dev_macro_f1: float = 0.0
    metric: str = "accuracy"  # the task's: what key() ranks by

    def key(self) -> tuple[float, float]:
        return (self.dev_macro_f1 if self.metric == "macro_f1" else self.dev_accuracy, -self.dev_nll)


@dataclass
class SearchResult:
    best: PromptConfig
    trials: list[Trial] = field(default_factory=list)
    # How the choice was made: the zero-shot prompt is kept unless a candidate beats it significantly.
    decision: dict = field(default_factory=dict)

    def table(self) -> list[dict]:
        return [
            {
                "name": t.config.name,
                "chat": t.config.chat,
                "demos": t.config.demos_per_class,
                "words": t.config.label_words,
                "calibration": t.config.calibration,
                "dev_accuracy": round(t.dev_accuracy, 4),
                "dev_macro_f1": round(t.dev_macro_f1, 4),
                "dev_nll": round(t.dev_nll, 4),
            }
            for t in sorted(self.trials, key=Trial.key, reverse=True)
        ]


def stratified_sample(examples: Sequence[Example], n: int, seed: int, num_labels: int) -> list[Example]:
    """At most ``n`` examples, as many per class as the classes allow, in their original order."""
    if len(examples) <= n:
        return list(examples)
    rng = np.random.default_rng(seed)
    labels = np.array([e.label for e in examples])
    per = max(1, n // num_labels)
    idx = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:per] for c in range(num_labels)])
    return [examples[i] for i in sorted(idx)]


def _scores(scorer: CausalPromptScorer, examples: Sequence[Example], batch_size: int) -> np.ndarray:
    if not examples:
        return np.zeros((0, len(scorer.word_strings)))
    return np.concatenate(
        [scorer.word_scores(examples[i : i + batch_size]) for i in range(0, len(examples), batch_size)]
    )


def search(
    backbone: Backbone,
    task: TaskSpec,
    train: Sequence[Example],
    dev: Sequence[Example],
    unlabelled: Sequence[Example],
    *,
    seed: int = 13,
    demo_counts: Sequence[int] = (0, 1, 2),
    batch_size: int = 16,
    progress: Callable[[str], None] | None = None,
    select_on_train: bool = True,
    held_out_limit: int = 200,
    switch_alpha: float = 0.1,
    metric: str = "accuracy",
) -> SearchResult:
    """``select_on_train``: also score each candidate on the training examples it does not show as
    demonstrations. Those are held out for that candidate, and with K=16 they double the selection
    data (32 dev examples alone cannot tell a 3-point difference from noise). At most
    ``held_out_limit`` of them (a seeded sample by class): with full training data every candidate
    would otherwise score the whole of train — 2,000 examples × 18 candidates took over an hour on a
    2-core CPU for a choice that 200 more examples already settle. The sample is drawn once, so every
    candidate is scored on the same examples (less the demonstrations it shows)."""
    if not dev:
        raise ValueError("the prompt search needs labelled dev examples")
    sets = word_sets(task)
    # The prompt shows each label's first word (the instruction's label list, the demonstrations'
    # answers), so word sets that differ there render different prompts: each such group gets its own
    # forward, so every candidate is scored on exactly the prompt it would deploy.
    renders: dict[tuple[str, ...], dict[str, list[tuple[str, ...]]]] = {}
    for set_name, ws in sets.items():
        renders.setdefault(tuple(w[0] for w in ws), {})[set_name] = ws
    union = [tuple(dict.fromkeys(w for ws in sets.values() for w in ws[c])) for c in range(task.num_labels)]
    has_chat = bool(getattr(backbone.tokenizer, "chat_template", None))
    pool_min = min(sum(1 for e in train if e.label == c) for c in range(task.num_labels)) if train else 0
    demo_counts = [d for d in demo_counts if d <= pool_min]
    content_free = calibration.content_free_inputs(task)
    # One held-out sample for every candidate (each then drops the demos it shows), so candidates are
    # ranked and paired on the same examples. Examples are keyed by their place in `selection`: row
    # numbers restart in every split file, so a dev row and a train row can share one.
    sample = stratified_sample(train, held_out_limit, seed, task.num_labels) if select_on_train else []
    selection = [*dev, *sample]
    place = {id(e): i for i, e in enumerate(selection)}
    trials: list[Trial] = []
    skipped: list[str] = []
    for variant, chat, demos, group in itertools.product(
        base_variants(task), (True, False) if has_chat else (False,), demo_counts, renders.values()
    ):
        config = variant.model_copy(update={"chat": chat, "demos_per_class": demos, "seed": seed})
        # Rendered with this group's words (its first words are what the prompt shows); scored on them all.
        shown_words = dict(zip(task.label_names, next(iter(group.values())), strict=True))
        config = config.model_copy(update={"label_words": shown_words}) if len(renders) > 1 else config
        selector = DemoSelector(train, task.num_labels, demos, seed=seed) if demos else None
        scorer = CausalPromptScorer(backbone, task, config, selector, words=union)
        if progress:
            progress(f"{config.name} chat={chat} demos={demos}")
        # By content, not identity: a training text repeated with its label (SST-2 and AG News have
        # such) would otherwise be scored with its own answer in the prompt.
        shown = {(e.text, e.text_pair) for e in (selector.fixed if selector else [])}
        evaluated = [*dev, *(e for e in sample if (e.text, e.text_pair) not in shown)]
        y = np.array([e.label for e in evaluated])
        try:
            dev_w = torch.from_numpy(_scores(scorer, evaluated, batch_size))
            cf_w = torch.from_numpy(_scores(scorer, content_free, batch_size))
            un_w = torch.from_numpy(_scores(scorer, unlabelled, batch_size))
        except DataError as err:  # e.g. demonstrations make the prompt longer than the model takes
            log.info("prompt search: skipping %s chat=%s demos=%d: %s", config.name, chat, demos, err)
            skipped.append(f"{config.name} chat={chat} demos={demos}: {err}")
            continue
        for set_name, ws in group.items():
            groups = []
            start = 0
            for c in range(task.num_labels):
                groups.append([start + union[c].index(w) for w in ws[c]])
                start += len(union[c])
            dev_s, cf_s, un_s = (label_scores(t, groups).numpy() for t in (dev_w, cf_w, un_w))
            biases = {"none": None, "contextual": calibration.contextual_bias(cf_s)}
            if len(un_s):
                biases["mean"] = calibration.mean_bias(un_s)
            for cal_name, bias in biases.items():
                probs = calibration.apply(dev_s, bias)
                acc = float((probs.argmax(1) == y).mean())
                nll = float(-np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, None)).mean())
                chosen = config.model_copy(
                    update={
                        "label_words": dict(zip(task.label_names, ws, strict=True)),
                        "calibration": cal_name,
                        "name": f"{config.name}/{set_name}",
                    }
                )
                pred = probs.argmax(1)
                f1 = macro_f1(y, pred, task.num_labels)
                preds = {place[id(e)]: (int(t), int(q)) for e, t, q in zip(evaluated, y, pred, strict=True)}
                trials.append(Trial(chosen, acc, nll, preds, dev_macro_f1=f1, metric=metric))
    default = zero_shot_config(task, has_unlabelled=bool(unlabelled)).model_copy(
        update={"chat": has_chat, "demos_per_class": 0, "seed": seed}
    )
    if not trials:
        raise DataError("no prompt candidate fits the backbone: " + "; ".join(skipped[:3]))
    best, decision = choose(trials, default, alpha=switch_alpha, num_labels=task.num_labels)
    decision["skipped"] = skipped
    log.info("prompt search: %s", decision["reason"])
    return SearchResult(best.config, trials, decision)


def _same_prompt(a: PromptConfig, b: PromptConfig) -> bool:
    keys = ("instruction", "input_template", "cue", "chat", "demos_per_class", "calibration")
    return all(getattr(a, k) == getattr(b, k) for k in keys) and dict(a.label_words or {}) == dict(
        b.label_words or {}
    )


def choose(
    trials: list[Trial], default: PromptConfig, *, alpha: float, num_labels: int = 2
) -> tuple[Trial, dict]:
    """The best trial on the selection data (by the task's metric) — but the zero-shot prompt stays
    unless the best beats it with p < ``alpha`` on the examples both were scored on (McNemar on
    correctness for accuracy, a paired bootstrap of the difference for macro-F1). With 32–64
    selection examples the top of a 100-trial search is mostly luck; switching only on evidence keeps
    few-shot from doing worse than zero-shot (what it does when it picks by raw accuracy)."""
    from tasktune.evaluation.significance import paired_gain

    best = max(trials, key=Trial.key)
    base = next((t for t in trials if _same_prompt(t.config, default)), None)
    if base is None or base is best:
        return best, {"kept_default": base is best, "reason": f"best on dev: {best.config.name}"}
    rows = sorted(set(best.preds) & set(base.preds))
    y = np.array([best.preds[r][0] for r in rows])
    pa, pb = (np.array([t.preds[r][1] for r in rows]) for t in (best, base))
    gain, p, test = paired_gain(y, pa, pb, best.metric, num_labels)
    if gain > 0 and p < alpha:
        return best, {
            "kept_default": False,
            "p_value": p,
            "gain": gain,
            "reason": f"{best.config.name} beats the zero-shot prompt by {gain:+.1%} ({test} p={p:.3g})",
        }
    return base, {
        "kept_default": True,
        "p_value": p,
        "gain": gain,
        "reason": f"kept the zero-shot prompt: the best candidate {best.config.name} is {gain:+.1%} "
        f"({test} p={p:.3g} ≥ {alpha}) on {len(rows)} examples",
    }
