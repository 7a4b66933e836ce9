"""Fine-tuning options, as data.

``objective`` says what the model is trained through: ``head`` (a new linear classifier on the pooled
representation — the classic recipe) or ``prompt`` (LM-BFF style: the route-1 zero-shot prompt and its
label words on a causal LM, or the similarity to label descriptions on an encoder, so that training
starts from the backbone's zero-shot ability instead of a random head). ``adapter`` says which weights
move: all of them (``full``) or LoRA matrices (the rest frozen).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tasktune.routes.trained import full_data_schedule
from tasktune.training.config import TrainConfig


class LoraOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    r: int = Field(default=8, ge=1, le=1024)
    alpha: int = Field(default=16, ge=1)
    dropout: float = Field(default=0.05, ge=0, lt=1)
    # None: the attention query/value projections, found by name (q_proj/v_proj, query/value).
    target_modules: tuple[str, ...] | None = None
    # Merge the LoRA matrices into the weights for prediction (one matmul fewer per layer); the stored
    # artifact is the adapter either way.
    merge_for_inference: bool = False


class FinetuneOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    objective: Literal["head", "prompt"] = "head"
    adapter: Literal["full", "lora"] = "full"
    lora: LoraOptions = LoraOptions()
    classifier_dropout: float = Field(default=0.1, ge=0, lt=1)
    max_tokens: int = Field(default=256, ge=8, description="input tokens kept per example")
    gradient_checkpointing: bool = False
    eval_batch_size: int = Field(default=32, ge=1)
    # WiSE-FT (Wortsman et al. 2022): the weights kept are start + interpolate * (trained - start), a
    # point on the line from the starting classifier to the dev-selected fine-tuned one. 1.0 keeps the
    # fine-tuned weights; below 1 is only meaningful when the start is itself a classifier (the
    # prompt-based objective or a probe-started head), never a random head.
    interpolate: float = Field(default=1.0, gt=0, le=1)
    # How a head objective's new head starts: ``random`` (the classic recipe) or ``probe`` — LP-FT
    # (Kumar et al. 2022): first a logistic-regression probe on the frozen backbone's pooled features
    # of the training examples, then every weight trained from there, so the first steps do not push
    # a random head's gradients through (and distort) the pre-trained features.
    head_init: Literal["random", "probe"] = "random"
    # What a head objective's head reads: ``text`` (the bare input, the classic recipe) or ``template``
    # (the task's input template and answer cue around it, as prompt tuning renders it: no instruction,
    # no chat turn). On a causal LM the last position then sits where the model is about to answer, and
    # its hidden state is shaped by the question (see default_options for what it gives). An encoder's
    # over-long input is cut at the end, cue included (the causal path keeps the end).
    head_input: Literal["text", "template"] = "text"
    train: TrainConfig

    # Applied to the trained tensors after training, so a checkpoint written under other values of these
    # still resumes (routes/trained.checkpointed): WiSE-FT's weight, LoRA merging for prediction.
    AFTER_TRAINING: ClassVar[dict] = {"interpolate": True, "lora": {"merge_for_inference": True}}

    @model_validator(mode="after")
    def _interpolate_needs_a_working_start(self) -> FinetuneOptions:
        if self.interpolate < 1 and self.objective == "head" and self.head_init == "random":
            raise ValueError(
                f"interpolate={self.interpolate} moves the weights back toward the start, and this head "
                "starts at random; use interpolate=1.0, head_init='probe' or objective='prompt'"
            )
        if self.head_init == "probe" and self.objective != "head":
            raise ValueError("head_init='probe' starts a new head; the prompt objective has none")
        if self.head_input != "text" and self.objective != "head":
            raise ValueError(
                f"head_input={self.head_input!r} says what a new head reads; the prompt objective has none"
            )
        return self


def default_options(
    protocol: str, objective: str, adapter: str, backbone_kind: str, seed: int, n_train: int | None = None
) -> FinetuneOptions:
    """Starting points per regime. Few-shot follows LM-BFF's recipe scaled to 32 examples (small lr,
    many passes, dev-selected checkpoint); full data is one epoch with warm-up. LoRA takes a ~10x larger
    learning rate than full fine-tuning (Hu et al. 2021). A new head needs a larger lr than the body,
    which the encoder's defaults reflect (1e-4 for a head on an encoder).
    bench/results/accuracy-finetuning-*.json has how they fare."""
    lora = adapter == "lora"
    lr = {("causal", False): 1e-5, ("causal", True): 2e-4, ("encoder", False): 5e-5, ("encoder", True): 5e-4}[
        (backbone_kind, lora)
    ]
    if objective == "head" and not lora and (protocol == "few" or backbone_kind == "encoder"):
        # A random head has further to go: in few steps, and on a small encoder (the plain-HF run that
        # reached 89.5 % on SST-2 with all-MiniLM-L6-v2 used 1e-4).
        lr *= 2
    shared = {"lr": lr, "seed": seed, "weight_decay": 0.01}
    if protocol == "few":
        train = TrainConfig(
            epochs=20,
            batch_size=8,
            warmup_ratio=0.1,
            eval_every=8,
            early_stopping_patience=5,
            # Only a prompt-based start is a working classifier worth keeping; a random head is not. (A
            # few-shot probe start is one too, but 32-example dev sets were measured without it.)
            eval_at_start=objective == "prompt" and not (adapter == "lora" and backbone_kind != "causal"),
            **shared,
        )
    else:
        schedule = full_data_schedule(n_train, 32, target_examples=2000)
        # A causal LM's head starts as a probe (below): a working classifier, so dev sees it before the
        # first step and the best-checkpoint keeping can return it if training only makes it worse.
        probed = objective == "head" and backbone_kind == "causal"
        # Steps of similar-length texts: all-MiniLM-L6-v2 on SST-2 trained 1.71x faster at the same dev
        # accuracy (bench/results/length_grouping-cpu.json).
        train = TrainConfig(
            batch_size=32, warmup_ratio=0.06, eval_at_start=probed, group_by_length=True, **schedule, **shared
        )
    # WiSE-FT halfway (the paper's default mixing weight) when few-shot training starts from the prompt's
    # classifier: 32 examples pull the weights far from a start that already generalises. Causal LMs
    # only: that is where it was measured (bench/results/accuracy-finetuning-*.json).
    wise = protocol == "few" and objective == "prompt" and adapter == "full" and backbone_kind == "causal"
    interpolate = 0.5 if wise else 1.0
    # LP-FT's probe start for a new head, few-shot (bench/results/ablation-lp-ft-cpu.json, 5 seeds). On
    # all-MiniLM-L6-v2 it helps on average: +4.3 / +2.0 points on SST-2 / MR with a full fine-tune,
    # +3.4 / +1.4 with LoRA, but -1.4 on 4-class AG News (better on 1 seed of 5).
    few_head = protocol == "few" and objective == "head"
    causal_head = objective == "head" and backbone_kind == "causal"
    probe = few_head or causal_head
    # A causal LM's head on the last token of the bare text is near chance with 32 examples; at the
    # answer cue after the task's template the frozen features already separate the labels. SmolLM2,
    # SST-2 K=16, 5 seeds: a probe of the bare text's last token 59.9 %, of its mean token 56.4 %, of
    # the template's cue 70.4 % (bench/results/head_features-sst2-cpu.json); fine-tuned, random head on
    # the bare text 51.2 % -> probe-started head at the cue 74.2 %, better on 5 of 5 seeds
    # (ablation-head-template-cpu.json; template and probe changed together). On all-MiniLM-L6-v2
    # (mean pooling) the template costs 1.8 points (64.22 -> 62.43, worse on 4 of 5 seeds), so encoders
    # read the bare text. Full data on a causal LM: the classic recipe (bare text, random head, lr 1e-5,
    # one pass) left SmolLM2 at 52.5 % on 2,000 SST-2 examples with dev accuracy still climbing when it
    # ended; with the template and probe start 87.5 % (ablation-head-template-full-cpu.json).
    template = causal_head
    return FinetuneOptions(
        objective=objective,
        adapter=adapter,
        interpolate=interpolate,
        head_init="probe" if probe else "random",
        head_input="template" if template else "text",
        train=train,
    )
