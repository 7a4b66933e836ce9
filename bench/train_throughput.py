"""Training throughput of prompt tuning: tasktune's soft-prompt trainable through the shared loop vs
a plain PEFT loop (PromptTuningConfig, full forward, loss on the label tokens of the last position),
same backbone, batch size, initial prompt, optimiser (AdamW, constant lr, no clipping) and number of
steps; each draws its own seeded batch order. Prints training
examples/s of each, the ratio, and the dev accuracy each reaches. CPU runs a reduced number of steps.

    python bench/train_throughput.py [--steps N] [--batch 8]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from common import write_result
from peft import PromptTuningConfig, TaskType, get_peft_model

from tasktune.backbones.loading import load_backbone
from tasktune.routes.prompt_tuning.causal import CausalSoftPrompt
from tasktune.routes.prompt_tuning.config import default_options
from tasktune.routes.prompt_tuning.soft_prompt import Encoded
from tasktune.task.data import load_split
from tasktune.task.protocols import few_shot
from tasktune.training import TrainConfig, train

TASK = Path(__file__).resolve().parents[1] / "examples" / "sst2.yaml"


def main() -> None:
    from tasktune.task.spec import load_task

    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=0, help="default 30 on CPU, 300 on GPU")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=3e-2)
    args = p.parse_args()

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
    # Label-word init: the same 20 virtual tokens as the PEFT loop it is compared with.
    options = default_options("few", from_prompt=False).model_copy(
        update={
            "train": TrainConfig(
                max_steps=steps,
                batch_size=args.batch,
                lr=args.lr,
                seed=13,
                schedule="constant",
                max_grad_norm=None,  # as the plain loop: no clipping (the default clips at 1.0)
            )
        }
    )

    # tasktune
    ours = CausalSoftPrompt(backbone, spec, options, seed=13)
    init = ours.prompt.detach().clone()
    result = train(ours, train_ex, [], options.train, backbone.device, progress=False)
    ours_eps = result.examples_per_second
    ours_acc = ours.evaluate(dev_ex)["accuracy"]

    # The plain PEFT loop a user writes: same prompt init, full forward, loss on the label tokens.
    model = get_peft_model(
        backbone.model, PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=init.shape[0])
    )
    with torch.no_grad():
        model.prompt_encoder["default"].embedding.weight.copy_(init)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    labels = torch.tensor(ours.inputs.label_token_ids, device=dev_)
    pad = backbone.tokenizer.pad_token_id
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
        last = logits[torch.arange(len(batch), device=dev_), init.shape[0] + enc.lengths - 1][
            :, labels
        ].float()
        loss = torch.nn.functional.cross_entropy(last, torch.tensor([e.label for e in batch], device=dev_))
        opt.zero_grad()
        loss.backward()
        opt.step()
        seen += len(batch)
    plain_s = time.perf_counter() - start
    plain_eps = seen / plain_s
    with torch.no_grad():
        ours.prompt.copy_(model.prompt_encoder["default"].embedding.weight)
    plain_acc = ours.evaluate(dev_ex)["accuracy"]

    rows = [
        {
            "path": "plain PEFT prompt-tuning loop",
            "examples_per_s": round(plain_eps, 2),
            "dev_accuracy": plain_acc,
        },
        {
            "path": "tasktune soft prompt + shared loop",
            "examples_per_s": round(ours_eps, 2),
            "dev_accuracy": ours_acc,
        },
    ]
    ratio = ours_eps / plain_eps
    print(
        f"{steps} steps of batch {args.batch}, {len(train_ex)} train / {len(dev_ex)} dev (K={k}), "
        f"{dev_} {backbone.device.dtype_name}"
    )
    for r in rows:
        print(f"  {r['path']:40s} {r['examples_per_s']:8.2f} ex/s   dev accuracy {r['dev_accuracy']:.3f}")
    print(f"  ratio {ratio:.2f}x")
    write_result(
        "train_throughput",
        settings={
            "steps": steps,
            "batch": args.batch,
            "lr": args.lr,
            "k": k,
            "virtual_tokens": int(init.shape[0]),
            "mode": "gpu full" if on_gpu else "cpu reduced",
        },
        rows=rows,
        summary={
            "ratio": round(ratio, 2),
            "dev_accuracy_tasktune": ours_acc,
            "dev_accuracy_plain": plain_acc,
        },
    )


if __name__ == "__main__":
    main()
