"""The one registry of routes. Adding a route touches its own folder and one line in
:mod:`tasktune.routes` that imports it."""

from __future__ import annotations

from collections.abc import Callable

from tasktune.errors import TaskTuneError
from tasktune.routes.base import Route

ROUTES: dict[str, Callable[[], Route]] = {}


def register_route(name: str) -> Callable[[Callable[[], Route]], Callable[[], Route]]:
    def deco(factory: Callable[[], Route]) -> Callable[[], Route]:
        if name in ROUTES:
            raise ValueError(f"route {name!r} is already registered")
        ROUTES[name] = factory
        return factory

    return deco


def get_route(name: str) -> Route:
    if name not in ROUTES:
        raise TaskTuneError(f"unknown route {name!r}; available: {', '.join(sorted(ROUTES))}")
    return ROUTES[name]()
