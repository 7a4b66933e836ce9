"""Training throughput: tasktune's trainable through the shared loop vs the plain PEFT loop a user
writes, same backbone (SmolLM2), inputs, batch size, initial weights, optimiser (AdamW, constant lr,
no clipping, no weight decay) and number of steps; each draws its own seeded batch order. Routes:

- ``prompt_tuning``: a soft prompt (label-word start) vs PEFT's PromptTuningConfig with the same start;
- ``lora``: prompt-based LoRA r8 on q,v vs PEFT's LoraConfig with the same settings and initialisation;
- ``finetune_prompt``: prompt-based full fine-tuning vs the same model trained in a plain loop.

Both sides compute the loss on the label words' logits at the answer position of the same prompt (the
plain loop through the full forward and all-position logits, as a user's loop does). Prints training
examples/s of each, the ratio, and the dev accuracy each reaches (read out by tasktune's classifier
with the plain loop's weights copied in). CPU runs a reduced number of steps.

    python bench/train_throughput.py [--route prompt_tuning|lora|finetune_prompt] [--steps N] [--batch 8]
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import numpy as np
import torch
from common import write_result
from peft import LoraConfig, PromptTuningConfig, TaskType, get_peft_model

from tasktune.backbones.loading import load_backbone
from tasktune.routes.finetuning.classifier import FinetunedClassifier
from tasktune.routes.finetuning.config import default_options as ft_defaults
from tasktune.routes.prompt_tuning.causal import CausalSoftPrompt
from tasktune.routes.prompt_tuning.config import default_options as pt_defaults
from tasktune.routes.prompt_tuning.soft_prompt import Encoded
from tasktune.task.data import load_split
from tasktune.task.protocols import few_shot
from tasktune.training import TrainConfig, train

TASK = Path(__file__).resolve().parents[1] / "examples" / "sst2.yaml"
DEFAULT_LR = {"prompt_tuning": 3e-2, "lora": 2e-4, "finetune_prompt": 1e-5}


def _train_config(steps: int, batch: int, lr: float) -> TrainConfig:
    # As the plain loop: constant lr, no clipping (the default clips at 1.0), no weight decay.
    return TrainConfig(
        max_steps=steps,
        batch_size=batch,
        lr=lr,
        seed=13,
        schedule="constant",
        max_grad_norm=None,
        weight_decay=0.0,
    )


def _ours(route: str, backbone, spec, config: TrainConfig):
    """tasktune's trainable, and (plain model, its trainable parameters, virtual tokens before the text)
    for the plain loop, built from the same starting weights."""
    if route == "prompt_tuning":
        options = pt_defaults("few", from_prompt=False).model_copy(update={"train": config})
        ours = CausalSoftPrompt(backbone, spec, options, seed=13)
        init = ours.prompt.detach().clone()
        model = get_peft_model(
            copy.deepcopy(backbone.model),
            PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=init.shape[0]),
        )
        with torch.no_grad():
            model.prompt_encoder["default"].embedding.weight.copy_(init)
        return ours, model, int(init.shape[0])
    adapter = "lora" if route == "lora" else "full"
    options = ft_defaults("few", "prompt", adapter, "causal", 13).model_copy(update={"train": config})
    ours = FinetunedClassifier(backbone, spec, options, 13)
    ours.label_bias.requires_grad_(False)  # a plain loop has no label offset to train
    if adapter == "lora":
        lo = options.lora
        plain_config = LoraConfig(
            r=lo.r,
            lora_alpha=lo.alpha,
            lora_dropout=lo.dropout,
            target_modules=list(ours.peft_config.target_modules),
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(copy.deepcopy(backbone.model).float(), plain_config)
    else:
        model = copy.deepcopy(backbone.model).float().requires_grad_(True)
    # The same starting weights as ours (LoRA's A is drawn at random): copied, not re-drawn. PEFT
    # injects into the model it wraps, so its inner model has our copy's parameter names.
    _inner(model).load_state_dict(ours.model.state_dict())
    return ours, model, 0


def _inner(model):
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _copy_back(route: str, ours, model) -> None:
    """The plain loop's trained weights into tasktune's classifier, to read both out the same way."""
    with torch.no_grad():
        if route == "prompt_tuning":
            ours.prompt.copy_(model.prompt_encoder["default"].embedding.weight)
        else:
            ours.model.load_state_dict(_inner(model).state_dict())


def main() -> None:
    from tasktune.task.spec import load_task

    p = argparse.ArgumentParser()
    p.add_argument("--route", choices=sorted(DEFAULT_LR), default="prompt_tuning")
    p.add_argument("--steps", type=int, default=0, help="default 30 on CPU, 300 on GPU")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=0.0, help="default per route: " + str(DEFAULT_LR))
    args = p.parse_args()
    lr = args.lr or DEFAULT_LR[args.route]

    spec = load_task(TASK)
    backbone = load_backbone("smollm2-135m-instruct")
    dev_ = backbone.device.device
    on_gpu = dev_.type == "cuda"
    steps = args.steps or (300 if on_gpu else 30)
    k = 64 if on_gpu else 16
    full_train = load_split(spec, "train")
    splits = few_shot(full_train, spec.label_names, k=k, seed=13)
    train_ex = list(splits.train)
    # A larger dev sample than K per class: 32 examples cannot tell two runs' accuracies apart.
    used = {e.row for e in splits.train}
    pool = [e for e in full_train.examples if e.row not in used]
    dev_ex = [pool[i] for i in np.random.default_rng(0).permutation(len(pool))[:256]]
    config = _train_config(steps, args.batch, lr)
    ours, model, virtual = _ours(args.route, backbone, spec, config)
    start_acc = ours.evaluate(dev_ex)["accuracy"]

    # tasktune
    result = train(ours, train_ex, [], config, backbone.device, progress=False)
    ours_eps = result.examples_per_second
    ours_acc = ours.evaluate(dev_ex)["accuracy"]

    # The plain loop a user writes: full forward, all-position logits, loss on the label tokens.
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    labels = torch.tensor(ours.inputs.label_token_ids, device=dev_)
    pad = backbone.tokenizer.pad_token_id
    model.train()
    g = torch.Generator().manual_seed(13)
    order: list[int] = []
    seen = 0
    start = time.perf_counter()
    for _ in range(steps):
        if len(order) < args.batch:
            order += torch.randperm(len(train_ex), generator=g).tolist()
        batch = [train_ex[i] for i in order[: args.batch]]
        order = order[args.batch :]
        enc = Encoded.of(ours.inputs.encode(batch), pad, dev_)
        with backbone.device.autocast():
            logits = model(input_ids=enc.ids, attention_mask=enc.mask()).logits  # (B, N+T, V)
        last = logits[torch.arange(len(batch), device=dev_), virtual + enc.lengths - 1][:, labels].float()
        loss = torch.nn.functional.cross_entropy(last, torch.tensor([e.label for e in batch], device=dev_))
        opt.zero_grad()
        loss.backward()
        opt.step()
        seen += len(batch)
    plain_s = time.perf_counter() - start
    plain_eps = seen / plain_s
    model.eval()
    _copy_back(args.route, ours, model)
    plain_acc = ours.evaluate(dev_ex)["accuracy"]

    plain_name = f"plain PEFT {args.route} loop"
    if args.route == "finetune_prompt":
        plain_name = "plain fine-tuning loop"
    rows = [
        {
            "path": plain_name,
            "examples_per_s": round(plain_eps, 2),
            "dev_accuracy": plain_acc,
        },
        {
            "path": f"tasktune {args.route} + shared loop",
            "examples_per_s": round(ours_eps, 2),
            "dev_accuracy": ours_acc,
        },
    ]
    ratio = ours_eps / plain_eps
    print(
        f"{args.route}: {steps} steps of batch {args.batch}, lr {lr:g}, {len(train_ex)} train / "
        f"{len(dev_ex)} dev (K={k}), {dev_} {backbone.device.dtype_name}; "
        f"dev accuracy before training {start_acc:.3f}"
    )
    for r in rows:
        print(f"  {r['path']:40s} {r['examples_per_s']:8.2f} ex/s   dev accuracy {r['dev_accuracy']:.3f}")
    print(f"  ratio {ratio:.2f}x")
    settings = {
        "route": args.route,
        "steps": steps,
        "batch": args.batch,
        "lr": lr,
        "k": k,
        "mode": "gpu full" if on_gpu else "cpu reduced",
        "dev_accuracy_before": start_acc,
    }
    if virtual:
        settings["virtual_tokens"] = virtual
    write_result(
        "train_throughput" if args.route == "prompt_tuning" else f"train_throughput-{args.route}",
        settings=settings,
        rows=rows,
        summary={
            "ratio": round(ratio, 2),
            "dev_accuracy_tasktune": ours_acc,
            "dev_accuracy_plain": plain_acc,
        },
    )


if __name__ == "__main__":
    main()
