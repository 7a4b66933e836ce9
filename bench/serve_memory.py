"""Memory of many soft-prompt tasks on one served backbone.

Loads the backbone (resident memory measured after a warm-up pass), registers T soft-prompt
adaptations of it (SST-2 task definition, prompts initialised from vocabulary embeddings with a
different seed each — the bytes and the serving path are those of trained prompts; their accuracy is
not the point), loads all T through the server's own loader and pool (restore + warm-up pass each),
and compares resident memory with the acceptance bound of issue 9:

    RSS(T tasks) <= RSS(backbone) + T x prompt bytes + 10 % of RSS(backbone)

next to what T fine-tuned copies would take (T x the backbone's fp32 weights).

    python bench/serve_memory.py [--tasks 100] [--virtual-tokens 20]
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
from pathlib import Path

import psutil
import torch
from common import write_result

from tasktune.backbones.loading import load_backbone
from tasktune.registry import Registry
from tasktune.routes.prompt_tuning.soft_prompt import init_shallow
from tasktune.serving.pool import ModelPool, RegistryLoader
from tasktune.serving.settings import ServeSettings
from tasktune.task.data import Example
from tasktune.task.spec import load_task

TASK = Path(__file__).resolve().parents[1] / "examples" / "sst2.yaml"
BACKBONE = "smollm2-135m-instruct"


def rss_mb() -> float:
    gc.collect()
    return psutil.Process().memory_info().rss / 2**20


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--tasks", type=int, default=100)
    p.add_argument("--virtual-tokens", type=int, default=20)
    args = p.parse_args()

    spec = load_task(TASK)
    backbone = load_backbone(BACKBONE)
    from tasktune.routes.prompt_tuning.causal import CausalSoftPrompt
    from tasktune.routes.prompt_tuning.config import default_options

    options = default_options("few", from_prompt=False).model_copy(
        update={"num_virtual_tokens": args.virtual_tokens}
    )
    probe = CausalSoftPrompt(backbone, spec, options, seed=0)
    probe.predict_proba([Example("a warm-up sentence for the allocator", 0)])
    del probe
    base = rss_mb()
    weights_mb = sum(t.numel() * t.element_size() for t in backbone.model.parameters()) / 2**20  # tied once

    with tempfile.TemporaryDirectory() as tmp:
        registry = Path(tmp) / "registry"
        names = [f"sst2-copy-{i:03d}" for i in range(args.tasks)]
        definition = spec.definition()
        start = time.perf_counter()
        with Registry(registry) as reg:
            for i, name in enumerate(names):
                emb = init_shallow(
                    backbone.model,
                    args.virtual_tokens,
                    "vocab",
                    label_ids=[],
                    text_ids=[],
                    generator=torch.Generator().manual_seed(i),
                )
                reg.save(
                    name,
                    "soft-prompt",
                    backbone=backbone.identity,
                    route="prompt_tuning",
                    tensors={"prompt_embeddings": emb},
                    json_files={
                        "soft_prompt.json": {"options": options.model_dump(mode="json")},
                        "task.json": {**definition, "name": name},
                    },
                )
        saved_s = time.perf_counter() - start
        prompt_bytes = args.virtual_tokens * backbone.hidden_size * 4
        loader = RegistryLoader(ServeSettings(registry=registry))
        loader.backbones[BACKBONE] = backbone  # the server's loader, on the backbone already measured
        pool = ModelPool(loader)
        start = time.perf_counter()
        for name in names:
            pool.activate(name, "latest")
        load_s = time.perf_counter() - start
        after = rss_mb()

    extra = after - base
    bound = base + args.tasks * prompt_bytes / 2**20 + 0.10 * base
    rows = [
        {"what": "backbone alone (after a warm-up pass)", "mb": round(base, 1)},
        {"what": f"backbone + {args.tasks} soft-prompt tasks loaded and warmed up", "mb": round(after, 1)},
        {
            "what": f"{args.tasks} x prompt bytes ({prompt_bytes} B each)",
            "mb": round(args.tasks * prompt_bytes / 2**20, 2),
        },
        {"what": "acceptance bound: backbone + prompts + 10 %", "mb": round(bound, 1)},
        {"what": f"{args.tasks} fine-tuned copies (fp32 weights)", "mb": round(args.tasks * weights_mb, 1)},
    ]
    for r in rows:
        print(f"  {r['what']:<60} {r['mb']:>10.1f} MB")
    per_task_kb = extra * 1024 / args.tasks
    print(f"  extra per task: {per_task_kb:.1f} KB; saved in {saved_s:.1f} s, loaded in {load_s:.1f} s")
    write_result(
        "serve_memory",
        settings={"tasks": args.tasks, "virtual_tokens": args.virtual_tokens, "backbone": BACKBONE},
        rows=rows,
        summary={
            "rss_backbone_mb": round(base, 1),
            "rss_with_tasks_mb": round(after, 1),
            "extra_mb": round(extra, 1),
            "bound_mb": round(bound, 1),
            "within_bound": bool(after <= bound),
            "finetuned_copies_mb": round(args.tasks * weights_mb, 1),
            "load_seconds": round(load_s, 1),
        },
    )


if __name__ == "__main__":
    main()
