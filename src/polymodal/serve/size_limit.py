"""A limit on request bodies (uploads): 413 before the service stores more than the limit.

An ASGI middleware: a declared ``Content-Length`` over the limit is refused before the body is
read; a body sent in chunks is counted as it arrives and refused once it passes the limit.
"""

from __future__ import annotations

import json
from typing import Any

from polymodal.serve.errors import UploadTooLarge

Scope = dict[str, Any]


class BodySizeLimit:
    """Wraps an ASGI app; requests whose body passes ``max_bytes`` get 413 naming the limit."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        received = 0
        started = False

        async def counted_receive() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise self._error()
            return message

        async def watched_send(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except UploadTooLarge:
            if started:
                raise
            await self._refuse(send)

    def _error(self) -> UploadTooLarge:
        limit = round(self.max_bytes / 2**20, 3)
        return UploadTooLarge(
            ("body",),
            f"the request body is over the upload limit of {limit:g} MB; send smaller files "
            "or start the service with a larger --max-upload-mb",
        )

    async def _refuse(self, send: Any) -> None:
        body = json.dumps(self._error().body()).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
