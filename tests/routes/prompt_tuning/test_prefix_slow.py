"""SmolLM2-135M for real: a soft prompt read as its computed key/value prefix (what inference and
serving do) answers as the whole (N + T)-token pass it was trained through, for the calibrated
prompt start on SST-2 sentences, shallow and deep, alone and mixed in one batch."""

import numpy as np
import pytest
import torch

from tasktune.backbones.loading import load_backbone
from tasktune.routes.prompt_tuning.causal import CausalSoftPrompt
from tasktune.routes.prompt_tuning.config import default_options
from tasktune.serving.mixed import mixed_soft_prompt_proba
from tasktune.task.data import load_split
from tasktune.task.spec import load_task
from tests.conftest import REPO, SHARED_DATA

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data is not beside this checkout"),
]


def test_prefix_path_equals_the_whole_pass_on_smollm2():
    backbone = load_backbone("smollm2-135m-instruct", device="cpu")
    task = load_task(REPO / "examples" / "sst2.yaml")
    texts = load_split(task, "test").examples[:6]
    options = {d: default_options("few", d, backbone_kind="causal") for d in ("shallow", "deep")}
    prompts = {d: CausalSoftPrompt(backbone, task, o, seed=13) for d, o in options.items()}
    for sp in prompts.values():
        sp.train_mode(False)
        sp.calibrate([e.text for e in texts])  # a non-zero label offset, as trained prompts carry
        whole = sp.label_logits(texts).detach().softmax(-1).double().numpy()
        np.testing.assert_allclose(sp.predict_proba(texts), whole, atol=1e-4, rtol=0)
    rows = [(prompts["shallow" if i % 2 else "deep"], e) for i, e in enumerate(texts)]
    mixed = np.stack(mixed_soft_prompt_proba(rows))
    with torch.no_grad():
        alone = np.concatenate([sp.label_logits([e]).softmax(-1).double().numpy() for sp, e in rows])
    np.testing.assert_allclose(mixed, alone, atol=1e-4, rtol=0)
