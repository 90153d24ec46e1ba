"""The server's settings, each declared once: its field, environment variable, type, default and help.

:class:`ServingSettings` reads them from the environment (:meth:`ServingSettings.from_env`), checks
them, hands them to worker processes (:meth:`ServingSettings.environment`), and gives
``bner serve``'s options and the settings table of docs/deploy.md (``python -m bner.serving.settings``).
Importing it imports neither Keras nor TensorFlow.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable
from typing import Any

from bner.config import boolean
from bner.inference.backends import RUNTIME_HELP, RUNTIMES
from bner.inference.decoding import (
    COMBINE_HELP,
    COMBINE_MODES,
    CONSISTENT_HELP,
    DECODING_HELP,
    DECODINGS,
    THRESHOLD_HELP,
    check_threshold,
)
from bner.model.metadata import SIGNATURE


def setting(
    env: str,
    default: Any,
    help: str,
    kind: Callable[[str], Any] = str,
    check: str | None = None,
    flag: bool = False,
    shown: str | None = None,
    choices: tuple[str, ...] | None = None,
):
    """A settings field. ``check``: ``positive`` or ``not_negative``; ``flag``: also a ``bner serve`` option;
    ``shown``: the default as the table shows it, where the value alone would not say it."""
    metadata = {"env": env, "kind": kind, "help": help, "check": check, "flag": flag, "shown": shown, "choices": choices}
    return dataclasses.field(default=default, metadata=metadata)


def origins(text: str) -> tuple[str, ...]:
    """Comma-separated CORS origins."""
    return tuple(o.strip() for o in text.split(",") if o.strip())


@dataclasses.dataclass(frozen=True)
class ServingSettings:
    """Everything the service is configured with."""

    # the model
    model_dir: str | None = setting("MODEL_DIR", None, "export version folder (…/export/<model_name>/<version>), or a run "
                                    "or model folder bner.load takes, for the in-process backend (unset: Vertex AI's AIP_STORAGE_URI, if set)", flag=True)
    metadata_file: str | None = setting("METADATA_FILE", None, "the export's metadata.json (tokenizer.json beside it), "
                                        "for the TF Serving backend", flag=True)
    host_name: str | None = setting("HOST_NAME", None, "TensorFlow Serving host: when set, the model runs there (gRPC) "
                                    "instead of in this process", flag=True)
    grpc_port: int = setting("GRPC_SERVER_PORT", 8500, "TensorFlow Serving gRPC port", int, "positive", flag=True)
    model_name: str = setting("MODEL_NAME", "bner", "model name in TensorFlow Serving and in answers", flag=True)
    model_version: int | None = setting("MODEL_VERSION", None, "TF Serving model version (default: its latest)", int)
    model_version_label: str | None = setting("MODEL_VERSION_LABEL", None, "TF Serving version label")
    signature_name: str = setting("SIGNATURE_NAME", SIGNATURE, "the SavedModel signature")
    backend_timeout_seconds: float = setting("BNER_BACKEND_TIMEOUT", 10.0, "seconds for one TF Serving call", float, "positive")
    decoding: str = setting("BNER_DECODING", "constrained", DECODING_HELP, flag=True, choices=DECODINGS)
    consistent: bool = setting("BNER_CONSISTENT", True, CONSISTENT_HELP, boolean, flag=True)
    runtime: str = setting("BNER_RUNTIME", "auto", RUNTIME_HELP, flag=True, choices=RUNTIMES)
    threshold: float | None = setting("BNER_THRESHOLD", None, THRESHOLD_HELP, float, flag=True, shown="0.5")
    combine_with: str | None = setting("BNER_COMBINE_WITH", None, "a second model, combined with MODEL_DIR's in this process: "
                                       "a token tagger and a dictionary model (trained with --dictionary), either order", flag=True)
    combine: str = setting("BNER_COMBINE", "union", f"how BNER_COMBINE_WITH combines: {COMBINE_HELP}", flag=True, choices=COMBINE_MODES)
    # the process
    host: str = setting("BNER_HOST", "0.0.0.0", "address to listen on", flag=True)
    port: int = setting("PORT", 8080, "HTTP port to listen on (unset: Vertex AI's AIP_HTTP_PORT, if set)", int, "positive", flag=True)
    workers: int = setting("WEB_CONCURRENCY", 1, "uvicorn worker processes, each with its own model and /metrics "
                           "counters (the images run one a pod)", int, "positive", flag=True)
    # batching
    max_batch_size: int = setting("BNER_MAX_BATCH_SIZE", 16, "texts per model call", int, "positive", flag=True)
    max_wait_ms: float = setting("BNER_MAX_WAIT_MS", 5.0, "milliseconds the first text waits for company", float,
                                 "not_negative", flag=True)
    # request limits (413)
    max_body_bytes: int = setting("BNER_MAX_BODY_BYTES", 2_000_000, "request body bytes, declared or chunked (413)", int, "positive")
    max_texts: int = setting("BNER_MAX_TEXTS", 256, "texts per request (413)", int, "positive")
    max_text_chars: int = setting("BNER_MAX_TEXT_CHARS", 100_000, "characters per text (413)", int, "positive")
    max_pieces: int = setting("BNER_MAX_PIECES", 32_768, "word pieces per request, the model's work, so a text of "
                              "punctuation is held to the same budget (413)", int, "positive")
    # overload (503) and connections
    max_queued_texts: int = setting("BNER_MAX_QUEUED_TEXTS", 4096, "texts waiting for the model; beyond, 503 with "
                                    "Retry-After", int, "positive")
    max_queued_pieces: int = setting("BNER_MAX_QUEUED_PIECES", 65_536, "word pieces waiting for the model, the work "
                                     "queued; beyond, 503 with Retry-After (at least BNER_MAX_PIECES)", int, "positive")
    max_connections: int = setting("BNER_MAX_CONNECTIONS", 1024, "open connections, idle ones included; beyond, 503 on "
                                   "every path but the probes (/api/ner/health, /api/ner/ready)", int, "positive")
    header_timeout: float = setting("BNER_HEADER_TIMEOUT", 10.0, "seconds for a request's headers, then the connection "
                                    "closes (headers past 64 KiB get 431)", float, "positive")
    body_timeout: float = setting("BNER_BODY_TIMEOUT", 30.0, "seconds for a request's body (408)", float, "positive")
    write_timeout: float = setting("BNER_WRITE_TIMEOUT", 30.0, "seconds an answer may wait for the client to read any "
                                   "of it, then the connection is dropped", float, "positive")
    shutdown_timeout: float = setting("BNER_SHUTDOWN_TIMEOUT", 20.0, "seconds after SIGTERM for requests in flight, "
                                      "then the rest are cut off (Kubernetes allows 25 after our 5 s preStop)", float, "positive")
    keep_alive: float = setting("BNER_KEEP_ALIVE", 5.0, "idle seconds before a kept-alive connection closes", float, "positive")
    # access
    api_key: str | None = setting("BNER_API_KEY", None, "when set, recognize needs a matching X-API-Key header "
                                  "(checked before the body is read)")
    protect_all: bool = setting("BNER_PROTECT_ALL", False, "the key also guards /metrics, /api/ner/ready, /api/ner/model, "
                                "/docs and / (never /api/ner/health); read strictly: a typo stops the server", boolean)
    # Vertex AI endpoints (custom-container contract): set by Vertex AI, read as given
    vertex_predict_route: str | None = setting("AIP_PREDICT_ROUTE", None, "Vertex AI: the path that takes "
                                               '{"instances": [...]} and answers {"predictions": [...]}')
    vertex_health_route: str | None = setting("AIP_HEALTH_ROUTE", None, "Vertex AI: the health check's path "
                                              "(200 once the model answers, as /api/ner/ready)")
    cors_origins: tuple[str, ...] = setting("BNER_CORS_ORIGINS", (), "comma-separated origins allowed by CORS; unset: "
                                            "CORS off", origins, shown="unset")

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> ServingSettings:
        """Settings from environment variables (``os.environ`` by default), then ``overrides`` that are not None."""
        env = os.environ if env is None else env
        # Vertex AI names the port and the model's Cloud Storage folder in its own variables.
        env = {**env, **{ours: env[theirs] for ours, theirs in (("PORT", "AIP_HTTP_PORT"), ("MODEL_DIR", "AIP_STORAGE_URI"))
                         if env.get(theirs) and not env.get(ours)}}
        values = {}
        for f in fields():
            text = env.get(f.metadata["env"])
            if text in (None, ""):
                continue
            try:
                values[f.name] = f.metadata["kind"](text)
            except ValueError:
                kind = f.metadata["kind"]
                expected = "true or false" if kind is boolean else getattr(kind, "__name__", "a value")
                raise ValueError(f"{f.metadata['env']}={text!r}: expected {expected}") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        """Refuse values that cannot work (a batch of 0 would spin the batcher), naming the variable."""
        for f in fields():
            value, env = getattr(self, f.name), f.metadata["env"]
            if f.metadata["check"] == "positive" and not value > 0:
                raise ValueError(f"{env}={value}: must be greater than 0")
            if f.metadata["check"] == "not_negative" and not value >= 0:
                raise ValueError(f"{env}={value}: must be 0 or more")
            if f.metadata["choices"] and value not in f.metadata["choices"]:
                raise ValueError(f"{env}={value!r}: expected one of {', '.join(f.metadata['choices'])}")
        for env, route in (("AIP_PREDICT_ROUTE", self.vertex_predict_route), ("AIP_HEALTH_ROUTE", self.vertex_health_route)):
            if route is not None and not (route.startswith("/") and len(route) > 1 and " " not in route):
                raise ValueError(f"{env}={route!r}: expected a path such as /v1/endpoints/1/deployedModels/2:predict")
        if self.threshold is not None:
            try:
                check_threshold(self.threshold)
            except ValueError as error:
                raise ValueError(f"BNER_THRESHOLD={self.threshold}: {error}") from None
        if self.max_queued_pieces < self.max_pieces:
            raise ValueError(f"BNER_MAX_QUEUED_PIECES={self.max_queued_pieces}: must be at least BNER_MAX_PIECES={self.max_pieces}, "
                             "or a request within its budget could never be taken")

    def environment(self) -> dict[str, str]:
        """The settings as environment variables, for worker processes: ``from_env`` reads back these settings."""
        out = {}
        for f in fields():
            value = getattr(self, f.name)
            if value is None:
                continue
            if isinstance(value, bool):
                value = "true" if value else "false"
            elif isinstance(value, tuple):
                value = ",".join(value)
            out[f.metadata["env"]] = str(value)
        return out


def fields() -> tuple[dataclasses.Field, ...]:
    return dataclasses.fields(ServingSettings)


def shown_default(f: dataclasses.Field) -> str:
    if f.metadata["shown"]:
        return f.metadata["shown"]
    if f.default is None:
        return "unset"
    if isinstance(f.default, bool):
        return "true" if f.default else "false"
    return f"{f.default:g}" if isinstance(f.default, float) else str(f.default)


def markdown_table() -> str:
    """The settings table of docs/deploy.md."""
    rows = ["| variable | meaning | default |", "|---|---|---|"]
    rows += [f"| `{f.metadata['env']}` | {f.metadata['help']} | `{shown_default(f)}` |" for f in fields()]
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    sys.stdout.write(markdown_table())
