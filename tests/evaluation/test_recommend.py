import copy

import pytest

from tasktune.evaluation.compare import summarise
from tasktune.evaluation.comparison import Comparison, cell_key
from tasktune.evaluation.recommend import labelled_examples_for, recommend
from tasktune.task.spec import Constraints
from tests.evaluation.synthetic import correctness, make_result, standard_run

BEST = cell_key("finetune_head", "tiny-llama", "few")
PT = cell_key("prompt_tuning", "tiny-llama", "few")
PROMPTING = cell_key("prompting", "tiny-llama", "few")


@pytest.fixture(scope="module")
def standard() -> Comparison:
    return summarise(standard_run())


def three_routes() -> Comparison:
    """Best A; B cheapest but slow; C in between. Neither B nor C is significantly below A."""
    n = 100
    return summarise(
        [
            make_result("finetune_head", "tiny-llama", correctness(n, range(10)), trainable=1_000_000,
                        artifact=4_000_000, latency=(10.0, 12.0)),
            make_result("prompt_tuning", "tiny-llama", correctness(n, range(1, 12)), trainable=10_000,
                        artifact=40_000, latency=(100.0, 120.0)),
            make_result("lora", "tiny-llama", correctness(n, range(2, 13)), trainable=100_000,
                        artifact=400_000, latency=(20.0, 25.0)),
        ]
    )  # fmt: skip


def test_cheapest_not_significantly_below_best_is_recommended(standard):
    rec = recommend(standard, None)
    assert rec.status == "ok" and rec.choice == PT
    assert set(rec.candidates) == {BEST, PT}
    # prompting is cheaper (no trainable parameters) but significantly below the best: not chosen.
    assert PROMPTING in rec.below_best and rec.choice != PROMPTING
    text = rec.reasons
    assert "within 1.0 points" in text and "McNemar clustered by example p=0.75" in text
    assert "on 200 examples × 2 shared seeds" in text and "Holm-adjusted" in text
    assert "1/12,000 of the trainable parameters" in text and "46.1 KB per task" in text
    assert "majority baseline scores 50.0 %" in text


def test_a_constraint_excludes_the_otherwise_cheapest_cell():
    comparison = three_routes()
    assert recommend(comparison, None).choice == cell_key("prompt_tuning", "tiny-llama", "few")
    rec = recommend(comparison, {"max_latency_ms": 50})
    assert rec.choice == cell_key("lora", "tiny-llama", "few")
    assert [e.cell for e in rec.excluded] == [cell_key("prompt_tuning", "tiny-llama", "few")]
    assert "1 cell is ruled out by max_latency_ms=50" in rec.reasons
    assert "latency p50 100 ms" in rec.reasons


def test_parameter_and_artifact_limits():
    comparison = three_routes()
    rec = recommend(comparison, {"max_trainable_params": 50_000, "max_artifact_bytes": 10_000})
    assert rec.status == "constraints_unmet"
    rec = recommend(comparison, {"max_trainable_params": 500_000})
    assert rec.choice == cell_key("prompt_tuning", "tiny-llama", "few")
    assert [e.cell for e in rec.excluded] == [cell_key("finetune_head", "tiny-llama", "few")]


def test_nothing_meets_the_constraints_recommends_best_with_a_warning(standard):
    rec = recommend(standard, Constraints(max_latency_ms=1))
    assert rec.status == "constraints_unmet" and rec.choice == BEST
    assert rec.warning and "no cell meets the constraints" in rec.warning
    for route, latency in (("finetune_head", "40.0"), ("prompt_tuning", "30.0"), ("prompting", "25.0")):
        assert f"{route} on tiny-llama (few): latency p50 {latency} ms > max_latency_ms=1" in rec.reasons
    assert "majority" not in [e.cell.split("|")[0] for e in rec.excluded]  # the baseline is not a candidate


def test_when_every_feasible_cell_is_below_the_best_the_most_accurate_feasible_one_is_chosen(standard):
    rec = recommend(standard, {"max_trainable_params": 1_000})  # only prompting is left
    assert rec.status == "ok" and rec.choice == PROMPTING
    assert rec.warning and "significantly below the best" in rec.warning


def test_unmeasured_latency_does_not_meet_a_latency_limit():
    comparison = summarise(
        [
            make_result("prompting", "tiny-llama", correctness(50, [1]), latency=None),
            make_result(
                "prompt_tuning", "tiny-llama", correctness(50, [1, 2]), latency=(3.0, 4.0), trainable=9
            ),
        ]
    )
    rec = recommend(comparison, {"max_latency_ms": 10})
    assert rec.choice == cell_key("prompt_tuning", "tiny-llama", "few")
    assert rec.excluded[0].reasons == ("latency not measured (max_latency_ms=10)",)


def test_label_budget_uses_zero_for_zero_shot_and_the_protocol_count_elsewhere():
    n = 40
    comparison = summarise(
        [
            make_result("prompt_tuning", "tiny-llama", correctness(n, []), protocol="few", trainable=10),
            make_result("prompting", "tiny-llama", correctness(n, [0]), protocol="zero"),
        ]
    )
    assert recommend(comparison, None).choice == cell_key("prompting", "tiny-llama", "zero")
    rec = recommend(comparison, {"label_budget": 20}, protocol_label_count=labelled_examples_for("few", 2))
    assert rec.choice == cell_key("prompting", "tiny-llama", "zero")
    rec = recommend(comparison, {"label_budget": 20}, protocol_label_count={"few": 64})
    few_excluded = [e for e in rec.excluded if e.cell.endswith("|few")]
    assert few_excluded and "64 labelled examples > label_budget=20" in few_excluded[0].reasons
    unknown = recommend(comparison, {"label_budget": 20}, protocol_label_count=None)
    assert "label budget was not checked for protocol few" in unknown.reasons


def test_labelled_examples_per_protocol():
    assert labelled_examples_for("zero", 4) == 0
    assert labelled_examples_for("few", 4, k=16) == 128
    assert labelled_examples_for("full", 4) is None
    assert labelled_examples_for("full", 4, train_size=5000) == 5000


def test_single_cell_is_recommended():
    comparison = summarise([make_result("prompting", "tiny-llama", correctness(30, [0, 1]))])
    rec = recommend(comparison, None)
    assert rec.status == "ok" and rec.choice == cell_key("prompting", "tiny-llama", "few")
    assert "most accurate cell" in rec.reasons
    # Not "every cheaper cell ... is significantly below it": there is none.
    assert "no other route both meets the constraints and beats the majority baseline" in rec.reasons
    assert "significantly below" not in rec.reasons


def test_majority_baseline_is_never_recommended_nor_a_route_at_or_below_it():
    n = 100
    baseline = make_result("majority", None, [i % 2 == 0 for i in range(n)])  # 50 %
    below = make_result("prompting", "tiny-llama", [i % 2 == 0 and i > 2 for i in range(n)])  # 48 %
    comparison = summarise([baseline, below])
    # The baseline is the most accurate cell and the cheapest; prompting is cheap and not significantly
    # below it, but a route no better than the baseline is not worth recommending.
    assert comparison.best_cell.route == "majority"
    rec = recommend(comparison, None)
    assert rec.choice is None and rec.status == "baseline_only"
    assert "above the majority baseline" in rec.reasons

    above = make_result("lora", "tiny-llama", [i % 2 == 0 or i < 5 for i in range(n)])  # 52 %
    rec = recommend(summarise([baseline, below, above]), None)
    assert rec.choice == cell_key("lora", "tiny-llama", "few")
    only_baseline = recommend(summarise([make_result("majority", None, [True, False])]), None)
    assert only_baseline.status == "baseline_only" and only_baseline.choice is None


def test_no_results_at_all():
    comparison = summarise(
        [make_result("lora", "tiny-llama", [])], failures=[("lora--tiny--few--s13", "boom")]
    )
    rec = recommend(comparison, None)
    assert rec.status == "no_results" and rec.choice is None
    assert "nothing to recommend" in rec.reasons and "lora--tiny--few--s13" in rec.reasons


def test_recommend_is_a_pure_function_of_comparison_and_constraints(standard):
    before = copy.deepcopy(standard)
    first = recommend(standard, {"max_latency_ms": 35})
    assert recommend(standard, {"max_latency_ms": 35}) == first
    assert recommend(Comparison.from_dict(standard.to_dict()), Constraints(max_latency_ms=35)) == first
    assert standard == before  # the input is left as it was
    assert recommend(standard, {"max_latency_ms": 45}) != first  # and the constraints do matter


def test_unknown_constraint_is_an_error(standard):
    with pytest.raises(ValueError, match="max_latency"):
        recommend(standard, {"max_latancy_ms": 3})


def test_a_feasible_cell_never_compared_is_not_called_significantly_below():
    n = 100
    comparison = summarise(
        [
            make_result("finetune_head", "tiny-llama", correctness(n, range(5)), trainable=1_000_000),
            make_result("lora", "tiny-llama", correctness(n, range(8)), trainable=100_000),
            make_result("prompt_tuning", "tiny-llama", correctness(n, range(10)), trainable=10_000,
                        data_hash="old"),
        ]
    )  # fmt: skip
    rec = recommend(comparison, Constraints(max_trainable_params=50_000))
    assert (
        rec.choice == PT
        and rec.warning == "no cell that meets the constraints was scored on the best cell's test rows"
    )
    assert "significantly below" not in rec.reasons and "not compared with it" in rec.reasons
    assert "()" not in rec.reasons


def test_the_best_alone_among_cells_below_it_or_on_other_rows_says_so():
    results = [
        make_result("finetune_head", "tiny-llama", correctness(60, [0])),
        make_result("prompting", "tiny-llama", correctness(60, range(30))),  # significantly below
        make_result("prompt_tuning", "tiny-llama", correctness(20, []), rows=range(500, 520)),  # other rows
    ]
    rec = recommend(summarise(results), None)
    assert rec.choice == cell_key("finetune_head", "tiny-llama", "few")
    assert "significantly below it or was scored on other test rows." in rec.reasons
