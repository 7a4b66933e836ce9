"""The report's figures plot the task's metric, the one the cells are ranked and tested on."""

import pytest
from matplotlib.axes import Axes

from tasktune.evaluation.compare import summarise
from tasktune.evaluation.comparison import cell_key
from tasktune.report.figures import all_figures
from tests.evaluation.synthetic import correctness, make_result


def _three_class_cells():
    """'lumpy' misses all of class c (accuracy 66.7 %, macro-F1 55.6 %); 'even' misses 37 rows of each
    class (63.0 % both): ranked by macro-F1, 'even' is best."""
    labels = ("a", "b", "c")
    n = 300
    curve = [{"step": 4, "train_loss": 0.5, "dev": {"accuracy": 0.9, "macro_f1": 0.4}, "lr": 0.01}]
    shared = {"labels": labels, "curve": curve, "trainable": 10}
    return [
        make_result("lumpy", "tiny-llama", correctness(n, [i for i in range(n) if i % 3 == 2]), **shared),
        make_result("even", "tiny-llama", correctness(n, range(111)), **shared),
    ]


def _bar_widths(monkeypatch, comparison):
    widths = []
    original = Axes.barh

    def record(self, y, width, *args, **kwargs):
        widths.append(width)
        return original(self, y, width, *args, **kwargs)

    monkeypatch.setattr(Axes, "barh", record)
    main, _ = all_figures(comparison, None)
    return main, widths


def test_macro_f1_task_figures_plot_macro_f1(monkeypatch):
    comparison = summarise(_three_class_cells(), metric="macro_f1")
    lumpy = comparison.cell(cell_key("lumpy", "tiny-llama", "few"))
    assert lumpy.score_per_seed("macro_f1") == pytest.approx((5 / 9,))
    main, widths = _bar_widths(monkeypatch, comparison)
    # Best first: 'even' (63.0) then 'lumpy' at its macro-F1 (55.6), not its accuracy (66.7).
    assert widths == pytest.approx([63.0, 500 / 9])
    titles = {f.id: f for f in main}
    assert titles["accuracy-bars"].title == "Macro-F1 per cell"
    assert "paired bootstrap" in titles["accuracy-bars"].caption
    assert titles["pareto-params"].title == "Macro-F1 vs trainable parameters"
    assert "Dev macro-F1" in titles["learning-curves"].caption
    assert lumpy.learning_curves[0].points[0].dev_macro_f1 == pytest.approx(0.4)


def test_accuracy_task_figures_plot_accuracy(monkeypatch):
    comparison = summarise(_three_class_cells())
    main, widths = _bar_widths(monkeypatch, comparison)
    assert widths == pytest.approx([200 / 3, 63.0])
    bars = next(f for f in main if f.id == "accuracy-bars")
    assert bars.title == "Accuracy per cell" and "McNemar" in bars.caption


def test_curves_logged_before_dev_macro_f1_show_dev_accuracy(monkeypatch):
    results = _three_class_cells()
    for r in results:
        for point in r.info.route_config["learning_curve"]:
            point["dev"] = {"accuracy": point["dev"]["accuracy"]}
    main, _ = all_figures(summarise(results, metric="macro_f1"), None)
    curves = next(f for f in main if f.id == "learning-curves")
    assert "Dev accuracy" in curves.caption


def test_the_pareto_front_keeps_ties_and_drops_the_dominated():
    from tasktune.report.figures import _pareto_front

    points = [(0.0, 80.0, "prompting"), (1e6, 85.0, "lora-a"), (1e6, 85.0, "lora-b"), (1e6, 84.0, "lora-c")]
    points += [(0.0, 70.0, "prompting-small"), (1e8, 85.0, "full")]
    assert _pareto_front(points) == ["prompting", "lora-a", "lora-b"]


def test_a_macro_f1_tables_legend_names_the_ci_it_shows():
    from tasktune.report.table import table_legend

    assert "seed-averaged accuracy" in table_legend("accuracy")
    legend = table_legend("macro_f1")
    assert "95% CI: of the seed-averaged macro-F1" in legend and "seed-averaged accuracy" not in legend


def test_user_text_in_figures_keeps_its_backslashes_and_dollars_literal():
    from matplotlib.text import Text

    from tasktune.report.figures import plain

    for text in ("C:\\data", "a\\$b", "costs $5 and $6", "x_1^2 \\alpha"):
        assert Text(0, 0, "")._preprocess_math(plain(text)) == (text, False), text  # was "C:\\\\data"


def test_labels_no_installed_font_draws_get_a_note_and_the_rest_do_not():
    from tasktune.evaluation.compare import summarise
    from tasktune.evaluation.recommend import recommend
    from tasktune.report.figures import undrawable
    from tasktune.report.model import ReportData
    from tests.evaluation.synthetic import correctness, make_result

    # U+E123 is private use: no font draws it; DejaVu Sans (always there) draws Latin with accents.
    assert undrawable(["positive", "négatif", "x\ue123", " "]) == ["x\ue123"]

    def notes(labels):
        comparison = summarise([make_result("prompting", "tiny-llama", correctness(20, [0]), labels=labels)])
        data = ReportData("t", "few", "test", labels, {}, comparison, recommend(comparison), None, 1)
        return [n for n in data.notes if "no installed font" in n]

    assert notes(("négatif", "positif")) == []
    assert len(notes(("neg\ue123", "pos"))) == 1
