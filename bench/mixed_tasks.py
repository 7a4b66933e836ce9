"""Serving T tasks' soft prompts on one frozen backbone.

tasktune: requests are taken in arrival order, B at a time, through the server's mixed-task path
(``tasktune.serving.mixed.mixed_soft_prompt_proba``): every row of one forward pass carries its own
task's soft prompt, as the key/value prefix computed once per prompt (so each row runs its T tokens,
not N + T). Baseline: one PEFT model with T prompt-tuning adapters; each window of B arrivals is
grouped by task and the adapter switched per group (what PEFT allows for prompt learning). Same model,
same prompts, same requests, both tokenising inside the timed pass; prints requests/s of each, the
ratio, the one-off cost of the T prefixes, and whether the label probabilities agree (and argmax
labels are identical). CPU uses fewer requests (stated).

    python bench/mixed_tasks.py [--tasks 8] [--requests N] [--batch 32]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from common import timed_rows, write_result
from peft import PromptTuningConfig, TaskType, get_peft_model

from tasktune.backbones.loading import load_backbone
from tasktune.routes.prompt_tuning.causal import CausalSoftPrompt
from tasktune.routes.prompt_tuning.config import default_options
from tasktune.routes.prompt_tuning.prefix_cache import PREFIXES
from tasktune.routes.prompt_tuning.soft_prompt import Encoded, init_shallow
from tasktune.serving.mixed import mixed_soft_prompt_proba
from tasktune.task.data import load_split
from tasktune.task.spec import load_task

TASK = Path(__file__).resolve().parents[1] / "examples" / "sst2.yaml"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--tasks", type=int, default=8)
    p.add_argument("--requests", type=int, default=0, help="default 128 on CPU, 2048 on GPU")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--virtual-tokens", type=int, default=20)
    args = p.parse_args()

    spec = load_task(TASK)
    backbone = load_backbone("smollm2-135m-instruct")
    dev = backbone.device.device
    on_gpu = dev.type == "cuda"
    n_req = args.requests or (2048 if on_gpu else 128)
    texts = load_split(spec, "test-sentences").examples
    rng = np.random.default_rng(0)
    requests = [texts[i % len(texts)] for i in range(n_req)]
    task_of = rng.integers(0, args.tasks, size=n_req)
    # T different soft prompts: each initialised from other vocabulary samples (training is not the point).
    options = default_options("few", "shallow", backbone_kind="causal").model_copy(
        update={"init": "vocab", "num_virtual_tokens": args.virtual_tokens}
    )
    scorers = [
        CausalSoftPrompt(
            backbone,
            spec,
            options,
            seed=t,
            prompt=init_shallow(
                backbone.model,
                args.virtual_tokens,
                "vocab",
                label_ids=[],
                text_ids=[],
                generator=torch.Generator().manual_seed(t),
            ),
        )
        for t in range(args.tasks)
    ]
    prompts = torch.stack([sp.prompt.detach() for sp in scorers])  # (T, N, H)
    inputs = scorers[0].inputs  # every task here reads SST-2's template
    labels = torch.tensor(inputs.label_token_ids, device=dev)
    pad = backbone.tokenizer.pad_token_id

    def tasktune_pass() -> np.ndarray:
        out = []
        for s in range(0, n_req, args.batch):
            window = range(s, min(s + args.batch, n_req))
            out += mixed_soft_prompt_proba([(scorers[task_of[i]], requests[i]) for i in window])
        return np.stack(out)

    peft_model = get_peft_model(
        backbone.model,
        PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=args.virtual_tokens),
        adapter_name="task0",
    )
    for t in range(1, args.tasks):
        peft_model.add_adapter(
            f"task{t}",
            PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=args.virtual_tokens),
        )
    with torch.no_grad():
        for t in range(args.tasks):
            peft_model.prompt_encoder[f"task{t}"].embedding.weight.copy_(prompts[t])
    peft_model.eval()

    def peft_pass() -> np.ndarray:
        out = np.zeros((n_req, len(inputs.label_token_ids)))
        with torch.inference_mode():
            for s in range(0, n_req, args.batch):
                window = np.arange(s, min(s + args.batch, n_req))
                for t in np.unique(task_of[window]):
                    members = window[task_of[window] == t]
                    peft_model.set_adapter(f"task{t}")
                    enc = Encoded.of(inputs.encode([requests[i] for i in members]), pad, dev)
                    with backbone.device.autocast():
                        logits = peft_model(
                            input_ids=enc.ids, attention_mask=enc.mask()
                        ).logits  # (b, N+T, V)
                    last = logits[
                        torch.arange(len(members), device=dev), args.virtual_tokens + enc.lengths - 1
                    ]
                    out[members] = last[:, labels].float().softmax(-1).cpu().numpy()
        return out

    PREFIXES.clear()
    with torch.inference_mode():  # the process's first forward pass pays one-off set-up: not a prefix cost
        backbone.model(input_ids=torch.tensor([[pad]], device=dev))
    start = time.perf_counter()
    for sp in scorers:
        sp.kv_prefix()
    prefix_s = time.perf_counter() - start
    tasktune_pass()  # warm-up
    start = time.perf_counter()
    ours = tasktune_pass()
    ours_s = time.perf_counter() - start
    peft_pass()
    start = time.perf_counter()
    theirs = peft_pass()
    theirs_s = time.perf_counter() - start

    tol = 1e-3 if on_gpu else 1e-4
    equal = bool(np.allclose(ours, theirs, atol=tol, rtol=0))  # label probabilities
    same_labels = bool((ours.argmax(1) == theirs.argmax(1)).all())
    print(
        f"{n_req} requests over {args.tasks} tasks, batch {args.batch}, "
        f"{args.virtual_tokens} virtual tokens, "
        f"{dev} {backbone.device.dtype_name}"
    )
    rows = timed_rows(
        n_req,
        "requests",
        [("PEFT, adapter switched per task group", theirs_s), ("tasktune mixed-task batches", ours_s)],
    )
    ratio = theirs_s / ours_s
    print(
        f"  ratio {ratio:.2f}x, outputs equal: {equal}, identical labels: {same_labels}, "
        f"max |diff| {np.abs(ours - theirs).max():.2e}; "
        f"the {args.tasks} prefixes took {prefix_s:.2f} s once"
    )
    write_result(
        "mixed_tasks",
        settings={
            "requests": n_req,
            "tasks": args.tasks,
            "batch": args.batch,
            "virtual_tokens": args.virtual_tokens,
            "prefix_seconds": round(prefix_s, 3),
            "mode": "gpu full" if on_gpu else "cpu reduced",
        },
        rows=rows,
        summary={"ratio": round(ratio, 2), "equal": equal, "identical_labels": same_labels},
    )


if __name__ == "__main__":
    main()
