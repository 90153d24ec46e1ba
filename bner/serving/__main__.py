"""``python -m bner.serving``: run the HTTP API with uvicorn.

Settings come from the environment (:mod:`bner.serving.settings`); flags override them.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys

from bner.arguments import Parser
from bner.config import boolean
from bner.environment import configure_environment
from bner.serving.connections import uvicorn_options
from bner.serving.settings import ServingSettings, fields, shown_default


def parse_args(argv=None, prog: str = "bner-serve") -> argparse.Namespace:
    """The options of :class:`ServingSettings` marked as flags; a flag overrides its environment variable."""
    parser = Parser(prog=prog, description="Serve a bner export over HTTP. Every setting, with its "
                                     "environment variable: docs/deploy.md (python -m bner.serving.settings).")
    if prog == "bner serve":  # the export may come first, as a plain argument: bner serve runs/x/export/bner/1
        parser.usage = "bner serve [MODEL_DIR] [options]"
    for f in fields():
        meta = f.metadata
        if not meta["flag"]:
            continue
        switch = {"nargs": "?", "const": True, "metavar": "true|false"} if meta["kind"] is boolean else {}
        parser.add_argument(f"--{f.name}", type=meta["kind"], choices=meta["choices"], default=None, **switch,
                            help=f"{meta['help']} (default: {shown_default(f)}); env {meta['env']}")
    return parser.parse_args(argv)


def settings_from_args(args: argparse.Namespace) -> ServingSettings:
    return ServingSettings.from_env(**vars(args))


def app_factory():
    """uvicorn's factory for worker processes: settings travel in the environment."""
    configure_environment()
    from bner.serving.app import create_app

    return create_app(ServingSettings.from_env())


def run_workers(host: str, port: int, workers: int) -> None:
    """uvicorn's multi-process mode, on a listening socket bound here.

    uvicorn binds the shared socket without ``IPPROTO_TCP``; connections accepted from it
    then report protocol 0, asyncio does not set ``TCP_NODELAY`` on them, and every
    keep-alive request after the first waits for the client's delayed ACK, tens of
    milliseconds (uvicorn issue #3149; docs/history.md).
    """
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    config = uvicorn.Config(
        "bner.serving.__main__:app_factory", factory=True, host=host, port=port, workers=workers, log_level="warning",
        **uvicorn_options(ServingSettings.from_env(), worker_processes=True),
    )
    listener = tcp_listener(host, port)
    print(f"bner: serving with {workers} worker processes on http://{host}:{port}", flush=True)
    Multiprocess(config, sockets=[listener]).run()


def tcp_listener(host: str, port: int) -> socket.socket:
    """A bound TCP socket whose accepted connections say they are TCP (so they get TCP_NODELAY)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.set_inheritable(True)
    return listener


def main(argv=None, prog: str = "bner-serve") -> int:
    configure_environment()
    args = parse_args(argv, prog)
    import uvicorn

    try:
        settings = settings_from_args(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if settings.workers > 1:
        os.environ.update(settings.environment())  # each worker builds its own app from the environment
        try:
            run_workers(settings.host, settings.port, settings.workers)
        except OSError as e:
            print(f"error: {settings.host}:{settings.port}: {e.strerror or e}", file=sys.stderr)
            return 2
        return 0
    try:  # the address first: a port in use is reported before TensorFlow and the model load
        listener = tcp_listener(settings.host, settings.port)
    except OSError as e:
        print(f"error: {settings.host}:{settings.port}: {e.strerror or e}", file=sys.stderr)
        return 2
    from bner.serving.app import create_app  # the loader imports TensorFlow (quietly, no Keras) only for its runtimes

    try:
        app = create_app(settings)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"bner: serving {settings.model_name} ({app.state.tagger.backend.name}) on http://{settings.host}:{settings.port}", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", **uvicorn_options(settings)))

    def stop(signum, frame):
        # SIGHUP (a closed terminal, some supervisors) would end the process without a word; it
        # stops the server as SIGTERM does: requests in flight are answered first.
        print(f"bner: {signal.Signals(signum).name}: stopping after the requests in flight", file=sys.stderr, flush=True)
        server.handle_exit(signal.SIGTERM, frame)

    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, stop)
    server.run(sockets=[listener])  # after a signal, uvicorn raises it again once stopped: the exit status says which
    return 0


if __name__ == "__main__":
    sys.exit(main())
