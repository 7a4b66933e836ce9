from rich.console import Console

from tasktune.cli.main import main
from tasktune.cli.report_cmd import print_comparison
from tasktune.evaluation.compare import summarise
from tasktune.evaluation.recommend import recommend
from tests.evaluation.synthetic import standard_run, write_run


def test_report_command_prints_table_and_recommendation_and_writes_files(tmp_path, capsys):
    run = write_run(tmp_path / "run", standard_run(), constraints={"max_latency_ms": 35})
    assert main(["report", str(run)]) == 0
    out = capsys.readouterr().out
    for text in ("finetune_head", "prompt_tuning", "prompting", "majority", "recommendation", "11,520"):
        assert text in out, text
    assert "Recommended: prompt_tuning on tiny-llama (few)" in " ".join(out.split())
    assert (run / "report" / "report.html").is_file() and (run / "report" / "report.md").is_file()


def test_report_out_option(tmp_path, capsys):
    run = write_run(tmp_path / "run", standard_run())
    assert main(["report", str(run), "--out", str(tmp_path / "elsewhere")]) == 0
    assert (tmp_path / "elsewhere" / "summary.json").is_file()
    assert not (run / "report").exists()


def test_report_on_a_folder_without_results_is_one_clear_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "no results to report" in err and "Traceback" not in err


def test_print_comparison_marks_the_recommendation_and_shows_warnings():
    comparison = summarise(standard_run())
    console = Console(record=True, width=140)
    print_comparison(comparison, recommend(comparison, {"max_latency_ms": 1}), console=console)
    text = console.export_text()
    assert "recommendation (with a warning)" in text and "no cell meets the constraints" in text
    assert "p vs best" in text and "▼" in text  # rows significantly below the best are marked


def test_a_macro_f1_run_shows_its_ci_next_to_macro_f1_and_says_so(tmp_path):
    from tasktune.report.table import columns

    comparison = summarise(standard_run(n=60, seeds=(13,)), metric="macro_f1")
    cols = columns("macro_f1")
    assert cols.index("95% CI") == cols.index("macro-F1 %") + 1
    assert columns("accuracy").index("95% CI") == columns("accuracy").index("accuracy %") + 1
    console = Console(record=True, width=200)
    print_comparison(comparison, recommend(comparison, None), console=console)
    text = " ".join(console.export_text().split())
    # The terminal legend was always accuracy's, under a CI column of macro-F1 figures.
    assert "95% CI: of the seed-averaged macro-F1" in text and "paired bootstrap of the macro-F1" in text


def test_brackets_in_a_run_folder_print_as_written(tmp_path, capsys):
    run = write_run(tmp_path / "[exp1] [/b]", standard_run())
    assert main(["report", str(run)]) == 0  # "[/b]" raised MarkupError after the files were written
    out = " ".join(capsys.readouterr().out.split())
    assert "[exp1] [/b]: test accuracy" in out and "[exp1] [/b]/report/report.html" in out


def test_an_error_quoting_brackets_is_printed_not_a_traceback(tmp_path, capsys):
    folder = tmp_path / "runs [/b]"
    folder.mkdir(parents=True)
    assert main(["report", str(folder)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "no results to report" in err and "runs [/b]" in err and "Traceback" not in err
