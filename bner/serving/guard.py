"""What every request passes before the API sees it: the key, the body limit, metrics, and no leaked 500s.

A plain ASGI middleware, because the checks must come before the body is read: the key is
checked first (an unauthenticated client gets 401 without the server reading or
validating its body), then the declared ``Content-Length``, then the body itself as it
streams in, so a chunked body is held to the same limit as a declared one and is never
read past it. Metrics label requests by the route, or ``other``, so random paths cannot
grow ``/metrics``. An unexpected error becomes a counted 500 that closes its connection,
never a dropped keep-alive connection without a word.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

HEALTH = "/api/ner/health"
# Served to anyone unless BNER_PROTECT_ALL is set; /api/ner/health never needs the key (liveness probes).
OPEN_WITHOUT_PROTECT_ALL = ("/", "/api/ner/ready", "/api/ner/model", "/metrics", "/docs", "/openapi.json",
                            "/docs/oauth2-redirect")
DOCS_ASSETS = "/docs/assets/"  # Swagger UI's files: open like /docs


class ClientGone(Exception):
    """The client disconnected before its request was complete."""


class RequestGuard:
    def __init__(
        self,
        app,
        *,
        max_body_bytes: int,
        api_key: str | None,
        protect_all: bool,
        metrics,
        routes: Callable[[], set[str]],
        body_timeout: float = 30.0,
        probes: tuple[str, ...] = (),
    ):
        self.body_timeout = body_timeout
        self.app, self.max_body_bytes, self.metrics, self.routes = app, max_body_bytes, metrics, routes
        # Compared as UTF-8 bytes: a non-ASCII key (or header) is just other bytes, not an error.
        self.key = api_key.encode("utf-8") if api_key else None
        self.protect_all = protect_all
        self.probes = (HEALTH, *probes)  # never behind the key: the platform's health checks send none

    def needs_key(self, path: str) -> bool:
        if self.key is None or path in self.probes:
            return False
        return self.protect_all or (path not in OPEN_WITHOUT_PROTECT_ALL and not path.startswith(DOCS_ASSETS))

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        endpoint = path if path in self.routes() else DOCS_ASSETS if path.startswith(DOCS_ASSETS) else "other"
        started = time.perf_counter()
        sent = {"status": 0}

        async def tracked_send(message):
            if message["type"] == "http.response.start":
                sent["status"] = message["status"]
            await send(message)

        try:
            await self._guarded(scope, receive, tracked_send, path)
        except ClientGone:
            sent["status"] = 499  # nginx's code for it: nobody was left to answer
        except Exception:  # noqa: BLE001 — a bug must not leave a keep-alive connection hanging
            log.exception("unexpected error on %s %s", scope.get("method"), path)
            self.metrics.errors.labels("internal").inc()
            if not sent["status"]:
                await reply(tracked_send, 500, "internal error", close=True)
        finally:
            if endpoint != "/metrics":
                self.metrics.requests.labels(endpoint, str(sent["status"] or 500)).inc()
                self.metrics.latency.labels(endpoint).observe(time.perf_counter() - started)

    async def _guarded(self, scope, receive, send, path: str) -> None:
        headers = dict(scope.get("headers") or [])
        if self.needs_key(path) and not hmac.compare_digest(headers.get(b"x-api-key", b""), self.key):
            self.metrics.errors.labels("unauthorized").inc()
            await reply(send, 401, "missing or wrong X-API-Key header", close=b"content-length" in headers or b"transfer-encoding" in headers)
            return
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body_bytes):
            await self._too_large(send)
            return
        if scope.get("method") not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        try:
            body, complete = await asyncio.wait_for(read_body(receive, self.max_body_bytes), self.body_timeout)
        except asyncio.TimeoutError:
            self.metrics.errors.labels("timeout").inc()
            await reply(send, 408, f"the request body did not arrive within {self.body_timeout:g} seconds", close=True)
            return
        if body is None:
            await self._too_large(send)
            return
        if not complete:
            self.metrics.errors.labels("disconnected").inc()
            raise ClientGone  # the client went away while sending
        await self.app(scope, replay(body, receive), send)

    async def _too_large(self, send) -> None:
        self.metrics.errors.labels("too_large").inc()
        await reply(send, 413, f"request body over {self.max_body_bytes} bytes", close=True)


async def read_body(receive, limit: int) -> tuple[bytes | None, bool]:
    """The whole body, or (None, _) as soon as it passes ``limit`` bytes; False when the client disconnected."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"", False
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None, False
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), True


def replay(body: bytes, receive):
    """A ``receive`` that hands the app the body already read, then waits for the client as usual."""
    given = False

    async def replayed():
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


async def reply(send, status: int, detail: str, close: bool = False) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
