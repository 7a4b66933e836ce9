import numpy as np
import pytest
import torch

from tasktune.backbones.loading import load_backbone
from tasktune.routes.prompt_tuning.causal import CausalSoftPrompt
from tasktune.routes.prompt_tuning.config import default_options
from tasktune.routes.prompt_tuning.encoder import EncoderSoftPrompt
from tasktune.task.data import Example
from tests.routes.prompting.conftest import TASK

# One label throughout: a soft prompt on a *random* tiny model can always learn to steer the answer
# (input-dependent separation needs a real model; the slow benchmarks measure that).
BATCH = [Example(t, 1) for t in ["awful soup", "great food", "rude staff", "lovely hotel"] * 2]


def _fit(trainable, steps=15, lr=0.05):
    opt = torch.optim.Adam([p for _, p in trainable.parameters()], lr=lr)
    trainable.train_mode(True)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = trainable.loss(BATCH)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    trainable.train_mode(False)
    return losses


@pytest.mark.parametrize("depth", ["shallow", "deep"])
def test_causal_soft_prompt_learns_and_only_the_prompt_changes(tiny_llama_dir, depth):
    backbone = load_backbone(str(tiny_llama_dir), device="cpu")
    before = {k: v.clone() for k, v in backbone.model.state_dict().items()}
    sp = CausalSoftPrompt(
        backbone, TASK, default_options("few", depth).model_copy(update={"num_virtual_tokens": 4}), 0
    )
    assert [n for n, _ in sp.parameters()] == ["prompt_embeddings"]
    start = sp.prompt.detach().clone()
    p_before = sp.predict_proba(BATCH)[:, 1].mean()
    losses = _fit(sp, steps=30, lr=0.5 if depth == "shallow" else 0.05)
    # A random tiny model's logits span well under 1 nat, so the loss cannot fall far; it must fall.
    assert losses[-1] < losses[0] - 0.03
    assert not torch.equal(start, sp.prompt.detach())
    assert sp.predict_proba(BATCH)[:, 1].mean() > p_before + 0.01
    after = backbone.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    probs = sp.predict_proba(BATCH[:3])
    assert probs.shape == (3, 2) and np.allclose(probs.sum(1), 1)


@pytest.mark.parametrize("objective", ["similarity", "head"])
def test_encoder_soft_prompt_learns(tiny_bert_dir, objective):
    backbone = load_backbone(str(tiny_bert_dir), device="cpu")
    options = default_options("few").model_copy(update={"num_virtual_tokens": 4})
    sp = EncoderSoftPrompt(backbone, TASK, options, 0, objective=objective)
    names = [n for n, _ in sp.parameters()]
    assert names == (
        ["prompt_embeddings"]
        if objective == "similarity"
        else ["prompt_embeddings", "head.weight", "head.bias"]
    )
    before = sp.predict_proba(BATCH)[:, 1].mean()
    losses = _fit(sp, steps=25, lr=0.05)
    assert losses[-1] < losses[0]
    # The tiny tokenizer's vocabulary order varies between processes (ties in the WordPiece trainer),
    # so how far 25 steps get differs; that they move every prediction towards the label does not.
    after = sp.predict_proba(BATCH)
    assert after.shape == (8, 2) and after[:, 1].mean() > before


@pytest.mark.parametrize("depth", ["shallow", "deep"])
def test_prompt_init_starts_as_route_ones_zero_shot_prompt(tiny_llama_dir, depth):
    """init="prompt": the soft prompt is the zero-shot prompt's opening (as embeddings, or as the keys
    and values the model computes for it) and the hard tokens are the rest, token for token, so step 0
    gives route 1's (uncalibrated) probabilities."""
    from tasktune.routes.prompt_tuning.inputs import SoftPromptInputs
    from tasktune.routes.prompt_tuning.soft_prompt import Encoded
    from tasktune.routes.prompting.search import zero_shot_config

    backbone = load_backbone(str(tiny_llama_dir), device="cpu")
    options = default_options("few", depth, backbone_kind="causal")
    assert options.init == "prompt" and options.train.eval_at_start
    sp = CausalSoftPrompt(backbone, TASK, options, 0)
    config = zero_shot_config(TASK, has_unlabelled=False).model_copy(update={"calibration": "none"})
    whole = SoftPromptInputs(TASK, backbone.tokenizer, 256, config=config)
    rows = whole.encode(BATCH)
    assert rows == [sp.inputs.prefix_ids + r for r in sp.inputs.encode(BATCH)]
    n = len(sp.inputs.prefix_ids)
    assert n > 3 and sp.prompt.shape[0 if depth == "shallow" else 3] == n
    enc = Encoded.of(rows, 0, backbone.device.device)
    with torch.no_grad():
        h = backbone.model.base_model(input_ids=enc.ids, attention_mask=enc.mask()).last_hidden_state
        last = h[torch.arange(len(BATCH)), enc.lengths - 1]
        logits = backbone.model.get_output_embeddings()(last)[:, whole.label_token_ids]
    np.testing.assert_allclose(sp.predict_proba(BATCH), logits.softmax(-1).double().numpy(), atol=1e-5)


def test_encoders_keep_their_label_description_start():
    options = default_options("few", backbone_kind="encoder")
    assert options.init == "labels" and options.train.lr == 3e-2 and not options.train.eval_at_start
    assert not options.train.group_by_length  # few-shot; full data groups steps by length
    assert default_options("full", backbone_kind="encoder", n_train=60000).train.group_by_length


def test_prompt_init_calibrates_like_route_one(tiny_llama_dir):
    """The route calibrates a prompt-initialised soft prompt before training: step 0 is the zero-shot
    prompt with route 1's mean calibration, the offset fixed (not a trained parameter)."""
    from tasktune.routes.prompting import calibration

    backbone = load_backbone(str(tiny_llama_dir), device="cpu")
    sp = CausalSoftPrompt(backbone, TASK, default_options("few", backbone_kind="causal"), 0)
    raw = np.log(sp.predict_proba(BATCH))
    sp.calibrate([e.text for e in BATCH])
    expected = calibration.apply(raw, calibration.mean_bias(raw))
    np.testing.assert_allclose(sp.predict_proba(BATCH), expected, atol=1e-5)
    assert [n for n, _ in sp.parameters()] == ["prompt_embeddings"]


def test_prompt_started_ensemble_members_get_the_prompt_start_recipe():
    from tasktune.routes import get_route

    route = get_route("prompt_ensemble")
    members = route.options("few", 13, 32, "causal", {})
    single = default_options("few")
    assert members.init == single.init == "prompt" and members.train == single.train
    assert route.options("few", 13, 32, "causal", {"init": "prompt"}) == members
    labels = route.options("few", 13, 32, "causal", {"init": "labels"})
    assert labels.init == "labels" and labels.train.lr == 3e-2 and not labels.train.eval_at_start
