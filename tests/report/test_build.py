import json
import re
import shutil

import pytest

from tasktune.errors import TaskTuneError
from tasktune.evaluation.comparison import Comparison, cell_key
from tasktune.evaluation.recommend import recommend
from tasktune.report import build_report
from tests.evaluation.synthetic import correctness, make_result, write_run

FIGURE_IDS = ("pareto-params", "pareto-latency", "accuracy-bars", "learning-curves")


def test_writes_markdown_html_summary_and_figures(built, standard_run_dir):
    assert built.out_dir == standard_run_dir / "report"
    for path in (built.markdown, built.html, built.summary, *built.figures):
        assert path.is_file() and path.stat().st_size > 0
    assert {p.stem for p in built.figures} >= set(FIGURE_IDS)
    assert sum(p.stem.startswith("confusion-") for p in built.figures) == 4
    # The latency limit (35 ms) rules out finetune_head (40 ms); prompt_tuning (30 ms) is recommended.
    assert built.recommendation.choice == cell_key("prompt_tuning", "tiny-llama", "few")


def test_html_has_the_elements_with_stable_ids(built):
    html = built.html.read_text(encoding="utf-8")
    for element_id in (*FIGURE_IDS, "results-table", "recommendation"):
        assert html.count(f'id="{element_id}"') == 1, element_id
    for element_id in FIGURE_IDS:
        assert re.search(rf'<svg id="{element_id}"', html), element_id
    table = html[html.index('id="results-table"') :]
    table = table[: table.index("</table>")]
    assert table.count("<tr") == 1 + 4  # header + one row per cell
    assert 'class="best"' in table and 'class="recommended"' in table and "below" in table
    assert "538 MB" in table and "46.1 KB" in table and "11,520" in table


def test_html_is_self_contained(built):
    html = built.html.read_text(encoding="utf-8")
    assert "<script" not in html.lower() and "<link" not in html.lower() and "@import" not in html
    # Every reference the page could load is in-document (#id) or inline data.
    for ref in re.findall(r'(?:src|href)="([^"]*)"', html):
        assert ref.startswith(("#", "data:")), ref
    assert not re.search(r"url\((?!#)", html)


def test_user_strings_are_escaped(built):
    html = built.html.read_text(encoding="utf-8")
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "demo&lt;i&gt;" in html and "<i>" not in html
    assert "$x$ &amp; co" in html
    md = built.markdown.read_text(encoding="utf-8")
    assert "<script>" not in md


def test_inline_svg_ids_are_unique_across_figures(built):
    html = built.html.read_text(encoding="utf-8")
    ids = re.findall(r'\bid="([^"]+)"', html)
    assert len(ids) == len(set(ids))


def test_markdown_lists_every_cell_and_the_recommendation(built):
    md = built.markdown.read_text(encoding="utf-8")
    assert "## Recommendation" in md and built.recommendation.reasons.split(".")[0] in md
    rows = [line for line in md.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 1 + 4
    assert any("**prompt_tuning** ★" in r for r in rows)
    assert "(figures/pareto-params.svg)" in md


def test_summary_json_holds_comparison_and_recommendation(built):
    summary = json.loads(built.summary.read_text(encoding="utf-8"))
    assert summary["recommendation"]["choice"] == built.recommendation.choice
    comparison = Comparison.from_dict(summary["comparison"])
    # The stored comparison alone reproduces the recommendation: recommend() is pure.
    assert recommend(comparison, summary["constraints"], {"few": 64}) == built.recommendation


def test_regenerating_gives_identical_files(built, standard_run_dir):
    md, html, summary = (p.read_bytes() for p in (built.markdown, built.html, built.summary))
    shutil.rmtree(built.out_dir)
    again = build_report(standard_run_dir)
    assert again.markdown.read_bytes() == md
    assert again.html.read_bytes() == html
    assert again.summary.read_bytes() == summary


def test_only_cell_files_are_read_and_bad_ones_are_named(tmp_path):
    run = write_run(tmp_path / "run", [make_result("prompting", "tiny-llama", correctness(20, [0]))])
    (run / "notes.txt").write_text("not a result")
    (run / ".prompting--x--few--s13.json.tmp").write_text("{half")
    (run / "lora--tiny-llama--few--s13.json").write_text("{ not json")
    paths = build_report(run, tmp_path / "out")
    assert paths.out_dir == tmp_path / "out" and len(paths.comparison.cells) == 1
    md = paths.markdown.read_text(encoding="utf-8")
    assert "could not read lora--tiny-llama--few--s13.json" in md
    assert "learning curve" in paths.html.read_text(encoding="utf-8")  # "No trained route logged a ..."


def test_stale_figures_are_removed(tmp_path):
    run = write_run(tmp_path / "run", [make_result("prompting", "tiny-llama", correctness(20, [0]))])
    stale = run / "report" / "figures" / "confusion-old-cell.svg"
    stale.parent.mkdir(parents=True)
    stale.write_text("<svg/>")
    build_report(run)
    assert not stale.exists()


def test_folder_without_results_is_a_clear_error(tmp_path):
    (tmp_path / "run.json").write_text("{}")
    with pytest.raises(TaskTuneError, match="no results to report"):
        build_report(tmp_path)
    with pytest.raises(TaskTuneError, match="not a run folder"):
        build_report(tmp_path / "missing")


def test_failed_cells_passed_by_the_runner_are_listed(tmp_path):
    from types import SimpleNamespace

    run = write_run(tmp_path / "run", [make_result("prompting", "tiny-llama", correctness(20, [0]))])
    failure = SimpleNamespace(cell="lora--tiny-llama--few--s13", error="RuntimeError: out of memory")
    paths = build_report(run, failures=[failure])
    assert paths.comparison.failed == (("lora--tiny-llama--few--s13", "RuntimeError: out of memory"),)
    md = paths.markdown.read_text(encoding="utf-8")
    assert "cell lora--tiny-llama--few--s13 failed: RuntimeError: out of memory" in md
    assert "1 cell failed" in paths.recommendation.reasons
