import numpy as np
import pytest
from scipy import stats

from tasktune.evaluation.compare import summarise
from tasktune.evaluation.comparison import Comparison, cell_key
from tasktune.evaluation.metrics import bootstrap_ci
from tasktune.evaluation.significance import holm_adjust
from tests.evaluation.synthetic import correctness, curve, make_result, standard_run

BEST = cell_key("finetune_head", "tiny-llama", "few")
PT = cell_key("prompt_tuning", "tiny-llama", "few")
PROMPTING = cell_key("prompting", "tiny-llama", "few")


def test_one_cell_per_route_backbone_protocol_sorted_by_accuracy():
    comparison = summarise(standard_run())
    assert [c.key for c in comparison.cells] == [BEST, PT, PROMPTING, cell_key("majority", None, "few")]
    assert comparison.best == BEST
    assert all(c.seeds == (13, 21) for c in comparison.cells)
    assert comparison.cell(PT).accuracy_mean == pytest.approx(0.89)  # fractions, not percent


def test_mean_std_over_seeds_and_ci_over_seed_averaged_rows():
    n = 100
    results = [
        make_result("prompting", "tiny-llama", correctness(n, range(10)), seed=13),
        make_result("prompting", "tiny-llama", correctness(n, range(20)), seed=21),
        make_result("prompting", "tiny-llama", correctness(n, range(30)), seed=42),
    ]
    cell = summarise(results).cells[0]
    assert cell.accuracy_per_seed == pytest.approx((0.9, 0.8, 0.7))
    assert cell.accuracy_mean == pytest.approx(0.8)
    assert cell.accuracy_std == pytest.approx(0.1)  # sample std, ddof=1
    lo, hi = cell.accuracy_ci95
    assert lo < cell.accuracy_mean < hi
    per_row = np.array([np.mean([i >= 10, i >= 20, i >= 30]) for i in range(n)])
    assert (lo, hi) == bootstrap_ci(per_row, seed=0)
    assert cell.confusion_seed == 13  # the most accurate seed
    assert sum(map(sum, cell.confusion)) == n


def test_single_seed_has_no_std():
    cell = summarise([make_result("prompting", "tiny-llama", correctness(50, [1]))]).cells[0]
    assert cell.accuracy_std is None and cell.seeds == (13,)


def test_mcnemar_against_best_on_seed_row_pairs_with_known_p_values():
    comparison = summarise(standard_run())
    pt = comparison.cell(PT).versus_best
    assert pt.pairing == "seed_row" and pt.paired_seeds == (13, 21) and pt.n == 400
    assert (pt.best_only, pt.this_only) == (12, 8)
    # Clustered by row: the two seeds agree on every row, so 6 rows vs 4, as with one seed (pooling the
    # (seed, row) pairs gave 12 vs 8, p = 0.50: a seed counted as new evidence).
    assert pt.test == "mcnemar_clustered"
    assert pt.p_value == pytest.approx(2 * stats.binom.cdf(4, 10, 0.5))
    assert not pt.significantly_below
    prompting = comparison.cell(PROMPTING).versus_best
    assert prompting.significantly_below and prompting.best_only == 80 and prompting.this_only == 0
    assert comparison.cell(BEST).versus_best is None


def test_holm_adjustment_can_turn_a_raw_significant_p_into_not_significant():
    # Two cells each with 10 rows only the best gets right and 2 the other way: raw McNemar p = 0.0386.
    n = 100
    best_wrong = range(0, 2)
    results = [make_result("finetune_head", "tiny-llama", correctness(n, best_wrong))]
    for route in ("prompting", "prompt_tuning"):
        results.append(make_result(route, "tiny-llama", correctness(n, range(2, 12))))
    comparison = summarise(results)
    others = [c for c in comparison.cells if c.key != comparison.best]
    raw = [c.versus_best.p_value for c in others]
    assert raw == pytest.approx([2 * 79 / 4096] * 2)
    assert all(p < 0.05 for p in raw)
    assert [c.versus_best.p_holm for c in others] == pytest.approx(holm_adjust(raw))
    assert all(c.versus_best.p_holm > 0.05 and not c.versus_best.significantly_below for c in others)


def test_cells_without_shared_seeds_pair_on_majority_over_seeds():
    n = 60
    zero = make_result("prompting", "tiny-llama", correctness(n, range(30)), protocol="zero", seed=13)
    few = [
        make_result("prompt_tuning", "tiny-llama", correctness(n, range(5)), seed=21),
        make_result("prompt_tuning", "tiny-llama", correctness(n, range(3, 8)), seed=42),
        make_result("prompt_tuning", "tiny-llama", correctness(n, range(6)), seed=87),
    ]
    comparison = summarise([zero, *few])
    vb = comparison.cell(cell_key("prompting", "tiny-llama", "zero")).versus_best
    assert vb.pairing == "majority_row" and vb.paired_seeds == () and vb.n == n
    # Majority over the three seeds is wrong on rows 0-5 (each wrong in at least two seeds), right on 6-7.
    assert vb.this_only == 0 and vb.best_only == 30 - 6


def test_majority_tie_is_broken_by_seed_averaged_probabilities():
    n = 10
    few = [
        make_result("prompt_tuning", "tiny-llama", correctness(n, [0]), seed=21),
        make_result("prompt_tuning", "tiny-llama", correctness(n, []), seed=42),
    ]
    zero = make_result("prompting", "tiny-llama", correctness(n, range(5)), protocol="zero", seed=13)
    vb = summarise([*few, zero]).cell(cell_key("prompting", "tiny-llama", "zero")).versus_best
    # Row 0: one seed right, one wrong; the averaged probs are 0.5/0.5 and argmax picks label 0, row 0's
    # label, so the tie counts as right (counting ties as wrong would give best_only == 4).
    assert vb.best_only == 5 and vb.n == n


def test_cells_on_different_test_rows_are_not_compared():
    n = 50
    results = [
        make_result("finetune_head", "tiny-llama", correctness(n, [])),
        make_result("prompting", "tiny-llama", correctness(n, range(20))),
        make_result("prompt_tuning", "tiny-llama", correctness(n, []), data_hash="other", split="test2"),
    ]
    comparison = summarise(results)
    other = comparison.cell(cell_key("prompt_tuning", "tiny-llama", "few"))
    assert not other.comparable and other.versus_best is None
    assert any("not compared" in note and "prompt_tuning" in note for note in comparison.notes)
    assert comparison.cell(cell_key("prompting", "tiny-llama", "few")).versus_best.significantly_below


def test_costs_learning_curves_and_missing_latency():
    results = [
        make_result("prompt_tuning", "tiny-llama", correctness(20, []), seed=13, fit_seconds=10, trainable=7,
                    artifact=28, latency=(4.0, 6.0), curve=curve(3)),
        make_result("prompt_tuning", "tiny-llama", correctness(20, []), seed=21, fit_seconds=30, trainable=7,
                    artifact=28, latency=None),
    ]  # fmt: skip
    cell = summarise(results).cells[0]
    assert cell.cost.fit_seconds == 20 and cell.cost.trainable_parameters == 7
    assert cell.cost.latency_p50_ms == 4.0 and cell.cost.latency_p95_ms == 6.0  # from the seed that measured
    assert [lc.seed for lc in cell.learning_curves] == [13]
    assert [p.step for p in cell.learning_curves[0].points] == [10, 20, 30]
    assert cell.learning_curves[0].points[1].dev_accuracy == pytest.approx(0.6)
    no_latency = summarise([make_result("prompting", "tiny-llama", [True, False], latency=None)]).cells[0]
    assert no_latency.cost.latency_p50_ms is None


def test_results_without_records_and_failures_are_reported_not_summarised():
    empty = make_result("prompting", "tiny-llama", [])
    comparison = summarise([empty], failures=[("lora--x--few--s13", "CUDA out of memory")])
    assert comparison.cells == () and comparison.best is None
    assert comparison.empty == (cell_key("prompting", "tiny-llama", "few"),)
    assert comparison.failed == (("lora--x--few--s13", "CUDA out of memory"),)


def test_deterministic_independent_of_input_order_and_round_trips():
    results = standard_run()
    a = summarise(results)
    b = summarise(list(reversed(results)))
    assert a == b
    assert Comparison.from_dict(a.to_dict()) == a


def _errors_concentrated_vs_spread():
    """Three balanced classes, 100 rows each. 'lumpy' gets all of class 2 wrong (accuracy 66.7 %,
    macro-F1 55.6 %); 'even' gets 37 rows of each class wrong (accuracy 63 %, macro-F1 63 %)."""
    labels = ("a", "b", "c")
    n = 300
    lumpy = correctness(n, [i for i in range(n) if i % 3 == 2])
    even = correctness(n, [i for i in range(n) if i < 111])
    return [
        make_result("lumpy", "tiny-llama", lumpy, labels=labels),
        make_result("even", "tiny-llama", even, labels=labels),
    ]


def test_the_task_metric_ranks_and_tests_the_cells():
    results = _errors_concentrated_vs_spread()
    by_acc = summarise(results)
    by_f1 = summarise(results, metric="macro_f1")
    assert by_acc.best_cell.route == "lumpy" and by_f1.best_cell.route == "even"
    assert by_f1.metric == "macro_f1"
    lumpy = by_f1.cell(cell_key("lumpy", "tiny-llama", "few"))
    assert lumpy.macro_f1_mean == pytest.approx(5 / 9, abs=1e-6)
    lo, hi = lumpy.score_ci("macro_f1")
    # Resampled within each class: every class right or wrong as a whole leaves nothing to vary.
    assert lo <= 5 / 9 + 1e-12 and hi >= 5 / 9 - 1e-12 and lumpy.score_ci("accuracy") == lumpy.accuracy_ci95
    vb = lumpy.versus_best
    assert vb.test == "paired_bootstrap" and vb.difference == pytest.approx(
        by_f1.best_cell.macro_f1_mean - lumpy.macro_f1_mean
    )
    assert vb.significantly_below and vb.p_holm < 0.05
    # Under accuracy the same pair is tested by McNemar, and 'even' is the one below.
    assert by_acc.cell(cell_key("even", "tiny-llama", "few")).versus_best.test == "mcnemar"
    again = Comparison.from_dict(by_f1.to_dict())
    assert again == by_f1


def test_recommendation_speaks_in_the_task_metric():
    from tasktune.evaluation.recommend import recommend

    rec = recommend(summarise(_errors_concentrated_vs_spread(), metric="macro_f1"))
    assert rec.choice == cell_key("even", "tiny-llama", "few")
    assert "63.0 % macro-F1 (95 % CI" in rec.reasons and "the best cell by macro-F1" in rec.reasons
    assert "lumpy on tiny-llama (few) (-7.4 points" in rec.reasons  # significantly below, in F1 points


def test_a_leftover_result_on_other_test_rows_is_never_the_best():
    """An older, higher result on a test file since edited must not become the best cell that the
    current cells (which it cannot be paired with) are measured against."""
    n = 50
    old = make_result(
        "lora", "tiny-llama", correctness(n, []), data_hash="old", created="2026-01-01T00:00:00"
    )
    current = [
        make_result("prompting", "tiny-llama", correctness(n, range(10)), created="2026-02-01T00:00:00"),
        make_result("prompt_tuning", "tiny-llama", correctness(n, range(5)), created="2026-02-01T00:00:00"),
    ]
    comparison = summarise([old, *current])
    assert comparison.best == cell_key("prompt_tuning", "tiny-llama", "few")
    assert not comparison.cell(cell_key("lora", "tiny-llama", "few")).comparable
    assert comparison.cell(cell_key("prompting", "tiny-llama", "few")).versus_best is not None
    # One cell on each of two test files: the newest result's rows are the comparison's.
    pair = summarise([old, current[0]])
    assert pair.best == cell_key("prompting", "tiny-llama", "few")


def test_a_macro_f1_interval_brackets_its_estimate_with_rare_classes_and_the_figure_draws():
    """Two common classes and 12 single-example ones, all rare ones right: a plain row bootstrap
    dropped rare classes from most resamples, and the 95 % interval ended below the estimate
    (0.957 outside 0.899-0.956), which also made matplotlib refuse the error bar and sank the report."""
    from tasktune.evaluation.metrics import compute_metrics
    from tasktune.evaluation.results import Record
    from tasktune.report.figures import accuracy_bars

    classes = 14
    y = np.array([0] * 100 + [1] * 100 + list(range(2, classes)))

    def result(route, wrong):
        r = make_result(route, "tiny-bert", [True] * len(y), labels=[f"l{i}" for i in range(classes)])
        pred = y.copy()
        pred[wrong] = 1 - pred[wrong]
        probs = np.full((len(y), classes), 0.2 / (classes - 1))
        probs[np.arange(len(y)), pred] = 0.8
        records = [
            Record(row=i, label=int(y[i]), pred=int(pred[i]), probs=probs[i].tolist()) for i in range(len(y))
        ]
        return r.model_copy(update={"records": records, "metrics": compute_metrics(y, probs).to_dict()})

    comparison = summarise(
        [result("lora", np.r_[0:30, 100:130]), result("head", np.r_[0:35, 100:135])], metric="macro_f1"
    )
    for cell in comparison.cells:
        lo, hi = cell.macro_f1_ci95
        assert lo <= cell.macro_f1_mean <= hi, (cell.key, cell.macro_f1_mean, lo, hi)
    assert accuracy_bars(comparison, None).svg


def test_seeds_that_share_no_test_row_leave_the_cell_out_instead_of_a_nan_best():
    a = make_result("lora", "tiny-bert", [True] * 10, seed=13, rows=range(0, 10))
    b = make_result("lora", "tiny-bert", [True] * 10, seed=21, rows=range(10, 20))
    other = make_result("prompting", "tiny-bert", [True] * 5 + [False] * 5, seed=13)
    comparison = summarise([a, b, other])
    # Was a cell of accuracy NaN on 0 rows, sorted anywhere and recommended as "- ± - %".
    assert [c.route for c in comparison.cells] == ["prompting"] and comparison.best_cell.route == "prompting"
    assert comparison.empty == (cell_key("lora", "tiny-bert", "few"),)
    assert any("share no test row" in n for n in comparison.notes)
