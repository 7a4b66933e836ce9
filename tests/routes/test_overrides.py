import pytest

from tasktune.errors import TaskTuneError
from tasktune.routes.finetuning.config import default_options as finetune_defaults
from tasktune.routes.overrides import apply_overrides, flatten, load_options_file, merge, parse_set


def test_nested_and_dotted_overrides_replace_only_the_named_fields():
    defaults = finetune_defaults("few", "prompt", "lora", "causal", 13)
    a = apply_overrides(defaults, {"lora": {"r": 16}, "train.lr": 1e-3}, "lora")
    b = apply_overrides(defaults, {"lora.r": 16, "train": {"lr": 1e-3}}, "lora")
    assert a == b
    assert a.lora.r == 16 and a.train.lr == 1e-3
    assert a.lora.alpha == defaults.lora.alpha and a.train.epochs == defaults.train.epochs
    assert apply_overrides(defaults, {}, "lora") is defaults


def test_a_typo_names_the_route_the_option_and_what_exists():
    defaults = finetune_defaults("few", "prompt", "lora", "causal", 13)
    with pytest.raises(
        TaskTuneError, match=r"lora: unknown option 'lora\.rank' \('rank' is not an option of lora"
    ):
        apply_overrides(defaults, {"lora.rank": 16}, "lora")
    with pytest.raises(TaskTuneError, match=r"options there: .*lora.*train"):
        apply_overrides(defaults, {"lerning_rate": 1}, "lora")


def test_a_bad_value_names_the_option_the_value_and_the_rule():
    defaults = finetune_defaults("few", "prompt", "lora", "causal", 13)
    with pytest.raises(TaskTuneError, match=r"lora\.r = 0: Input should be greater than or equal to 1"):
        apply_overrides(defaults, {"lora.r": 0}, "lora")
    with pytest.raises(TaskTuneError, match=r"train\.lr = 'fast'"):
        apply_overrides(defaults, {"train.lr": "fast"}, "lora")


def test_set_strings_read_values_as_yaml_and_later_layers_win(tmp_path):
    parsed = parse_set(
        ["lora.lora.r=16", "lora.lora.target_modules=[q_proj, v_proj]", "prompt_tuning.init=labels"]
    )
    assert parsed == {
        "lora": {"lora.r": 16, "lora.target_modules": ["q_proj", "v_proj"]},
        "prompt_tuning": {"init": "labels"},
    }
    with pytest.raises(TaskTuneError, match=r"expected ROUTE\.OPTION=VALUE"):
        parse_set(["lora=16"])
    f = tmp_path / "opts.yaml"
    f.write_text("lora:\n  lora: {r: 4, alpha: 8}\n")
    assert merge(load_options_file(f), parsed)["lora"] == {
        "lora.r": 16,
        "lora.alpha": 8,
        "lora.target_modules": ["q_proj", "v_proj"],
    }
    f.write_text("- lora\n")
    with pytest.raises(TaskTuneError, match="expected a mapping of route name to its options"):
        load_options_file(f)
    assert flatten({"a": {"b": {"c": 1}}, "d": {}}) == {"a.b.c": 1, "d": {}}


def test_naming_one_of_a_pair_replaces_the_defaults_choice_of_the_other():
    defaults = finetune_defaults("few", "prompt", "lora", "causal", 13)
    assert defaults.train.epochs is not None and defaults.train.warmup_ratio is not None
    options = apply_overrides(defaults, {"train.max_steps": 50, "train.warmup_steps": 5}, "lora")
    assert (options.train.max_steps, options.train.epochs) == (50, None)
    assert (options.train.warmup_steps, options.train.warmup_ratio) == (5, None)
    with pytest.raises(TaskTuneError, match="set exactly one of max_steps and epochs") as err:
        apply_overrides(defaults, {"train.max_steps": 50, "train.epochs": 3}, "lora")
    assert "'lr'" not in str(err.value)  # the message, not a dump of the whole group


def test_what_the_run_sets_itself_is_not_a_setting():
    defaults = finetune_defaults("few", "prompt", "lora", "causal", 13)
    with pytest.raises(TaskTuneError, match=r"train\.seed is not a route setting: .*--seeds"):
        apply_overrides(defaults, {"train.seed": 7}, "lora")
    with pytest.raises(TaskTuneError, match=r"train\.metric is not a route setting"):
        apply_overrides(defaults, {"train": {"metric": "macro_f1"}}, "lora")


def test_one_setting_written_two_ways_is_one_setting_and_a_default_is_none():
    from tasktune.routes.overrides import effective

    defaults = finetune_defaults("few", "prompt", "lora", "causal", 13)
    for written in ("1e-4", 0.0001):
        chosen = apply_overrides(defaults, {"train.lr": written, "lora.r": defaults.lora.r}, "lora")
        assert effective(chosen, defaults, {"train.lr": written, "lora.r": defaults.lora.r}) == {
            "train.lr": 0.0001
        }


def test_a_changed_run_length_keeps_the_defaults_number_of_evaluations():
    """Full-data fine-tuning on 60,000 examples evaluates every 1/8 of the run; max_steps=100 keeps
    eight evaluations (every 12 steps), not one every 234 steps that a 100-step run never reaches."""
    from tasktune.routes import get_route

    route = get_route("finetune_head")
    defaults = route.options("full", 13, 60_000, "encoder", {})
    assert defaults.train.total_steps(60_000) // defaults.train.eval_every == 8
    short = route.options("full", 13, 60_000, "encoder", {"train.max_steps": 100})
    assert short.train.eval_every == 12
    accumulated = route.options("full", 13, 60_000, "encoder", {"train.grad_accum_steps": 4})
    assert accumulated.train.total_steps(60_000) / accumulated.train.eval_every == pytest.approx(8, abs=0.1)
    named = route.options("full", 13, 60_000, "encoder", {"train.max_steps": 100, "train.eval_every": 50})
    assert named.train.eval_every == 50  # the user's own interval is kept
    assert route.options("full", 13, 60_000, "encoder", {"train.lr": 1e-5}).train.eval_every == (
        defaults.train.eval_every
    )


def test_an_eval_every_named_with_a_run_length_is_kept_at_its_default_value():
    """Left out as 'equal to the default', the interval would be rescaled to the new run length at fit
    time: not what the user asked for."""
    from tasktune.routes import get_route
    from tasktune.routes.overrides import effective

    route = get_route("prompt_tuning")
    defaults = route.options("few", 13, 32, "causal", {})
    asked = {"train.max_steps": 1000, "train.eval_every": defaults.train.eval_every}
    kept = effective(route.options("few", 13, 32, "causal", asked), defaults, asked)
    assert kept == asked
    assert route.options("few", 13, 32, "causal", kept).train.eval_every == defaults.train.eval_every
