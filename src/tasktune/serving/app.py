"""The HTTP server: ``create_app(settings)`` → a FastAPI app serving many adaptations on shared
backbones, with micro-batching, a prediction log, feedback, drift, A/B tests, metrics and a dashboard.

(No ``from __future__ import annotations`` here: the request models are built from the settings at
run time, and FastAPI must see the real classes in the handlers' signatures.)
"""

import asyncio
import logging
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from tasktune.routes.prompt_tuning.prefix_cache import PREFIXES
from tasktune.serving.admin import admin_router
from tasktune.serving.batcher import MicroBatcher, QueueFull
from tasktune.serving.errors import ServingError
from tasktune.serving.limits import BodySizeLimit
from tasktune.serving.metrics import OTHER, Metrics
from tasktune.serving.monitor import LoggedPrediction, PredictionLog
from tasktune.serving.pool import ModelPool, RegistryLoader
from tasktune.serving.schemas import (
    ErrorBody,
    FeedbackResponse,
    PredictResponse,
    feedback_request_model,
    predict_request_model,
)
from tasktune.serving.settings import ServeSettings
from tasktune.serving.stats import build_stats
from tasktune.serving.traffic import Traffic
from tasktune.task.data import Example

log = logging.getLogger(__name__)
DEFAULT_ALIASES = ("production", "candidate")
ERRORS = {s: {"model": ErrorBody} for s in (404, 409, 413, 422, 429, 503, 504)}


@dataclass
class ServerState:
    settings: ServeSettings
    pool: ModelPool
    batcher: MicroBatcher
    metrics: Metrics
    traffic: Traffic = field(default_factory=Traffic)
    log: PredictionLog | None = None
    ready: bool = False
    not_ready_reason: str = "loading"
    started: float = field(default_factory=time.time)


def _initial_load(state: ServerState) -> None:
    """Every requested task (default: all of the registry), each at its ``production`` alias, else its
    ``candidate`` alias (set by ``tasktune run``), else its latest version."""
    from tasktune.registry import Registry

    refs = state.settings.task_refs()
    if not refs and state.settings.registry.exists():
        with Registry(state.settings.registry) as reg:
            refs = [(t, None) for t in reg.tasks()]
    for task, ref in refs:
        if ref is None:
            with Registry(state.settings.registry) as reg:
                aliases = reg.aliases(task)
            # What a person promoted, else what `tasktune run` recommended, else the newest.
            ref = next((a for a in DEFAULT_ALIASES if a in aliases), "latest")
        state.pool.activate(task, ref)


PRUNE_EVERY_S = 3600.0


async def _prune_log(state: ServerState) -> None:
    """Keep the prediction log to ``log_retention_days``: at start, then every ``PRUNE_EVERY_S``. A
    failed pass (a locked or unreachable database) is logged and tried again at the next one."""
    days = state.settings.log_retention_days
    while True:
        try:
            gone = await anyio.to_thread.run_sync(state.log.prune, time.time() - days * 86400)
            if gone:
                log.info("prediction log: %d predictions older than %g days deleted", gone, days)
        except Exception as err:  # retention must never stop the server
            log.warning("prediction log: pruning failed (%s); trying again later", err)
        await asyncio.sleep(PRUNE_EVERY_S)


async def _warm_up(state: ServerState) -> None:
    """One request per task through the whole path (queue, batch, forward) before saying ready."""
    for task in state.pool.tasks():
        served = state.pool.active(task)
        fut = state.batcher.submit(served, [Example("warm-up", 0)], time.monotonic() + 600)
        await asyncio.wrap_future(fut)


def create_app(settings: ServeSettings, *, pool: ModelPool | None = None) -> FastAPI:
    """``pool``: an already-filled pool (tests); by default adaptations load from ``settings.registry``."""
    preloaded = pool is not None
    pool = pool or ModelPool(RegistryLoader(settings))
    PREFIXES.resize(settings.prefix_cache_mb * 2**20)  # process-wide, like the backbones it serves
    metrics = Metrics(pool.tasks)
    batcher = MicroBatcher(
        max_batch=settings.max_batch,
        wait_s=settings.batch_wait_ms / 1000,
        capacity_rows=settings.queue_rows,
        on_batch=metrics.batch_rows.observe,
    )
    state = ServerState(settings, pool, batcher, metrics)

    async def load_then_ready() -> None:
        try:
            if not preloaded:
                await anyio.to_thread.run_sync(_initial_load, state)
            if settings.warmup:
                await _warm_up(state)
            state.ready, state.not_ready_reason = True, ""
            log.info("ready: %s", ", ".join(pool.tasks()) or "no tasks")
        except Exception as err:  # stay alive (liveness) but never ready; the reason is on /health/ready
            state.not_ready_reason = f"loading failed: {getattr(err, 'message', None) or err}"
            log.error("loading failed: %s", err)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state.log = PredictionLog(settings.log_target)
        batcher.start()
        loading = asyncio.create_task(load_then_ready())
        pruning = asyncio.create_task(_prune_log(state)) if settings.log_retention_days else None
        yield
        if pruning is not None:
            pruning.cancel()
        # Graceful shutdown (R16): the server has stopped accepting and waited for in-flight requests;
        # finish anything still queued, then close the log.
        state.ready, state.not_ready_reason = False, "shutting down"
        loading.cancel()
        await anyio.to_thread.run_sync(batcher.stop, settings.shutdown_grace_s)
        state.log.close()

    app = FastAPI(
        title="tasktune serving",
        version="1",
        lifespan=lifespan,
        description="Many adaptations on shared frozen backbones: predict, feedback, monitoring, A/B.",
    )
    app.state.tasktune = state
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_payload_bytes)
    _install_error_handlers(app, metrics)
    PredictRequest = predict_request_model(settings)
    FeedbackRequest = feedback_request_model(settings)

    @app.get("/health/live", tags=["health"])
    async def live() -> dict:
        return {"status": "alive"}

    @app.get("/health/ready", tags=["health"], responses={503: {"model": ErrorBody}})
    async def ready() -> Response:
        if state.ready:
            return JSONResponse({"status": "ready", "tasks": pool.tasks()})
        return JSONResponse(ServingError(503, "not_ready", state.not_ready_reason).body(), status_code=503)

    @app.post("/v1/predict", response_model=PredictResponse, tags=["predict"], responses=ERRORS)
    async def predict(body: PredictRequest) -> PredictResponse:  # type: ignore[valid-type]
        start = time.perf_counter()
        request_id = uuid.uuid4().hex
        task_label = metrics.task_label(body.task)
        try:
            response = await _predict(state, body, request_id, start)
        except ServingError as err:
            metrics.requests.labels(task_label, str(err.status)).inc()
            err.extra.setdefault("request_id", request_id)
            raise
        metrics.requests.labels(task_label, "200").inc()
        metrics.latency.labels(task_label).observe(time.perf_counter() - start)
        metrics.texts.labels(task_label).inc(len(body.texts))
        return response

    @app.post("/v1/feedback", response_model=FeedbackResponse, tags=["monitoring"], responses=ERRORS)
    async def feedback(body: FeedbackRequest) -> FeedbackResponse:  # type: ignore[valid-type]
        return await anyio.to_thread.run_sync(_feedback, state, body)

    @app.get("/v1/tasks", tags=["monitoring"])
    async def tasks() -> dict:
        return {"tasks": pool.snapshot()}

    @app.get("/v1/stats", tags=["monitoring"])
    async def stats() -> dict:
        return await anyio.to_thread.run_sync(_stats, state)

    @app.get("/metrics", tags=["monitoring"])
    async def prometheus() -> Response:
        metrics.queue_rows.set(batcher.depth)
        # The live-accuracy and drift gauges are set by computing the stats: a scrape alone must see
        # them current, not as the last /v1/stats call left them.
        try:
            await anyio.to_thread.run_sync(_stats, state)
        except Exception:  # the counters and histograms still go out
            log.exception("stats for /metrics failed")
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/", include_in_schema=False)
    async def dashboard() -> HTMLResponse:
        from tasktune.serving.dashboard import dashboard_html

        return HTMLResponse(dashboard_html())

    app.include_router(admin_router(state))
    return app


def _stats(state: ServerState) -> dict[str, Any]:
    assert state.log is not None
    return build_stats(
        pool=state.pool,
        log=state.log,
        traffic=state.traffic,
        settings=state.settings,
        started=state.started,
        queue_depth=state.batcher.depth,
        metrics=state.metrics,
    )


async def _predict(state: ServerState, body: Any, request_id: str, start: float) -> PredictResponse:
    settings = state.settings
    if not state.ready:
        raise ServingError(
            503, "not_ready", f"not ready: {state.not_ready_reason}", headers={"Retry-After": "1"}
        )
    served, arm = state.pool.route(body.task, body.key or request_id, body.version)
    pairs = body.text_pairs
    if pairs is not None and len(pairs) != len(body.texts):
        raise ServingError(
            422,
            "invalid_request",
            f"text_pairs has {len(pairs)} items but texts has {len(body.texts)}",
            field="text_pairs",
        )
    if (pairs is not None) != (served.spec.text_pair_field is not None):
        need = "needs text_pairs" if served.spec.text_pair_field else "takes no text_pairs"
        raise ServingError(422, "invalid_request", f"task {body.task!r} {need}", field="text_pairs")
    examples = [Example(text, 0, pairs[i] if pairs else None, row=i + 1) for i, text in enumerate(body.texts)]
    budget_s = (body.deadline_ms or settings.deadline_ms) / 1000
    try:
        future = state.batcher.submit(served, examples, time.monotonic() + budget_s)
    except QueueFull:
        raise ServingError(
            429,
            "overloaded",
            "the queue is full; retry after a moment",
            headers={"Retry-After": str(settings.retry_after_s)},
        ) from None
    try:
        probs = await asyncio.wait_for(asyncio.wrap_future(future), timeout=budget_s)
    except TimeoutError:
        raise ServingError(504, "deadline_exceeded", f"no answer within {budget_s * 1000:.0f} ms") from None
    latency_ms = (time.perf_counter() - start) * 1000
    labels = served.labels
    predicted = np.asarray(probs).argmax(1)
    rows = [
        LoggedPrediction(i, e.text if e.text_pair is None else f"{e.text}\n{e.text_pair}", int(y), p.tolist())
        for i, (e, y, p) in enumerate(zip(examples, predicted, probs, strict=True))
    ]
    if settings.log_predictions and state.log is not None:
        await anyio.to_thread.run_sync(
            state.log.log, request_id, served.task, served.version, arm, rows, latency_ms
        )
    state.traffic.record(served.task, latency_ms)
    return PredictResponse(
        request_id=request_id,
        task=served.task,
        version=served.version,
        route=served.route,
        arm=arm,
        predictions=[
            {
                "label": labels[y],
                "label_index": int(y),
                "confidence": round(float(p[y]), 6),
                "probabilities": {name: float(q) for name, q in zip(labels, p, strict=True)},
            }
            for y, p in zip(predicted, probs, strict=True)
        ],
        latency_ms=round(latency_ms, 3),
    )


def _feedback(state: ServerState, body: Any) -> FeedbackResponse:
    assert state.log is not None
    logged = state.log.prediction(body.request_id)
    if logged is None:
        raise ServingError(404, "unknown_request", f"no logged prediction has request_id {body.request_id}")
    task, version, n_items = logged
    if len(body.labels) != n_items:
        raise ServingError(
            422,
            "invalid_feedback",
            f"request {body.request_id} classified {n_items} texts; send "
            f"{n_items} labels (null for unknown), got {len(body.labels)}",
            field="labels",
        )
    spec = state.pool.spec_of(task, version)
    names = spec.label_names
    index = {n.casefold(): i for i, n in enumerate(names)}
    labels: dict[int, int] = {}
    for item, value in enumerate(body.labels):
        if value is None:
            continue
        if isinstance(value, int):
            if value >= len(names):
                raise ServingError(
                    422,
                    "invalid_feedback",
                    f"labels[{item}] = {value} is out of range 0..{len(names) - 1}",
                    field=f"labels.{item}",
                )
            labels[item] = value
        elif value.casefold() in index:
            labels[item] = index[value.casefold()]
        else:
            raise ServingError(
                422,
                "invalid_feedback",
                f"labels[{item}] = {value!r} is not a label of {task!r}",
                field=f"labels.{item}",
                expected=list(names),
            )
    outcome = state.log.feedback(body.request_id, labels)
    if outcome.conflicts:
        raise ServingError(
            409,
            "conflicting_feedback",
            f"items {outcome.conflicts} of request {body.request_id} already have a different true label; "
            "the first answer stands",
        )
    state.metrics.feedback.labels(state.metrics.task_label(task)).inc(outcome.recorded)
    return FeedbackResponse(
        request_id=body.request_id, recorded=outcome.recorded, unchanged=outcome.unchanged
    )


def _install_error_handlers(app: FastAPI, metrics: Metrics) -> None:
    @app.exception_handler(ServingError)
    async def serving_error(request: Request, err: ServingError) -> JSONResponse:
        return JSONResponse(err.body(), status_code=err.status, headers=err.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        problems = []
        for e in err.errors():
            if e.get("type") == "json_invalid":  # loc is ("body", <character offset>)
                offset = (e.get("loc") or (None, "?"))[-1]
                problems.append({"field": "(body)", "message": f"not valid JSON (at character {offset})"})
                continue
            loc = ".".join(str(p) for p in e.get("loc", ()) if p != "body")
            problems.append({"field": loc or "(body)", "message": e.get("msg", "invalid")})
        if request.url.path == "/v1/predict":
            metrics.requests.labels(OTHER, "422").inc()
        first = problems[0] if problems else {"field": "(body)", "message": "invalid request"}
        body = ServingError(
            422,
            "invalid_request",
            f"{first['field']}: {first['message']}",
            field=first["field"],
            problems=problems[:20],
        ).body()
        return JSONResponse(body, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        kind = {404: "not_found", 405: "method_not_allowed"}.get(err.status_code, "http_error")
        return JSONResponse(
            ServingError(err.status_code, kind, str(err.detail)).body(),
            status_code=err.status_code,
            headers=getattr(err, "headers", None),
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, err: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        return JSONResponse(ServingError(500, "internal", "internal error").body(), status_code=500)
