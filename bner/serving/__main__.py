"""``python -m bner.serving``: run the HTTP API with uvicorn.

Flags override the environment (METADATA_FILE, MODEL_NAME, HOST_NAME, GRPC_SERVER_PORT, ...).
"""

from __future__ import annotations

import argparse
import os
import socket
import sys

from bner.cli import add_decoding_options
from bner.settings import configure_environment, import_tensorflow_quietly


def parse_args(argv=None, prog: str = "bner-serve") -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=prog, description="Serve a bner export over HTTP.")
    if prog == "bner serve":  # the export may come first, as a plain argument: bner serve runs/x/export/bner/1
        parser.usage = "bner serve [MODEL_DIR] [options]"
    parser.add_argument("--model_dir", help="export version folder (…/export/<model_name>/<version>), or a run folder "
                                             "or model folder bner.load takes; env MODEL_DIR")
    parser.add_argument("--metadata_file", help="the export's metadata.json, for the TF Serving backend; env METADATA_FILE")
    parser.add_argument("--host_name", help="TensorFlow Serving host: use it over gRPC instead of running the model here; env HOST_NAME")
    parser.add_argument("--grpc_port", type=int, help="TensorFlow Serving gRPC port (default 8500); env GRPC_SERVER_PORT")
    parser.add_argument("--model_name", help="model name in TensorFlow Serving (default bner); env MODEL_NAME")
    parser.add_argument("--host", default=os.environ.get("BNER_HOST", "0.0.0.0"), help="address to listen on (default 0.0.0.0)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")), help="port to listen on (default 8080); env PORT")
    parser.add_argument("--workers", type=int, default=int(os.environ.get("WEB_CONCURRENCY", "1")), help="uvicorn worker processes; env WEB_CONCURRENCY")
    parser.add_argument("--max_batch_size", type=int, help="texts per model call (default 16); env BNER_MAX_BATCH_SIZE")
    parser.add_argument("--max_wait_ms", type=float, help="wait for more texts before a model call (default 5); env BNER_MAX_WAIT_MS")
    add_decoding_options(parser, environment=True)
    return parser.parse_args(argv)


def settings_from_args(args: argparse.Namespace):
    from bner.serving.app import ServingSettings

    return ServingSettings.from_env(
        model_dir=args.model_dir, metadata_file=args.metadata_file, host_name=args.host_name, grpc_port=args.grpc_port,
        model_name=args.model_name, max_batch_size=args.max_batch_size, max_wait_ms=args.max_wait_ms,
        decoding=args.decoding, consistent=args.consistent,
    )


def app_factory():
    """uvicorn's factory for worker processes: settings travel in the environment."""
    configure_environment()
    import_tensorflow_quietly(without_keras=True)
    from bner.serving.app import ServingSettings, create_app

    return create_app(ServingSettings.from_env())


def run_workers(host: str, port: int, workers: int) -> None:
    """uvicorn's multi-process mode, on a listening socket bound here.

    uvicorn binds the shared socket without ``IPPROTO_TCP``; connections accepted from it
    then report protocol 0, asyncio does not set ``TCP_NODELAY`` on them, and every
    keep-alive request after the first waits ~40 ms for the client's delayed ACK (uvicorn
    issue #3149; measured here: /health 1.6 ms with one worker, 44 ms with two).
    """
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from bner.serving.app import ServingSettings, uvicorn_options

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

    import_tensorflow_quietly(without_keras=True)  # serving runs a SavedModel: TensorFlow, no Keras
    try:
        settings = settings_from_args(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.workers > 1:
        # Each worker builds its own app from the environment.
        for key, value in {"MODEL_DIR": settings.model_dir, "METADATA_FILE": settings.metadata_file, "HOST_NAME": settings.host_name,
                           "GRPC_SERVER_PORT": settings.grpc_port, "MODEL_NAME": settings.model_name,
                           "BNER_MAX_BATCH_SIZE": settings.max_batch_size, "BNER_MAX_WAIT_MS": settings.max_wait_ms,
                           "BNER_DECODING": settings.decoding, "BNER_CONSISTENT": settings.consistent}.items():
            if value is not None:
                os.environ[key] = str(value)
        try:
            run_workers(args.host, args.port, args.workers)
        except OSError as e:
            print(f"error: {args.host}:{args.port}: {e.strerror or e}", file=sys.stderr)
            return 2
        return 0
    from bner.serving.app import create_app, uvicorn_options

    try:
        app = create_app(settings)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"bner: serving {settings.model_name} ({app.state.tagger.backend.name}) on http://{args.host}:{args.port}", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", **uvicorn_options(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
