"""The embedded backbones for real: conversion, cached load time, logits equality, embeddings."""

import time

import pytest
import torch

from tasktune.backbones.catalog import EMBEDDED
from tasktune.backbones.loading import load_backbone
from tasktune.backbones.prepare import cached_folder, prepare

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fresh_cache(tmp_path_factory):
    # A cache of its own, so the GGUF conversion itself is exercised even where the user's cache is warm.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TASKTUNE_CACHE", str(tmp_path_factory.mktemp("tasktune-cache")))
        yield


def test_smollm2_converts_once_then_loads_fast_with_equal_logits(fresh_cache, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = EMBEDDED["smollm2-135m-instruct"]
    assert cached_folder(spec) is None
    folder = prepare(spec)
    assert cached_folder(spec) == folder and (folder / "model.safetensors").is_file()

    start = time.perf_counter()
    backbone = load_backbone("smollm2-135m-instruct", device="cpu")
    seconds = time.perf_counter() - start
    assert seconds < 3.0, f"cached load took {seconds:.2f} s"
    assert backbone.identity.num_parameters == 134_515_008
    assert backbone.tokenizer.chat_template

    source = spec.source_path()
    gguf_model = AutoModelForCausalLM.from_pretrained(
        source.parent, gguf_file=source.name, dtype=torch.float32
    )
    gguf_tok = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    prompt = "Review: the soup was cold and the waiter rude.\nSentiment:"
    ids = gguf_tok(prompt, return_tensors="pt")
    assert ids["input_ids"].tolist() == backbone.tokenizer(prompt, return_tensors="pt")["input_ids"].tolist()
    with torch.no_grad():
        expected = gguf_model(**ids).logits
        got = backbone.model(**ids).logits
    assert torch.equal(expected, got)


def test_minilm_embeddings_separate_meanings():
    b = load_backbone("all-minilm-l6-v2", device="cpu")
    assert b.kind == "encoder" and b.identity.hidden_size == 384
    texts = ["The food was delicious.", "That meal tasted wonderful.", "The stock market fell sharply today."]
    batch = b.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = b.model(**batch).last_hidden_state  # (B, T, H)
    mask = batch["attention_mask"].unsqueeze(-1).float()
    emb = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    sim = emb @ emb.T
    assert sim[0, 1] > 0.6 > sim[0, 2]
