"""TrainConfig validation and the learning-rate schedules."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from tasktune.training import TrainConfig, TrainConfigError, lr_factor, parse_train_config


def test_bad_values_name_the_field_and_value():
    with pytest.raises(ValidationError) as err:
        TrainConfig(max_steps=10, batch_size=0)
    assert "batch_size" in str(err.value) and "input_value=0" in str(err.value)

    with pytest.raises(TrainConfigError) as err:
        parse_train_config({"max_steps": 5, "optimizer": "sgd", "lr": -1.0, "colour": "red"})
    text = str(err.value)
    assert "'optimizer'" in text and "'sgd'" in text
    assert "'lr'" in text and "-1.0" in text
    assert "unknown field 'colour'" in text


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({}, "exactly one of max_steps and epochs"),
        ({"max_steps": 3, "epochs": 2}, "exactly one of max_steps and epochs"),
        ({"max_steps": 3, "warmup_ratio": 0.1, "warmup_steps": 2}, "at most one of warmup_ratio"),
        ({"max_steps": 3, "early_stopping_patience": 2}, "needs eval_every"),
        ({"max_steps": 3, "lr": float("nan")}, "lr"),
    ],
)
def test_inconsistent_settings_are_refused(fields, needle):
    with pytest.raises(TrainConfigError, match=needle):
        parse_train_config(fields)


def test_valid_config_round_trips_through_json():
    config = TrainConfig(epochs=2, optimizer="adafactor", schedule="cosine", warmup_ratio=0.1)
    assert parse_train_config(config.model_dump(mode="json")) == config
    assert config.warmup_for(50) == 5


def test_linear_schedule_warms_up_then_decays_to_zero():
    f = lambda s: lr_factor(s, total_steps=100, warmup_steps=10, schedule="linear")  # noqa: E731
    assert [f(0), f(5), f(10)] == [0.0, 0.5, 1.0]
    assert f(55) == pytest.approx(0.5)
    assert f(100) == 0.0
    assert all(f(s) > f(s + 1) for s in range(10, 99))  # strictly decreasing after warmup


def test_cosine_ends_near_zero_and_constant_stays_flat():
    f = lambda s: lr_factor(s, total_steps=100, warmup_steps=0, schedule="cosine")  # noqa: E731
    assert f(0) == 1.0 and f(50) == pytest.approx(0.5)
    assert f(99) < 1e-3 and f(100) == 0.0
    assert math.isclose(f(25), 0.5 * (1 + math.cos(math.pi / 4)))
    g = lambda s: lr_factor(s, total_steps=100, warmup_steps=4, schedule="constant")  # noqa: E731
    assert [g(0), g(2), g(4), g(99)] == [0.0, 0.5, 1.0, 1.0]
