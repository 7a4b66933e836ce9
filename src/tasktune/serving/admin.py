"""Admin routes: load, activate, unload, A/B start/stop/promote. Every one needs the bearer token,
compared in constant time (R18); with no token configured they are all refused (403), so a server
started without one cannot be changed over HTTP at all.

Loading runs in a worker thread: the event loop keeps answering predictions while a version loads,
and the pool switches to it only once it is ready (R17).
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING, Annotated

import anyio
from fastapi import APIRouter, Depends, Header, Path

from tasktune.serving.errors import ServingError
from tasktune.serving.schemas import ABBody, ActivateBody, ErrorBody, LoadBody, PromoteBody, UnloadBody

if TYPE_CHECKING:
    from tasktune.serving.app import ServerState

TaskPath = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9._-]*$", max_length=100)]


def admin_router(state: ServerState) -> APIRouter:
    def require_token(authorization: Annotated[str | None, Header()] = None) -> None:
        expected = state.settings.admin_token
        if expected is None:
            raise ServingError(
                403,
                "admin_disabled",
                "admin routes are disabled: start the server with an admin token "
                "(--admin-token-file or TASKTUNE_ADMIN_TOKEN)",
            )
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), expected.encode()):
            raise ServingError(
                401,
                "unauthorized",
                "a valid 'Authorization: Bearer <token>' header is required",
                headers={"WWW-Authenticate": "Bearer"},
            )

    errors = {s: {"model": ErrorBody} for s in (401, 403, 404, 409, 422)}
    router = APIRouter(
        prefix="/admin", tags=["admin"], dependencies=[Depends(require_token)], responses=errors
    )
    pool = state.pool

    def set_alias(task: str, alias: str | None, version: int) -> None:
        if alias is None:
            return
        from tasktune.registry import Registry

        with Registry(state.settings.registry) as reg:
            reg.set_alias(task, alias, version)

    @router.post("/tasks/{task}/load")
    async def load(task: TaskPath, body: LoadBody) -> dict:
        served = await anyio.to_thread.run_sync(pool.load, task, body.ref)
        return {"task": task, "version": served.version, "loaded": True}

    @router.post("/tasks/{task}/activate")
    async def activate(task: TaskPath, body: ActivateBody) -> dict:
        served = await anyio.to_thread.run_sync(pool.activate, task, body.ref)
        await anyio.to_thread.run_sync(set_alias, task, body.alias, served.version)
        return {"task": task, "active_version": served.version, "alias": body.alias}

    @router.post("/tasks/{task}/unload")
    async def unload(task: TaskPath, body: UnloadBody) -> dict:
        pool.unload(task, body.version)
        return {"task": task, "unloaded": body.version}

    @router.post("/tasks/{task}/ab")
    async def start_ab(task: TaskPath, body: ABBody) -> dict:
        split = pool.start_ab(task, body.a, body.b, body.share_b)
        return {"task": task, "a": split.a, "b": split.b, "share_b": split.share_b}

    @router.delete("/tasks/{task}/ab")
    async def stop_ab(task: TaskPath) -> dict:
        pool.stop_ab(task)
        return {"task": task, "ab": None, "active_version": pool.active(task).version}

    @router.post("/tasks/{task}/ab/promote")
    async def promote(task: TaskPath, body: PromoteBody) -> dict:
        routing = pool.routing.get(task)
        if routing is None or routing.ab is None:
            raise ServingError(409, "conflict", f"task {task!r} has no A/B test running")
        winner = routing.ab.b if body.arm == "B" else routing.ab.a
        pool.stop_ab(task, keep=winner)
        await anyio.to_thread.run_sync(set_alias, task, body.alias, winner)
        return {"task": task, "active_version": winner, "alias": body.alias}

    return router
