"""The loop's behaviour on tiny trainables: accumulation, early stopping, schedule, optimizers,
pickle-free output, refusals, and a soft prompt on a frozen tiny llama."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tasktune.backbones.device import resolve_device
from tasktune.task.data import Example
from tasktune.training import TrainConfig, TrainingError, checkpoints_of, lr_factor, read_folder, train
from tests.training.helpers import LinearTrainable, features, make_examples, tensors_of

CPU = resolve_device("cpu")


def _data(n_train: int = 32, n_dev: int = 16):
    examples = make_examples(n_train + n_dev)
    return examples[:n_train], examples[n_train:], features(n_train + n_dev)


def test_grad_accumulation_equals_one_big_batch():
    train_ex, dev_ex, table = _data(n_train=28)  # 28 = 3 steps of 8 + one of 4 (a smaller last step)
    results = []
    for batch, accum in [(4, 2), (8, 1)]:
        model = LinearTrainable(table, dropout=0.0)
        config = TrainConfig(max_steps=4, batch_size=batch, grad_accum_steps=accum, lr=0.1, seed=3)
        train(model, train_ex, dev_ex, config, CPU, progress=False)
        results.append(tensors_of(model))
    start = tensors_of(LinearTrainable(table, dropout=0.0))
    assert not torch.allclose(results[0]["head.weight"], start["head.weight"])  # it did train
    for name in start:
        torch.testing.assert_close(results[0][name], results[1][name], rtol=1e-5, atol=1e-6)


def test_uneven_micro_batches_are_weighted_by_size():
    # batch 3 x accum 3 over 9 examples/step: micro-batches of 3 except the last step's; compare with
    # one batch of 9 per step (same partition of examples into steps, same seed).
    train_ex, dev_ex, table = _data(n_train=25)  # steps of 9, 9, 7 -> last step's micro-batches 3,3,1
    got = []
    for batch, accum in [(3, 3), (9, 1)]:
        model = LinearTrainable(table, dropout=0.0)
        train(
            model,
            train_ex,
            dev_ex,
            TrainConfig(epochs=1, batch_size=batch, grad_accum_steps=accum, lr=0.1),
            CPU,
            progress=False,
        )
        got.append(tensors_of(model))
    for name in got[0]:
        torch.testing.assert_close(got[0][name], got[1][name], rtol=1e-5, atol=1e-6)


def test_early_stopping_after_patience_restores_best():
    train_ex, dev_ex, table = _data()
    # evaluations at steps 1..: best at the 2nd (step 2), then 3 without improvement -> stop at step 5
    model = LinearTrainable(table, scripted_metrics=[0.5, 0.7, 0.6, 0.7, 0.69, 0.9, 0.95])
    config = TrainConfig(max_steps=20, eval_every=1, early_stopping_patience=3, metric="scripted", lr=0.1)
    result = train(model, train_ex, dev_ex, config, CPU, progress=False)
    assert result.stopped == "early_stopping"
    assert (result.best_step, result.best_metric, result.final_step) == (2, 0.7, 5)
    assert len(model.snapshots) == 5
    for name, tensor in tensors_of(model).items():
        assert torch.equal(tensor, model.snapshots[1][name])  # restored to the step-2 tensors
        assert not torch.equal(tensor, model.snapshots[4][name])
    assert [h.step for h in result.history if h.dev is not None] == [1, 2, 3, 4, 5]


def test_eval_at_start_lets_the_untrained_state_win():
    train_ex, dev_ex, table = _data()
    model = LinearTrainable(table, scripted_metrics=[0.9, 0.5, 0.6, 0.7])
    initial = {k: v.clone() for k, v in tensors_of(model).items()}
    config = TrainConfig(max_steps=3, eval_every=1, eval_at_start=True, metric="scripted", lr=0.1)
    result = train(model, train_ex, dev_ex, config, CPU, progress=False)
    assert (result.best_step, result.best_metric) == (0, 0.9)
    assert result.history[0].step == 0 and result.history[0].dev["scripted"] == 0.9
    for name, tensor in tensors_of(model).items():
        assert torch.equal(tensor, initial[name])  # dev preferred no training at all


def test_history_lr_follows_schedule_and_loss_decreases():
    train_ex, dev_ex, table = _data()
    config = TrainConfig(max_steps=24, batch_size=8, lr=0.2, warmup_steps=4, log_every=1, eval_every=6)
    result = train(LinearTrainable(table, dropout=0.0), train_ex, dev_ex, config, CPU, progress=False)
    expected = [0.2 * lr_factor(s, total_steps=24, warmup_steps=4, schedule="linear") for s in range(24)]
    assert [h.lr for h in result.history] == pytest.approx(expected)
    assert [h.step for h in result.history] == list(range(1, 25))
    assert [h.epoch for h in result.history][:5] == [0, 0, 0, 0, 1]  # 32 examples / 8 = 4 steps an epoch
    assert result.history[-1].train_loss < result.history[1].train_loss
    assert result.stopped == "max_steps" and result.final_step == 24
    assert result.trainable_parameter_count == 16 * 3 + 3
    assert result.examples_per_second > 0 and result.best_metric is not None


def test_adafactor_trains():
    train_ex, dev_ex, table = _data()
    config = TrainConfig(
        max_steps=40, batch_size=8, optimizer="adafactor", lr=0.05, log_every=10, schedule="constant"
    )
    model = LinearTrainable(table, dropout=0.0)
    before = tensors_of(model)
    result = train(model, train_ex, dev_ex, config, CPU, progress=False)
    losses = [h.train_loss for h in result.history]
    assert losses[-1] < 0.8 * losses[0]
    assert model.frozen.equal(LinearTrainable(table).frozen)  # the untrained tensor is untouched
    assert not torch.equal(before["head.weight"], tensors_of(model)["head.weight"])


def test_output_folder_holds_only_json_and_safetensors(tmp_path):
    train_ex, dev_ex, table = _data()
    config = TrainConfig(max_steps=6, checkpoint_every=2, keep_checkpoints=2, eval_every=3)
    train(LinearTrainable(table), train_ex, dev_ex, config, CPU, output_dir=tmp_path, progress=False)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert files and all(p.suffix in {".json", ".safetensors"} for p in files), files
    assert [p.name for p in checkpoints_of(tmp_path)] == ["step-00000004", "step-00000006"]  # last two
    tensors, data = read_folder(checkpoints_of(tmp_path)[-1])
    assert set(tensors["optimizer"]) == {
        f"state.{i}.{k}" for i in (0, 1) for k in ("step", "exp_avg", "exp_avg_sq")
    }
    assert tensors["rng"]["torch_cpu"].dtype == torch.uint8
    assert data["state"]["loop"]["step"] == 6 and data["state"]["loop"]["finished"] == "max_steps"
    best, meta = read_folder(tmp_path / "best")
    assert set(best["trainable"]) == {"head.weight", "head.bias"} and meta["best"]["metric"] == "accuracy"


def test_checkpoints_by_wall_time(tmp_path):
    """Every ~0.05 s of a run whose steps take ~0.03 s: about every other step, plus the end."""
    train_ex, dev_ex, table = _data()
    config = TrainConfig(max_steps=8, checkpoint_every_seconds=0.05, keep_checkpoints=100)
    model = LinearTrainable(table, sleep_s=0.03)
    train(model, train_ex, dev_ex, config, CPU, output_dir=tmp_path, progress=False)
    steps = [int(p.name.split("-")[1]) for p in checkpoints_of(tmp_path)]
    assert steps[-1] == 8 and 3 <= len(steps) <= 8
    assert all(b - a <= 3 for a, b in itertools.pairwise(steps))


def test_refusals(tmp_path):
    train_ex, dev_ex, table = _data()
    config = TrainConfig(max_steps=2, checkpoint_every=1)
    train(LinearTrainable(table), train_ex, dev_ex, config, CPU, output_dir=tmp_path, progress=False)
    with pytest.raises(TrainingError, match="already holds checkpoints"):
        train(LinearTrainable(table), train_ex, dev_ex, config, CPU, output_dir=tmp_path, progress=False)
    with pytest.raises(TrainingError, match=r"different training config \(lr: 0.001 -> 0.5\)"):
        other = config.model_copy(update={"lr": 0.5})
        train(
            LinearTrainable(table),
            train_ex,
            dev_ex,
            other,
            CPU,
            output_dir=tmp_path,
            resume=True,
            progress=False,
        )
    with pytest.raises(TrainingError, match="no 'f1'"):
        train(
            LinearTrainable(table),
            train_ex,
            dev_ex,
            TrainConfig(max_steps=1, metric="f1"),
            CPU,
            progress=False,
        )
    model = LinearTrainable(table)
    model.weight.data = model.weight.data.to(torch.bfloat16)
    with pytest.raises(TrainingError, match=r"'head\.weight' is torch\.bfloat16"):
        train(model, train_ex, dev_ex, TrainConfig(max_steps=1), CPU, progress=False)
    # a finished run resumes as a no-op with the same result
    again = train(
        LinearTrainable(table),
        train_ex,
        dev_ex,
        config,
        CPU,
        output_dir=tmp_path,
        resume=True,
        progress=False,
    )
    assert again.final_step == 2 and again.resumed_from_step == 2


class SoftPromptTrainable:
    """4 trainable virtual tokens (4, 32) before a frozen tiny llama; loss over two label words'
    logits at the last real position."""

    def __init__(self, model_dir: Path):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tok = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
        self.model.requires_grad_(False)
        emb = self.model.get_input_embeddings().weight
        self.prompt = torch.nn.Parameter(emb[:4].detach().clone())  # (P, H), initialised from the vocabulary
        self.label_ids = [self.tok(w, add_special_tokens=False).input_ids[0] for w in ("bad", "good")]

    def parameters(self):
        return [("soft_prompt", self.prompt)]

    def train_mode(self, training: bool) -> None:
        pass  # the backbone stays in eval mode: frozen, no dropout

    def _label_logits(self, batch: Sequence[Example]) -> torch.Tensor:
        enc = [self.tok(e.text + " Answer:", add_special_tokens=False).input_ids for e in batch]
        length = max(map(len, enc))
        ids = torch.tensor([x + [0] * (length - len(x)) for x in enc])  # (B, T) right-padded
        mask = torch.tensor([[1] * len(x) + [0] * (length - len(x)) for x in enc])
        embeds = self.model.get_input_embeddings()(ids)  # (B, T, H)
        prompt = self.prompt.unsqueeze(0).expand(len(batch), -1, -1)  # (B, P, H)
        full_mask = torch.cat([torch.ones(len(batch), 4, dtype=mask.dtype), mask], dim=1)
        logits = self.model(inputs_embeds=torch.cat([prompt, embeds], 1), attention_mask=full_mask).logits
        last = 4 + mask.sum(1) - 1  # (B,) last real position
        return logits[torch.arange(len(batch)), last][:, self.label_ids].float()  # (B, 2)

    def loss(self, batch):
        return F.cross_entropy(self._label_logits(batch), torch.tensor([e.label for e in batch]))

    def evaluate(self, examples):
        pred = self._label_logits(examples).argmax(1)
        return {"accuracy": (pred == torch.tensor([e.label for e in examples])).float().mean().item()}


def test_soft_prompt_on_frozen_tiny_llama(tiny_llama_dir, tmp_path, capsys):
    texts = [
        "the food was great",
        "terrible service",
        "good value",
        "bad battery",
        "a lovely hotel",
        "boring movie",
    ]
    examples = [Example(text=t, label=int(i % 2 == 0), row=i) for i, t in enumerate(texts)]
    trainable = SoftPromptTrainable(tiny_llama_dir)
    frozen_before = {k: v.clone() for k, v in trainable.model.state_dict().items()}
    prompt_before = trainable.prompt.detach().clone()
    config = TrainConfig(max_steps=4, batch_size=3, lr=0.05, eval_every=2, checkpoint_every=2, log_every=1)
    result = train(trainable, examples, examples, config, CPU, output_dir=tmp_path, progress=True)
    assert result.trainable_parameter_count == 4 * 32
    assert all(h.train_loss is not None and h.train_loss > 0 for h in result.history)
    assert result.best_step in (2, 4) and not torch.equal(trainable.prompt, prompt_before)
    for k, v in trainable.model.state_dict().items():
        assert torch.equal(v, frozen_before[k]), k  # the backbone is frozen
    tensors, _ = read_folder(checkpoints_of(tmp_path)[-1])
    assert set(tensors["trainable"]) == {"soft_prompt"}


def test_a_checkpoint_of_other_route_options_is_not_resumed(tmp_path):
    # Same tensors, same TrainConfig, other options (e.g. a head started as a probe vs at random):
    # resuming would silently continue the other run.
    train_ex, dev_ex, table = _data()
    config = TrainConfig(max_steps=2, checkpoint_every=1)
    kwargs = {"output_dir": tmp_path, "resume": True, "progress": False}
    train(LinearTrainable(table), train_ex, dev_ex, config, CPU, setup={"head_init": "probe"}, **kwargs)
    with pytest.raises(TrainingError, match=r"other options \(head_init: 'probe' -> 'random'\)"):
        train(LinearTrainable(table), train_ex, dev_ex, config, CPU, setup={"head_init": "random"}, **kwargs)
    with pytest.raises(TrainingError, match=r"other options \(head_init: 'probe' -> None\)"):
        train(LinearTrainable(table), train_ex, dev_ex, config, CPU, **kwargs)
    again = train(
        LinearTrainable(table), train_ex, dev_ex, config, CPU, setup={"head_init": "probe"}, **kwargs
    )
    assert again.resumed_from_step == 2


def test_weight_average_is_what_is_evaluated_and_kept():
    # The same run with and without ema_decay: training itself is unchanged (same losses), dev sees the
    # exponential moving average of the trained tensors, and the average at the best step is returned.
    train_ex, dev_ex, table = _data()
    metrics = [0.1, 0.2, 0.3, 0.4, 0.5, 0.45]  # best at the 5th evaluation
    decay = 0.8
    runs = []
    for ema in (None, decay):
        model = LinearTrainable(table, dropout=0.0, scripted_metrics=metrics)
        config = TrainConfig(max_steps=6, eval_every=1, log_every=1, metric="scripted", lr=0.1, ema_decay=ema)
        runs.append((model, train(model, train_ex, dev_ex, config, CPU, progress=False)))
    (plain, plain_result), (averaged, averaged_result) = runs
    assert [h.train_loss for h in averaged_result.history] == [h.train_loss for h in plain_result.history]

    expected = tensors_of(LinearTrainable(table, dropout=0.0))  # the start
    for step, trained in enumerate(plain.snapshots, start=1):  # tensors after each step
        weight = 1 - min(decay, (1 + step) / (10 + step))
        expected = {k: v + weight * (trained[k] - v) for k, v in expected.items()}
        for name, tensor in averaged.snapshots[step - 1].items():
            torch.testing.assert_close(tensor, expected[name], rtol=1e-6, atol=1e-7)
        if step == 5:
            kept = expected
    assert averaged_result.best_step == 5
    for name, tensor in tensors_of(averaged).items():
        torch.testing.assert_close(tensor, kept[name], rtol=1e-6, atol=1e-7)
        assert not torch.allclose(tensor, plain.snapshots[4][name])  # not the step-5 tensors themselves


def test_weight_average_without_dev_is_the_result():
    train_ex, _, table = _data()
    got = []
    for ema in (None, 0.5):
        model = LinearTrainable(table, dropout=0.0)
        train(model, train_ex, [], TrainConfig(max_steps=5, lr=0.1, ema_decay=ema), CPU, progress=False)
        got.append(tensors_of(model))
    assert not torch.allclose(got[0]["head.weight"], got[1]["head.weight"])


def test_the_trainable_comes_back_in_eval_mode():
    """What follows training evaluates (e.g. WiSE-FT's interpolated dev score): dropout must be off."""
    train_ex, dev_ex, table = _data()
    for dev in (dev_ex, []):
        model = LinearTrainable(table, dropout=0.5)
        train(model, train_ex, dev, TrainConfig(max_steps=3, eval_every=1, lr=0.1), CPU, progress=False)
        assert model.training is False


def test_a_run_that_reaches_its_last_step_did_not_stop_early():
    train_ex, dev_ex, table = _data()
    model = LinearTrainable(table, scripted_metrics=[0.9, 0.5])
    config = TrainConfig(max_steps=4, eval_every=2, early_stopping_patience=1, metric="scripted", lr=0.1)
    result = train(model, train_ex, dev_ex, config, CPU, progress=False)
    assert (result.final_step, result.stopped, result.best_step) == (4, "max_steps", 2)
