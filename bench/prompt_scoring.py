"""Speed of few-shot rank classification: tasktune's prefix-cached scorer vs the plain loop a user
writes (the full prompt + label word through the model, once per example per label), same model,
same prompts, same examples. Prints examples/s of each, the ratio, and whether the predictions are
identical. CPU runs a reduced number of examples (stated in the output); a GPU runs more.

    python bench/prompt_scoring.py [--examples N] [--shots-per-class 4]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from common import timed_rows, write_result

from tasktune.backbones.loading import load_backbone
from tasktune.routes.prompting.config import PromptConfig
from tasktune.routes.prompting.demos import DemoSelector
from tasktune.routes.prompting.predictor import CausalPromptScorer
from tasktune.task.data import load_split
from tasktune.task.protocols import few_shot
from tasktune.task.spec import load_task

TASK = Path(__file__).resolve().parents[1] / "examples" / "sst2.yaml"


@torch.inference_mode()
def plain_loop(backbone, prompts: list[str], words: list[str], device) -> np.ndarray:
    """What a user writes with transformers: tokenize prompt + word, one forward each, sum log-probs."""
    tok, model = backbone.tokenizer, backbone.model
    scores = np.zeros((len(prompts), len(words)))
    for i, prompt in enumerate(prompts):
        n_prompt = len(tok(prompt, add_special_tokens=False)["input_ids"])
        for j, word in enumerate(words):
            ids = tok(prompt + word, add_special_tokens=False, return_tensors="pt")["input_ids"].to(
                device.device
            )
            with device.autocast():
                logits = model(input_ids=ids).logits[0]
            lp = logits[n_prompt - 1 : -1].float().log_softmax(-1)
            scores[i, j] = lp.gather(1, ids[0, n_prompt:, None]).sum().item()
    return scores


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--examples", type=int, default=0, help="test examples (default 32 on CPU, 872 on GPU)")
    p.add_argument("--shots-per-class", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=16)
    args = p.parse_args()

    spec = load_task(TASK)
    backbone = load_backbone("smollm2-135m-instruct")
    on_gpu = backbone.device.device.type == "cuda"
    n = args.examples or (872 if on_gpu else 32)
    test = load_split(spec, "test").examples[:n]
    demos_pool = few_shot(load_split(spec, "train"), spec.label_names, k=16, seed=13).train
    base = spec.prompt.model_dump(exclude_none=True)
    config = PromptConfig(name="8-shot", **base, demos_per_class=args.shots_per_class)
    selector = DemoSelector(demos_pool, spec.num_labels, args.shots_per_class, seed=13)
    scorer = CausalPromptScorer(backbone, spec, config, selector)
    words = [scorer.answer_prefix + w for w in scorer.word_strings]
    prompt_texts = [
        scorer.renderer.render(e, d).text for e, d in zip(test, selector.for_queries(test), strict=True)
    ]
    prompt_tokens = len(scorer.prompt_ids(test[:1])[0])

    # Warm-up of each path (the model's first forward, allocator, kernels). The timed tasktune path
    # also renders and tokenises its prompts, which the plain loop's were before its timer: that
    # counts against tasktune, not for it.
    scorer.raw_scores(test[:2])
    plain_loop(backbone, prompt_texts[:1], words, backbone.device)
    start = time.perf_counter()
    fast = np.concatenate(
        [scorer.raw_scores(test[i : i + args.batch_size]) for i in range(0, n, args.batch_size)]
    )
    fast_s = time.perf_counter() - start

    start = time.perf_counter()
    plain_words = plain_loop(backbone, prompt_texts, words, backbone.device)
    plain_s = time.perf_counter() - start
    plain = np.stack([np.logaddexp.reduce(plain_words[:, g], axis=1) for g in scorer.groups], axis=1)

    identical = bool((fast.argmax(1) == plain.argmax(1)).all())
    max_diff = float(np.abs(fast - plain).max())
    print(
        f"{n} SST-2 test examples, {2 * args.shots_per_class}-shot prompts of ~{prompt_tokens} tokens, "
        f"{len(words)} label words, {backbone.device.device} {backbone.device.dtype_name}"
    )
    rows = timed_rows(
        n,
        "examples",
        [
            ("plain loop (prompt + word per forward)", plain_s),
            ("tasktune (prefix KV cache, batched)", fast_s),
        ],
    )
    ratio = plain_s / fast_s
    print(f"  ratio {ratio:.1f}x, identical predictions: {identical}, max |score diff| {max_diff:.2e}")
    write_result(
        "prompt_scoring",
        settings={
            "examples": n,
            "shots": 2 * args.shots_per_class,
            "prompt_tokens": prompt_tokens,
            "words": words,
            "batch_size": args.batch_size,
            "mode": "gpu full" if on_gpu else "cpu reduced",
        },
        rows=rows,
        summary={"ratio": round(ratio, 2), "identical": identical, "max_score_diff": max_diff},
    )


if __name__ == "__main__":
    main()
