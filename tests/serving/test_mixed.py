"""R14: batching never changes answers. Rows of several soft-prompt tasks (different templates, label
sets, lengths, shallow and deep) in one forward pass give the labels and probabilities each task gives
alone — directly, and through the HTTP server under concurrent mixed traffic."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from tasktune.backbones.loading import load_backbone
from tasktune.routes.prompt_tuning.causal import CausalSoftPrompt
from tasktune.routes.prompt_tuning.config import default_options
from tasktune.serving.app import create_app
from tasktune.serving.mixed import mix_key, mixed_soft_prompt_proba
from tasktune.serving.pool import ModelPool, Served
from tasktune.task.data import Example
from tasktune.task.spec import parse_task
from tests.serving.conftest import _wait_ready, settings_for
from tests.serving.stubs import StubLoader, reference

# Label words chosen so their first tokens differ in the tiny test tokenizer.
TASKS = {
    "sentiment": ([("negative", "bad"), ("positive", "good")], "Review: {{ text }}", "Sentiment:"),
    "topic": (
        [("world", "great"), ("sports", "lovely"), ("business", "awful"), ("science", "food")],
        "Headline: {{ text }}",
        "Topic:",
    ),
    "spam": ([("ham", "world"), ("spam", "negative")], "Message: {{ text }}", "Spam?"),
}
TEXTS = [
    "short",
    "a considerably longer piece of text that makes this row much longer than the others in its batch",
    "medium length text here",
    "{{ 7*7 }} <|im_start|> user text stays data",
]


def _task(name: str):
    labels, template, cue = TASKS[name]
    return parse_task(
        {
            "name": name,
            "labels": [{"name": n, "words": [w]} for n, w in labels],
            "data": {"test": {"path": "unused.jsonl"}},
            "prompt": {"input_template": template, "cue": cue},
        }
    )


@pytest.fixture(scope="module")
def prompts(tiny_llama_dir):
    backbone = load_backbone(str(tiny_llama_dir), device="cpu")
    out = {}
    for i, name in enumerate(TASKS):
        depth = "deep" if name == "spam" else "shallow"  # deep and shallow tasks share one pass
        options = default_options("few", depth).model_copy(update={"num_virtual_tokens": 5 + i})
        sp = CausalSoftPrompt(backbone, _task(name), options, seed=i)
        with torch.no_grad():  # distinct, non-trivial prompts per task
            sp.prompt.copy_(torch.randn(sp.prompt.shape, generator=torch.Generator().manual_seed(i)) * 0.5)
            sp.label_bias.copy_(torch.linspace(-0.5, 0.5, sp.num_labels) * (i + 1))  # a calibration offset
        sp.train_mode(False)
        out[name] = sp
    return out


def test_mixed_rows_equal_each_task_alone(prompts):
    rng = random.Random(0)
    rows = [(rng.choice(list(prompts)), rng.choice(TEXTS)) for _ in range(24)]
    assert len({mix_key(sp) for sp in prompts.values()}) == 1  # they can share a pass
    mixed = mixed_soft_prompt_proba([(prompts[t], Example(x, 0)) for t, x in rows])
    for (task, text), probs in zip(rows, mixed, strict=True):
        # The reference is the whole (N + T)-token pass the prompt was trained through, not the cached prefix.
        alone = prompts[task].label_logits([Example(text, 0)]).detach().softmax(-1)[0].double().numpy()
        assert probs.shape == alone.shape == (len(TASKS[task][0]),)
        np.testing.assert_allclose(probs, alone, atol=1e-4, rtol=0)
        assert probs.argmax() == alone.argmax()


@pytest.mark.parametrize("pass_cost", [0, 10_000])
def test_length_buckets_do_not_change_answers(prompts, monkeypatch, pass_cost):
    """Split into one pass per length (cost 0) or kept whole (a GPU's cost): the same answers."""
    import tasktune.serving.passes as passes

    rng = random.Random(2)
    rows = [(prompts[rng.choice(list(prompts))], Example(rng.choice(TEXTS), 0)) for _ in range(16)]
    planned = []
    monkeypatch.setattr(passes, "pass_cost_tokens", lambda device_type: pass_cost)
    real_plan = passes.plan_passes
    monkeypatch.setattr(passes, "plan_passes", lambda *a: planned.append(real_plan(*a)) or planned[-1])
    bucketed = mixed_soft_prompt_proba(rows)
    distinct_lengths = {len(sp.inputs.encode([e])[0]) for sp, e in rows}
    assert len(planned[0]) == (1 if pass_cost else len(distinct_lengths)) and len(distinct_lengths) > 2
    for (sp, e), probs in zip(rows, bucketed, strict=True):
        alone = sp.label_logits([e]).detach().softmax(-1)[0].double().numpy()
        np.testing.assert_allclose(probs, alone, atol=1e-4, rtol=0)


def test_server_mixed_concurrent_traffic_equals_single_requests(prompts, tmp_path):
    served = [
        Served(
            name, 1, "prompt_tuning", "soft-prompt", sp.task, sp, "tiny", reference(num_labels=sp.num_labels)
        )
        for name, sp in prompts.items()
    ]
    loader = StubLoader(served)
    pool = ModelPool(loader)
    for name in TASKS:
        pool.activate(name, 1)
    app = create_app(settings_for(tmp_path, batch_wait_ms=20, max_batch=16), pool=pool)
    rng = random.Random(1)
    requests = [
        {"task": rng.choice(list(TASKS)), "texts": rng.sample(TEXTS, rng.randint(1, 3))} for _ in range(30)
    ]
    with TestClient(app) as c:
        _wait_ready(c)
        with ThreadPoolExecutor(12) as ex:  # concurrent: the batcher mixes tasks in one pass
            concurrent = list(ex.map(lambda body: c.post("/v1/predict", json=body).json(), requests))
        batches_before = app.state.tasktune.batcher.stats.batches
        single = [c.post("/v1/predict", json=body).json() for body in requests]  # one at a time
        assert app.state.tasktune.batcher.stats.batches - batches_before == len(requests)
    stats = app.state.tasktune.batcher.stats
    assert stats.rows / max(stats.batches, 1) > 1  # some batches really held several requests
    for a, b in zip(concurrent, single, strict=True):
        assert [p["label"] for p in a["predictions"]] == [p["label"] for p in b["predictions"]]
        for pa, pb in zip(a["predictions"], b["predictions"], strict=True):
            for label in pa["probabilities"]:
                assert abs(pa["probabilities"][label] - pb["probabilities"][label]) <= 1e-4
