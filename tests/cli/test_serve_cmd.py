import inspect

from tasktune.cli import serve_cmd
from tasktune.cli.main import main
from tasktune.registry import Registry
from tasktune.serving.settings import ServeSettings


def test_every_serve_setting_has_a_flag_with_the_same_default():
    params = inspect.signature(serve_cmd.serve).parameters
    renamed = {"admin_token": "admin_token_file", "backbones": "backbone"}  # read from a file / NAME=PATH
    for field, info in ServeSettings.model_fields.items():
        name = renamed.get(field, field)
        assert name in params, f"ServeSettings.{field} has no `tasktune serve` flag"
        if name == field and field not in ("tasks", "registry"):
            assert params[name].default.default == info.default, field


def test_a_small_queue_can_be_served_once_requests_are_bounded_below_it(tmp_path, capsys, monkeypatch):
    import uvicorn

    started = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: started.update(kw))
    Registry(tmp_path / "reg").close()  # an empty registry: serve refuses a folder that is none
    base = ["serve", "--registry", str(tmp_path / "reg"), "--queue", "10", "--no-warmup"]
    assert main(base) == 2
    assert "max_texts (64) cannot exceed queue_rows (10)" in capsys.readouterr().err
    assert main([*base, "--max-texts", "8", "--shutdown-grace-s", "5"]) == 0
    assert started["timeout_graceful_shutdown"] == 5


def test_an_unusable_log_database_is_named_before_serving(tmp_path, capsys, monkeypatch):
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: (_ for _ in ()).throw(AssertionError("served")))
    Registry(tmp_path / "reg").close()  # an empty registry: serve refuses a folder that is none
    url = "nosuchdb://admin:s3cret@db.example/tasktune"
    assert main(["serve", "--registry", str(tmp_path / "reg"), "--log-url", url]) == 2
    err = capsys.readouterr().err
    assert "cannot open the prediction log at nosuchdb://admin:***@db.example/tasktune" in err
    assert "s3cret" not in err
