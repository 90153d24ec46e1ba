"""Connection limits uvicorn lacks: deadlines for headers and for unread answers, and probes past the connection cap.

uvicorn closes a kept-alive connection that stays idle after a response, but a
connection that opens and never sends (or sends its headers a byte at a time, as a
slowloris client does) is held forever, and enough of them exhaust the server's file
descriptors. This protocol gives every request ``header_timeout`` seconds from its first
byte (or from the connection's start) to complete its headers, then closes the
connection. Its C parser also takes headers of any size (megabytes held per connection,
before any key is checked): past ``MAX_HEADER_BYTES`` (and the read they began in) the
request gets 431 and the connection closes. Body deadlines and size limits are :mod:`bner.serving.guard`'s.

A client that sends requests and never reads the answers (pipelined requests for the 1.5 MB
Swagger bundle, say) fills the socket buffers, megabytes a connection, and holds the
connection for good. When an answer has waited ``write_timeout`` seconds for the client to
read any of it (asyncio has paused writing all that time), the connection is dropped.

``BNER_MAX_CONNECTIONS`` (uvicorn's ``limit_concurrency``) answers 503 to every request past
the cap; liveness and readiness probes are answered all the same, so a flood of idle sockets
cannot get a healthy pod restarted.

It extends uvicorn's httptools protocol (its C parser, part of uvicorn's standard production
stack, which bner installs) and falls back to the pure-Python h11 protocol where httptools is
missing; the header and write deadlines behave the same on both (the header one is tested on
both). The probes' pass past the cap and the pipelined requests' disconnect need the C parser's
callbacks, so they hold on httptools only.
"""

from __future__ import annotations

import asyncio
import functools

from bner.serving.settings import ServingSettings

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as BaseProtocol
except ImportError:  # httptools is not installed
    from uvicorn.protocols.http.h11_impl import H11Protocol as BaseProtocol


MAX_HEADER_BYTES = 64 * 1024  # the request line and headers; browsers and proxies stay far below
TOO_LARGE = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


PROBES = (b"/api/ner/health", b"/api/ner/ready")


class ConnectionLimits:
    """Mixed into uvicorn's HTTP protocol: closes a connection whose request headers take longer
    than ``header_timeout`` seconds, answers 431 to headers over ``MAX_HEADER_BYTES``, drops one
    whose answer goes unread for ``write_timeout`` seconds, and lets probes past the connection cap."""

    header_timeout: float  # set by each protocol class below
    write_timeout: float
    probes: tuple[bytes, ...] = PROBES
    _header_timer: asyncio.TimerHandle | None = None
    _write_timer: asyncio.TimerHandle | None = None
    _unsent: int = 0  # bytes waiting in the write buffer when the write timer was armed
    _in_headers: bool = False  # the C parser has begun a request and not finished its headers
    _header_bytes: int = 0

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._between_requests():
            self._arm()  # a new request starts arriving: its headers get their deadline
        continuing = self._in_headers
        super().data_received(data)
        if not self._between_requests():
            self._disarm()
        # Reads after the one that began the headers count whole; the first may also end a
        # body, so the limit is checked between reads: one read (256 KiB at most) may come on top.
        if self._in_headers and continuing:
            self._header_bytes += len(data)
            if self._header_bytes > MAX_HEADER_BYTES and not self.transport.is_closing():
                self._disarm()
                self.transport.write(TOO_LARGE)
                self.transport.close()

    # The C parser's callbacks (the h11 fallback has a 16 KiB limit of its own and never calls them).
    def on_message_begin(self) -> None:
        self._in_headers, self._header_bytes = True, 0
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._in_headers = False
        cap = self.limit_concurrency
        if cap is not None and self.url.split(b"?", 1)[0] in self.probes:
            self.limit_concurrency = None  # read by uvicorn's on_headers_complete for this request only
        try:
            super().on_headers_complete()
        finally:
            self.limit_concurrency = cap
        # uvicorn marks only the newest request of a connection as disconnected when the client
        # goes; with pipelined requests, an older one still answering would then write to a closed
        # socket and be logged as a server error. Every request still open here is marked instead.
        self._open_cycles = [c for c in getattr(self, "_open_cycles", ()) if not c.response_complete] + [self.cycle]

    def pause_writing(self) -> None:  # asyncio: the write buffer is over its high-water mark
        super().pause_writing()
        if self._write_timer is None:
            self._arm_write_timer()

    def _arm_write_timer(self) -> None:
        self._unsent = self.transport.get_write_buffer_size()
        self._write_timer = self.loop.call_later(self.write_timeout, self._reads_too_slow)

    def resume_writing(self) -> None:  # the client read enough of it
        self._cancel_write_timer()
        super().resume_writing()

    def connection_lost(self, exc) -> None:
        self._disarm()
        self._cancel_write_timer()
        super().connection_lost(exc)
        for cycle in getattr(self, "_open_cycles", ()):
            if cycle is not None and not cycle.response_complete:
                cycle.disconnected = True
                cycle.message_event.set()

    def _cancel_write_timer(self) -> None:
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None

    def _reads_too_slow(self) -> None:
        self._write_timer = None
        if self.transport.get_write_buffer_size() < self._unsent and not self.transport.is_closing():
            self._arm_write_timer()  # a slow reader that read some of it gets another period
            return
        self.transport.abort()  # close() would wait, buffer and all, for a reader that never comes

    def _between_requests(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self._between_requests() and not self.transport.is_closing():
            self.transport.close()


def protocol_with_limits(header_timeout: float, write_timeout: float = 30.0, base: type = BaseProtocol,
                         probes: tuple[bytes, ...] = PROBES) -> type:
    """The protocol for a server in this process (a class made here cannot be sent to worker processes)."""
    return type("LimitedProtocol", (ConnectionLimits, base),
                {"header_timeout": header_timeout, "write_timeout": write_timeout, "probes": probes})


class EnvironmentLimitedProtocol(ConnectionLimits, BaseProtocol):
    """The protocol for worker processes, which uvicorn starts by pickling its config: they import
    this class by name (``WORKER_PROTOCOL``) and read the deadlines from the environment the
    settings come from (BNER_HEADER_TIMEOUT, BNER_WRITE_TIMEOUT)."""

    @property
    def header_timeout(self) -> float:
        return _environment_settings().header_timeout

    @property
    def write_timeout(self) -> float:
        return _environment_settings().write_timeout

    @property
    def probes(self) -> tuple[bytes, ...]:
        return probe_paths(_environment_settings())


WORKER_PROTOCOL = f"{__name__}:{EnvironmentLimitedProtocol.__name__}"


@functools.cache
def _environment_settings() -> ServingSettings:
    return ServingSettings.from_env()


def probe_paths(settings: ServingSettings) -> tuple[bytes, ...]:
    """The paths answered past the connection cap: ours, and Vertex AI's health route where it sets one."""
    extra = settings.vertex_health_route
    return PROBES + ((extra.encode("utf-8", "replace"),) if extra else ())


def uvicorn_options(settings: ServingSettings, worker_processes: bool = False) -> dict:
    """The connection limits, as uvicorn.Config's options (``worker_processes``: for uvicorn's
    multi-process mode, which sends them to each worker, so the protocol goes by name)."""
    return {
        "http": WORKER_PROTOCOL if worker_processes else protocol_with_limits(settings.header_timeout, settings.write_timeout,
                                                                             probes=probe_paths(settings)),
        "timeout_keep_alive": settings.keep_alive,
        "limit_concurrency": settings.max_connections,
        "timeout_graceful_shutdown": settings.shutdown_timeout,
    }

