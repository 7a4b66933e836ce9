"""Serving: many adaptations on shared frozen backbones behind HTTP, with micro-batching across
tasks, a prediction log, feedback, drift, A/B tests, Prometheus metrics and a dashboard.

    from tasktune.serving import ServeSettings, create_app
    app = create_app(ServeSettings(registry="tasktune-registry"))

The app's modules import FastAPI; import them lazily so the rest of tasktune does not need it.
"""

from tasktune.serving.settings import ServeSettings


def create_app(*args, **kwargs):
    from tasktune.serving.app import create_app as _create_app

    return _create_app(*args, **kwargs)


__all__ = ["ServeSettings", "create_app"]
