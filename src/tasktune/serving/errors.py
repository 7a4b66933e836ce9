"""Typed error bodies: every 4xx/5xx the server sends is ``{"error": {"type", "message", ...}}`` so a
client can branch on ``type`` and a person can read ``message``."""

from __future__ import annotations

from typing import Any


class ServingError(Exception):
    def __init__(
        self,
        status: int,
        type_: str,
        message: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ):
        super().__init__(message)
        self.status, self.type, self.message = status, type_, message
        self.field, self.headers, self.extra = field, headers or {}, extra

    def body(self, request_id: str | None = None) -> dict:
        error: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.field is not None:
            error["field"] = self.field
        if request_id is not None:
            error["request_id"] = request_id
        error.update(self.extra)
        return {"error": error}


def not_found(what: str, message: str, **extra: Any) -> ServingError:
    return ServingError(404, f"unknown_{what}", message, **extra)


def conflict(message: str, **extra: Any) -> ServingError:
    return ServingError(409, "conflict", message, **extra)
