"""Connection limits uvicorn lacks: a deadline and a size limit for each request's headers.

uvicorn closes a kept-alive connection that stays idle after a response, but a
connection that opens and never sends (or sends its headers a byte at a time, as a
slowloris client does) is held forever, and enough of them exhaust the server's file
descriptors. This protocol gives every request ``header_timeout`` seconds from its first
byte (or from the connection's start) to complete its headers, then closes the
connection. Its C parser also takes headers of any size (megabytes held per connection,
before any key is checked): past ``MAX_HEADER_BYTES`` (and the read they began in) the
request gets 431 and the connection closes. Body deadlines and size limits are :mod:`bner.serving.guard`'s.

It extends uvicorn's httptools protocol (its C parser, part of uvicorn's standard production
stack, which bner installs) and falls back to the pure-Python h11 protocol where httptools is
missing; the header deadline behaves the same on both (tested).
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


class HeaderDeadline:
    """Mixed into uvicorn's HTTP protocol: closes a connection whose request headers take longer
    than ``header_timeout`` seconds, and answers 431 to headers over ``MAX_HEADER_BYTES``."""

    header_timeout: float  # set by each protocol class below
    _header_timer: asyncio.TimerHandle | None = None
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
        super().on_headers_complete()

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)

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


def protocol_with_header_timeout(header_timeout: float, base: type = BaseProtocol) -> type:
    """The protocol for a server in this process (a class made here cannot be sent to worker processes)."""
    return type("HeaderTimeoutProtocol", (HeaderDeadline, base), {"header_timeout": header_timeout})


class EnvironmentHeaderTimeoutProtocol(HeaderDeadline, BaseProtocol):
    """The protocol for worker processes, which uvicorn starts by pickling its config: they import
    this class by name (``WORKER_PROTOCOL``) and read the deadline from the environment the
    settings come from (BNER_HEADER_TIMEOUT)."""

    @property
    def header_timeout(self) -> float:
        return _environment_header_timeout()


WORKER_PROTOCOL = f"{__name__}:{EnvironmentHeaderTimeoutProtocol.__name__}"


@functools.cache
def _environment_header_timeout() -> float:
    return ServingSettings.from_env().header_timeout


def uvicorn_options(settings: ServingSettings, worker_processes: bool = False) -> dict:
    """The connection limits, as uvicorn.Config's options (``worker_processes``: for uvicorn's
    multi-process mode, which sends them to each worker, so the protocol goes by name)."""
    return {
        "http": WORKER_PROTOCOL if worker_processes else protocol_with_header_timeout(settings.header_timeout),
        "timeout_keep_alive": settings.keep_alive,
        "limit_concurrency": settings.max_connections,
    }

