from typing import ClassVar

import pytest

from tasktune.routes.base import FitContext
from tasktune.routes.registry import ROUTES
from tasktune.runner import run_matrix
from tasktune.task.spec import load_task


class Boom:
    name = "boom"
    needs_backbone = False

    def fit(self, ctx: FitContext):
        raise RuntimeError("exploded on purpose")


def test_one_failing_cell_does_not_stop_the_others(task_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(ROUTES, "boom", Boom)
    outcome = run_matrix(
        load_task(task_dir / "task.yaml"),
        route_names=["boom", "majority"],
        protocol="few",
        out_dir=tmp_path,
        k=8,
    )
    assert len(outcome.results) == 5  # majority on the 5 few-shot seeds
    assert len(outcome.failures) == 5 and "exploded on purpose" in outcome.failures[0].error
    assert sorted(r.info.seed for r in outcome.results) == [13, 21, 42, 87, 100]


def test_network_guard_blocks_outside_connections():
    import socket

    import pytest

    with pytest.raises(AssertionError, match="network connection"):
        socket.create_connection(("198.51.100.1", 80), timeout=0.1)


class CountingFit:
    """A route that records that it was fitted (so a test can see nothing was trained)."""

    name = "counting"
    needs_backbone = True
    fitted = 0

    def fit(self, ctx: FitContext):
        CountingFit.fitted += 1
        raise AssertionError("must not be reached")


def test_mistakes_fail_before_any_backbone_is_loaded(task_dir, tmp_path, monkeypatch):
    import pytest

    import tasktune.runner as runner
    from tasktune.errors import TaskTuneError

    def no_load(*a, **k):
        raise AssertionError("a backbone was loaded")

    monkeypatch.setattr(runner, "load_backbone", no_load)
    monkeypatch.setitem(ROUTES, "counting", CountingFit)
    spec = load_task(task_dir / "task.yaml")
    common = dict(route_names=["counting"], backbone_names=["smollm2-135m-instruct"], out_dir=tmp_path)
    with pytest.raises(TaskTuneError, match="unknown protocol 'fwe'"):
        run_matrix(spec, protocol="fwe", **common)
    with pytest.raises(TaskTuneError, match=r"class too small.*K=50"):
        run_matrix(spec, protocol="few", k=50, **common)  # 40 per class < 2K
    with pytest.raises(TaskTuneError, match=r"seeds \[-5\]: expected whole numbers >= 0"):
        run_matrix(spec, protocol="few", seeds=[13, -5], **common)
    with pytest.raises(TaskTuneError, match="train limit 0"):
        run_matrix(spec, protocol="full", train_limit=0, **common)
    with pytest.raises(TaskTuneError, match="unknown backbone 'no-such-model'"):
        run_matrix(spec, protocol="full", **{**common, "backbone_names": ["no-such-model"]})
    with pytest.raises(TaskTuneError, match="need a backbone"):
        run_matrix(spec, protocol="full", **{**common, "backbone_names": []})
    assert CountingFit.fitted == 0
    assert not (tmp_path / "run.json").exists()  # nothing written for a run that never started


def test_corrupt_cell_file_is_kept_aside_and_the_cell_reruns(task_dir, tmp_path):
    spec = load_task(task_dir / "task.yaml")
    first = run_matrix(spec, route_names=["majority"], protocol="full", out_dir=tmp_path)
    (cell,) = tmp_path.glob("majority--*.json")
    good = cell.read_text()
    cell.write_text(good[: len(good) // 2])  # a write cut short
    again = run_matrix(spec, route_names=["majority"], protocol="full", out_dir=tmp_path)
    assert again.reused == 0 and len(again.results) == 1 and not again.failures
    assert again.results[0].metrics == first.results[0].metrics
    aside = cell.with_name(cell.name + ".corrupt")
    assert aside.read_text() == good[: len(good) // 2]  # the bad file is not lost
    assert any(cell.name in w and "rerun" in w for w in again.warnings)


def test_imbalance_and_leakage_are_warned_and_recorded(tmp_path):
    import json

    from tests.conftest import make_rows, write_jsonl

    rows = make_rows(40)
    skewed = [r for r in rows if r["label"] == "positive"] + [r for r in rows if r["label"] == "negative"][:8]
    write_jsonl(tmp_path / "train.jsonl", skewed)
    write_jsonl(tmp_path / "test.jsonl", [*skewed[:4], {"text": "fresh one", "label": "negative"}])
    (tmp_path / "task.yaml").write_text(
        "name: skew\nlabels:\n  - name: negative\n  - name: positive\n"
        "data:\n  train: {path: train.jsonl}\n  test: {path: test.jsonl}\n"
    )
    out = run_matrix(
        load_task(tmp_path / "task.yaml"), route_names=["majority"], protocol="full", out_dir=tmp_path / "run"
    )
    assert any("'train' is imbalanced: the most common class is 5.0x" in w for w in out.warnings)
    assert any("4 text(s) of 'test' also appear in 'train'" in w for w in out.warnings)
    assert json.loads((tmp_path / "run" / "run.json").read_text())["warnings"] == out.warnings


def test_a_macro_f1_task_selects_trains_and_compares_on_macro_f1(task_dir, tiny_llama_dir, tmp_path):
    from tasktune.report.build import build_report

    task = task_dir / "task.yaml"
    task.write_text(task.read_text() + "metric: macro_f1\n")
    out = run_matrix(
        load_task(task),
        route_names=["majority", "prompt_tuning"],
        backbone_names=[str(tiny_llama_dir)],
        protocol="few",
        seeds=[13],
        k=8,
        out_dir=tmp_path,
        route_options={"prompt_tuning": {"train.epochs": 2, "init": "labels"}},
    )
    assert not out.failures
    trained = next(r for r in out.results if r.info.route == "prompt_tuning")
    assert trained.info.route_config["selected_on"] == "macro_f1"
    assert set(trained.info.route_config["best_dev"]) == {"accuracy", "macro_f1"}
    comparison = build_report(tmp_path).comparison
    assert comparison.metric == "macro_f1"
    assert comparison.best_cell.score("macro_f1") == max(c.macro_f1_mean for c in comparison.cells)


def test_checkpoints_of_another_run_of_the_cell_are_dropped_and_the_cell_retrained(
    task_dir, tiny_llama_dir, tmp_path, monkeypatch
):
    import tasktune.runner as runner
    from tests.conftest import make_rows, write_jsonl

    def run():
        return run_matrix(
            load_task(task_dir / "task.yaml"),
            route_names=["prompt_tuning"],
            backbone_names=[str(tiny_llama_dir)],
            protocol="full",
            out_dir=tmp_path,
            route_options={"prompt_tuning": {"train.epochs": 1, "init": "labels"}},
        )

    def crash(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(runner, "write_result", crash)
    first = run()  # trained, checkpointed at its end, then lost its result
    assert first.failures and "disk full" in first.failures[0].error
    (work,) = (tmp_path / ".work").iterdir()
    assert any(work.rglob("state.json"))
    monkeypatch.undo()
    write_jsonl(task_dir / "train.jsonl", make_rows(41))  # the data changed since
    second = run()
    assert not second.failures and len(second.results) == 1
    assert any("examples differ" in w and "cell retrained" in w for w in second.warnings)
    assert not work.exists()


def test_route_settings_are_checked_against_a_local_folders_own_kind(task_dir, tiny_bert_dir, tmp_path):
    from tasktune.routes import get_route
    from tasktune.runner import backbone_kind, resolve_route_options

    assert backbone_kind(str(tiny_bert_dir)) == "encoder" and backbone_kind("org/some-hub-model") is None
    # A length alone is refused on a causal LM (its start has its own length), fine on an encoder.
    settings = resolve_route_options(
        [get_route("prompt_tuning")],
        {"prompt_tuning": {"num_virtual_tokens": 5}},
        "few",
        [str(tiny_bert_dir)],
        32,
    )
    assert settings == {("prompt_tuning", str(tiny_bert_dir)): {"num_virtual_tokens": 5}}


def test_an_ensemble_cell_reports_its_members_on_the_test_set(task_dir, tiny_llama_dir, tmp_path):
    out = run_matrix(
        load_task(task_dir / "task.yaml"),
        route_names=["prompt_ensemble"],
        backbone_names=[str(tiny_llama_dir)],
        protocol="few",
        seeds=[13],
        k=8,
        out_dir=tmp_path,
        route_options={"prompt_ensemble": {"train.epochs": 2}},
    )
    assert not out.failures
    (result,) = out.results
    members = result.info.route_config["members_on_test"]
    assert len(members["member_accuracy"]) == 3
    assert members["ensemble_accuracy"] == pytest.approx(result.metrics["accuracy"], abs=1e-6)
    mean = sum(members["member_accuracy"]) / 3
    assert members["gain_over_member_mean"] == pytest.approx(members["ensemble_accuracy"] - mean, abs=1e-5)
    from tasktune.evaluation.compare import summarise

    (note,) = [n for n in summarise(out.results).notes if "members average" in n]
    assert f"{100 * mean:.1f} % accuracy on test" in note


def test_a_finished_cell_is_reused_only_with_the_same_inputs(task_dir, tmp_path):
    """K, the data, the evaluation split and the task's labels are not in a cell's name: a result measured
    with others is kept aside as .stale and the cell reruns; the same inputs reuse it."""
    from tests.conftest import make_rows, write_jsonl

    spec = load_task(task_dir / "task.yaml")
    out = tmp_path / "run"
    common = dict(route_names=["majority"], protocol="few", seeds=[13], out_dir=out)
    first = run_matrix(spec, k=8, **common)
    assert first.results[0].info.labelled_examples == 32 and first.results[0].info.inputs_hash
    assert run_matrix(spec, k=8, **common).reused == 1  # nothing changed

    (cell,) = out.glob("majority--*.json")
    smaller = run_matrix(spec, k=4, **common)
    assert smaller.reused == 0 and smaller.results[0].info.labelled_examples == 16
    assert any("32 labelled examples, this run 16" in w and "kept as" in w for w in smaller.warnings)
    assert cell.with_name(cell.name + ".stale").is_file()  # the old measurement is kept, not lost

    write_jsonl(task_dir / "train.jsonl", make_rows(40)[:-2])  # the data changed under the same name
    edited = run_matrix(spec, k=4, **common)
    assert edited.reused == 0 and any("the data of 'train' differs" in w for w in edited.warnings)
    assert cell.with_name(cell.name + ".stale-2").is_file()  # the earlier .stale is not overwritten

    words = tuple(lbl.model_copy(update={"words": (lbl.name + "ish",)}) for lbl in spec.labels)
    again = run_matrix(spec.model_copy(update={"labels": words}), k=4, **common)
    assert again.reused == 0 and any("labels, metric or prompt hints" in w for w in again.warnings)


def test_constraints_and_the_tasks_name_leave_its_inputs_alone(task_dir):
    spec = load_task(task_dir / "task.yaml")
    same = spec.model_copy(
        update={"name": "renamed", "constraints": spec.constraints.model_copy(update={"max_latency_ms": 5.0})}
    )
    assert same.inputs_hash() == spec.inputs_hash() and same.spec_hash() != spec.spec_hash()
    other = spec.model_copy(update={"metric": "macro_f1"})
    assert other.inputs_hash() != spec.inputs_hash()


def test_repeated_seeds_routes_and_backbones_run_once(task_dir, tmp_path):
    spec = load_task(task_dir / "task.yaml")
    out = run_matrix(
        spec, route_names=["majority", "majority"], protocol="few", seeds=[13, 21, 13], k=8, out_dir=tmp_path
    )
    assert [r.info.seed for r in out.results] == [13, 21]  # a repeat would enter the mean twice
    assert "seed 13 was given more than once; it runs once" in out.warnings
    assert "route 'majority' was given more than once; it runs once" in out.warnings


class HoldsModel:
    """A route whose fitted scorer holds a large object: the next cell must not train beside it."""

    name = "holds"
    needs_backbone = False
    alive_at_fit: ClassVar[list[int]] = []
    refs: ClassVar[list] = []

    def fit(self, ctx: FitContext):
        import gc
        import weakref

        from tasktune.routes.majority.route import MajorityRoute

        gc.collect()
        HoldsModel.alive_at_fit.append(sum(r() is not None for r in HoldsModel.refs))
        fitted = MajorityRoute().fit(ctx)
        HoldsModel.refs.append(weakref.ref(fitted))
        return fitted


def test_the_last_cells_model_is_released_before_the_next_fit(task_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(ROUTES, "holds", HoldsModel)
    HoldsModel.alive_at_fit, HoldsModel.refs = [], []
    run_matrix(
        load_task(task_dir / "task.yaml"), route_names=["holds"], protocol="few", k=8, out_dir=tmp_path
    )
    assert HoldsModel.alive_at_fit == [0, 0, 0, 0, 0]


class WithArtifact:
    """The majority route with something for the registry to keep."""

    name = "with_artifact"
    needs_backbone = False

    def fit(self, ctx: FitContext):
        from dataclasses import replace

        from tasktune.routes.majority.route import MajorityRoute

        return replace(MajorityRoute().fit(ctx), artifact={"kind": "test"})


def test_a_registry_that_refuses_costs_the_adaptation_not_the_measurement(task_dir, tmp_path, monkeypatch):
    import tasktune.adaptations as adaptations

    def refuse(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(adaptations, "register_fitted", refuse)
    monkeypatch.setitem(ROUTES, "with_artifact", WithArtifact)
    spec = load_task(task_dir / "task.yaml")
    calls = []
    out = run_matrix(
        spec,
        route_names=["with_artifact"],
        protocol="full",
        out_dir=tmp_path / "run",
        registry_root=tmp_path / "registry",
        on_cell=lambda name, result, error: calls.append((result is not None, error)),
    )
    assert len(out.results) == 1 and not out.failures and calls == [(True, None)]
    assert any("measured but not registered" in w and "No space left" in w for w in out.warnings)
    assert len(list((tmp_path / "run").glob("with_artifact--*.json"))) == 1  # the measurement is written


def test_a_failing_callback_is_not_a_failed_cell(task_dir, tmp_path):
    calls = []

    def broken(name, result, error):
        calls.append(error)
        raise KeyError("the caller's bug")

    with pytest.raises(KeyError, match="the caller's bug"):
        run_matrix(
            load_task(task_dir / "task.yaml"),
            route_names=["majority"],
            protocol="full",
            out_dir=tmp_path,
            on_cell=broken,
        )
    assert len(list(tmp_path.glob("majority--*.json"))) == 1  # the cell itself finished and was kept
    assert calls == [None]  # told once that it succeeded, never that the cell failed


def test_the_manifest_counts_the_labelled_examples_the_full_split_uses(tmp_path):
    import json

    from tests.conftest import write_jsonl

    labels = ("a", "b", "c")
    for split, per_label in (("train", 5), ("test", 2)):
        rows = [{"text": f"{split} {i} {y}", "label": y} for i in range(per_label) for y in labels]
        write_jsonl(tmp_path / f"{split}.jsonl", rows)
    (tmp_path / "task.yaml").write_text(
        "name: three\nlabels:\n  - name: a\n  - name: b\n  - name: c\n"
        "data:\n  train: {path: train.jsonl}\n  test: {path: test.jsonl}\n"
    )
    out = run_matrix(
        load_task(tmp_path / "task.yaml"),
        route_names=["majority"],
        protocol="full",
        train_limit=5,
        out_dir=tmp_path / "run",
    )
    used = out.results[0].info.labelled_examples
    assert json.loads((tmp_path / "run" / "run.json").read_text())["train_size"] == used


def test_a_split_added_for_something_else_leaves_finished_cells_valid(task_dir, tmp_path):
    from tests.conftest import write_jsonl

    out = tmp_path / "run"
    run_matrix(load_task(task_dir / "task.yaml"), route_names=["majority"], protocol="full", out_dir=out)
    write_jsonl(task_dir / "other.jsonl", [{"text": "x", "label": "positive"}])
    text = (task_dir / "task.yaml").read_text().replace("data:\n", "data:\n  other: {path: other.jsonl}\n")
    (task_dir / "task.yaml").write_text(text)
    spec = load_task(task_dir / "task.yaml")
    again = run_matrix(spec, route_names=["majority"], protocol="full", out_dir=out)
    assert again.reused == 1 and not any("stale" in w for w in again.warnings)


def test_numbers_are_names_where_labels_are_named_by_numbers(tmp_path):
    """0 and 1 against labels "1" and "2" would otherwise both be the first label (0 by position, 1 by
    name): a silent merge of two classes. A number that names no label is refused instead."""
    from tasktune.errors import DataError
    from tasktune.task.data import load_split
    from tests.conftest import write_jsonl

    write_jsonl(tmp_path / "train.jsonl", [{"text": "a", "label": 0}, {"text": "b", "label": 1}])
    (tmp_path / "task.yaml").write_text(
        'name: stars\nlabels: ["1", "2"]\ndata:\n  train: {path: train.jsonl}\n'
    )
    with pytest.raises(DataError, match="unknown label"):
        load_split(load_task(tmp_path / "task.yaml"), "train")
