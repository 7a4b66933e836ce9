"""Payload size limit (R11) as pure ASGI middleware: a declared Content-Length over the limit is
refused before the body is read; a chunked body is counted as it arrives and cut off at the limit,
so memory per request stays bounded whatever the client sends."""

from __future__ import annotations

import contextlib
import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > self.max_bytes
            except ValueError:
                await self._refuse(send, 400, "bad_request", "Content-Length is not a number")
                return
            if too_big:
                await self._refuse(send, 413, "payload_too_large", self._message(int(declared)))
                return
        seen = 0
        refused = False

        async def counting_receive() -> Message:
            nonlocal seen, refused
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    refused = True
                    raise _TooLarge
            return message

        started = False

        async def guarded_send(message: Message) -> None:
            # Frameworks catch errors while reading the body and answer 400; a body cut off at the limit
            # must be answered 413 instead, so the app's own answer is replaced.
            nonlocal started
            if refused:
                if not started:
                    started = True
                    await self._refuse(send, 413, "payload_too_large", self._message(seen))
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        with contextlib.suppress(_TooLarge):
            await self.app(scope, counting_receive, guarded_send)
        if refused and not started:
            await self._refuse(send, 413, "payload_too_large", self._message(seen))

    def _message(self, size: int) -> str:
        return f"the request body has {size} bytes or more; the limit is {self.max_bytes}"

    @staticmethod
    async def _refuse(send: Send, status: int, kind: str, message: str) -> None:
        body = json.dumps({"error": {"type": kind, "message": message}}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass
