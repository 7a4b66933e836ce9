"""Where a new head should read a frozen causal LM, with K=16 examples per label.

A linear probe (tasktune's LP-FT probe: L2 logistic regression) is fitted on the frozen backbone's
features of each LM-BFF few-shot training set and scored on the test set, for three readouts:

- ``last``: the last token of the bare text (the classic sequence-classification head's input);
- ``mean``: the mean over the bare text's tokens;
- ``template``: the last token of the task's input template and answer cue around the text
  (``finetune_head``'s ``head_input: template``), where the model is about to answer.

What it chose: the few-shot default of ``finetune_head`` on causal LMs (routes/finetuning/config.py).

    python bench/head_features.py [--task examples/sst2.yaml] [--backbone smollm2-135m-instruct]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from common import write_result

from tasktune.backbones.loading import load_backbone
from tasktune.routes.finetuning.probe import fit_linear_probe
from tasktune.routes.prompt_tuning.inputs import SoftPromptInputs
from tasktune.routes.prompt_tuning.soft_prompt import Encoded
from tasktune.routes.prompting.template import PromptRenderer, encode_within
from tasktune.runner import FEW_SHOT_SEEDS, protocol_splits
from tasktune.task.data import Example, load_split
from tasktune.task.spec import load_task

READOUTS = ("last", "mean", "template")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--task", default=str(Path(__file__).resolve().parents[1] / "examples" / "sst2.yaml"))
    p.add_argument("--backbone", default="smollm2-135m-instruct")
    p.add_argument("--test-limit", type=int, default=872, help="first N test examples")
    args = p.parse_args()

    spec = load_task(Path(args.task))
    backbone = load_backbone(args.backbone)
    if backbone.kind != "causal":
        raise SystemExit("head_features.py compares readouts of a causal LM")
    tok, dev = backbone.tokenizer, backbone.device.device
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    body = getattr(backbone.model, backbone.model.base_model_prefix)
    renderer = PromptRenderer(SoftPromptInputs.template_config(spec), spec, tok)
    train = load_split(spec, "train")
    test = load_split(spec, "test").examples[: args.test_limit]

    @torch.no_grad()
    def features(examples: list[Example], readout: str) -> torch.Tensor:
        out = []
        for i in range(0, len(examples), 32):
            batch = examples[i : i + 32]
            if readout == "template":
                ids = [encode_within(tok, renderer.render(e), 256)[0] for e in batch]  # as the routes cut
            else:
                ids = [
                    r[:256] or [pad]
                    for r in tok([e.text for e in batch], add_special_tokens=False)["input_ids"]
                ]
            enc = Encoded.of(ids, pad, dev)
            with backbone.device.autocast():
                hidden = body(input_ids=enc.ids, attention_mask=enc.mask()).last_hidden_state.float()
            if readout == "mean":
                mask = enc.mask().unsqueeze(-1).float()
                out.append((hidden * mask).sum(1) / mask.sum(1))
            else:
                out.append(hidden[torch.arange(len(batch), device=dev), enc.lengths - 1])
        return torch.cat(out)

    y_test = torch.tensor([e.label for e in test], device=dev)
    rows, summary = [], {}
    for readout in READOUTS:
        start = time.perf_counter()
        x_test = features(test, readout)
        per_seed = []
        for seed in FEW_SHOT_SEEDS:
            few = protocol_splits(spec, {"train": train}, "few", seed).train
            y = torch.tensor([e.label for e in few], device=dev)
            weight, bias, _ = fit_linear_probe(features(list(few), readout), y, spec.num_labels)
            per_seed.append(float(((x_test @ weight.T + bias).argmax(1) == y_test).double().mean()) * 100)
        mean, std = float(np.mean(per_seed)), float(np.std(per_seed, ddof=1))
        rows.append(
            {
                "readout": readout,
                "acc_per_seed": [round(a, 2) for a in per_seed],
                "acc_mean": round(mean, 2),
                "acc_std": round(std, 2),
                "seconds": round(time.perf_counter() - start, 1),
            }
        )
        summary[f"{spec.name}/{readout}/acc_mean"] = round(mean, 2)
        print(
            f"  {readout:<9} {mean:6.2f} ± {std:4.2f}   per seed {[round(a, 2) for a in per_seed]}",
            flush=True,
        )
    write_result(
        f"head_features-{spec.name}",
        settings={
            "task": spec.name,
            "backbone": args.backbone,
            "k": 16,
            "seeds": list(FEW_SHOT_SEEDS),
            "test_examples": len(test),
            "probe": "L2 logistic regression, C=1 on standardised features (routes/finetuning/probe.py)",
        },
        rows=rows,
        summary=summary,
    )


if __name__ == "__main__":
    main()
