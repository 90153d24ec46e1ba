"""The FastAPI application: ``POST /api/ner/recognize`` and friends.

A thin layer: requests are validated here, texts go through the micro-batcher to a
:class:`bner.inference.tagger.Tagger` (in-process SavedModel or TensorFlow Serving), and results
come back as JSON. Importing it imports neither Keras nor TensorFlow.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from importlib import resources
from typing import Annotated

from fastapi import Body, FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from bner.inference.backends import BackendUnavailable
from bner.inference.combined import CombinedTagger
from bner.inference.tagger import Tagger
from bner.serving import budget
from bner.serving.batching import MicroBatcher, Overloaded
from bner.serving.guard import RequestGuard
from bner.serving.settings import ServingSettings

log = logging.getLogger(__name__)


def make_tagger(settings: ServingSettings):
    """The tagger the settings name: the export in this process, or TF Serving with the export's metadata."""
    from bner.inference.loader import load

    if settings.host_name:
        if settings.combine_with:
            raise ValueError("BNER_COMBINE_WITH runs both models in this process; unset HOST_NAME (TF Serving) to combine")
        metadata = settings.metadata_file or settings.model_dir
        if not metadata:
            raise ValueError("the TF Serving backend needs METADATA_FILE (the export's metadata.json) or --model_dir")
        return load(
            metadata, host=settings.host_name, port=settings.grpc_port, model_name=settings.model_name,
            version=settings.model_version, version_label=settings.model_version_label,
            signature_name=settings.signature_name, timeout_seconds=settings.backend_timeout_seconds,
            batch_size=settings.max_batch_size, decoding=settings.decoding, consistent=settings.consistent,
            threshold=settings.threshold,
        )
    model_dir = settings.model_dir or (os.path.dirname(settings.metadata_file) if settings.metadata_file else None)
    if not model_dir:
        raise ValueError("no model: pass --model_dir (an export version folder) or set MODEL_DIR / METADATA_FILE")
    tagger = load(model_dir, signature_name=settings.signature_name, batch_size=settings.max_batch_size,
                  decoding=settings.decoding, consistent=settings.consistent, runtime=settings.runtime, threshold=settings.threshold,
                  combine_with=settings.combine_with, combine=settings.combine)
    if not isinstance(tagger, (Tagger, CombinedTagger)):
        raise ValueError(f"{model_dir}: a compiled dictionary alone is not served; serve a model trained with --dictionary "
                         "(the dictionary and its classifier), or label files with bner predict")
    return tagger


# ---------------------------------------------------------------- API schema


class RecognizeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str | None = Field(None, description="One text to label.")
    texts: list[str] | None = Field(None, description="Several texts to label in one request.")
    include_tokens: bool = Field(False, strict=True, description="Also return the words with their tags and offsets (true or false).")

    @model_validator(mode="after")
    def exactly_one(self):
        if (self.text is None) == (self.texts is None):
            raise ValueError('give exactly one of "text" (a string) or "texts" (a list of strings)')
        return self


# What /docs offers to send ("Try it out" sends the one chosen).
REQUEST_EXAMPLES = {
    "one text": {"value": {"text": "Angela Merkel flew to Paris on Monday."}},
    "several texts": {"value": {"texts": ["Shares of Toyota rose in Tokyo.", "Angela Merkel flew to Paris."]}},
    "with tokens": {"value": {"text": "Angela Merkel flew to Paris.", "include_tokens": True}},
}


class VertexInstance(BaseModel):
    model_config = ConfigDict(extra="allow")  # other fields of an instance (an id, say) are ignored

    text: str


class VertexRequest(BaseModel):
    """Vertex AI's prediction request: instances are texts, or objects with a "text" field."""

    model_config = ConfigDict(extra="forbid")

    instances: list[str | VertexInstance] = Field(description="Texts to label, as strings or {\"text\": ...} objects.")
    parameters: dict | None = Field(None, description='{"include_tokens": true} (the JSON value true) also returns the words with their tags.')


class ErrorOut(BaseModel):
    detail: str = Field(description="What was wrong with the request, or why it cannot be answered now.")


# Every error answer is {"detail": "..."}; the OpenAPI schema says so rather than FastAPI's default list.
ERROR_RESPONSES = {
    413: {"model": ErrorOut, "description": "Too large: more texts, characters or word pieces than the limits allow"},
    422: {"model": ErrorOut, "description": "Not a valid request (fields, types, exactly one of text and texts)"},
    503: {"model": ErrorOut, "description": "Overloaded or the model backend is unavailable; retry after Retry-After"},
}


class EntityOut(BaseModel):
    text: str = Field(description="The entity as it appears in the request text.")
    type: str = Field(description="Entity type, e.g. PER, LOC, ORG, MISC.")
    start: int = Field(description="Offset of the first character in the request text (Python string index, Unicode code points).")
    end: int = Field(description="Offset one past the last character.")
    score: float = Field(description="Mean probability of the entity's word tags (a dictionary model: the classifier's probability of its type).")
    identifier: str | None = Field(None, description="A dictionary model's identifier(s) of the name in its vocabulary (\"|\" between "
                                                     "several), e.g. MESH:D003920; absent when the entity has none.")


class TokenOut(BaseModel):
    text: str
    start: int
    end: int
    tag: str
    score: float


class TextResult(BaseModel):
    text: str
    entities: list[EntityOut]
    tokens: list[TokenOut] | None = None


class VertexResponse(BaseModel):
    predictions: list[TextResult] = Field(description="One result per instance, in order.")
    model: str = Field(description="Model name.")


class RecognizeResponse(BaseModel):
    model: str = Field(description="Model name.")
    results: list[TextResult] = Field(description="One result per input text, in order.")
    # For single-text requests (the original endpoint's shape) the first result's entities are repeated here.
    entities: list[EntityOut] | None = None


# ---------------------------------------------------------------- application


class Metrics:
    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("bner_requests", "HTTP requests", ["endpoint", "status"], registry=self.registry)
        self.latency = Histogram(
            "bner_request_latency_seconds", "Request latency", ["endpoint"], registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.batch_size = Histogram(
            "bner_batch_texts", "Texts per model call", registry=self.registry, buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256)
        )
        self.batch_latency = Histogram("bner_batch_seconds", "Model call latency", registry=self.registry)
        self.errors = Counter("bner_errors", "Failed requests by kind", ["kind"], registry=self.registry)

    def observe_batch(self, texts: int, seconds: float) -> None:
        self.batch_size.observe(texts)
        self.batch_latency.observe(seconds)


def create_app(settings: ServingSettings, tagger=None) -> FastAPI:
    """The service; ``tagger`` (a :class:`bner.inference.tagger.Tagger`) is loaded as ``settings`` say when not given."""
    settings.check()
    if tagger is None:
        tagger = make_tagger(settings)  # bner.load makes one full-length model call before it returns
    elif tagger.backend.name != "tf-serving":  # (TF Serving may start after the client)
        tagger.check(full_length=True)
    metrics = Metrics()
    batcher = MicroBatcher(
        tagger.tag_texts_in_steps, settings.max_batch_size, settings.max_wait_ms, metrics.observe_batch, settings.max_queued_texts,
        call_pieces=settings.max_batch_size * tagger.preprocessor.max_seq_length, max_queued_pieces=settings.max_queued_pieces,
    )
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        batcher.close()

    app = FastAPI(
        lifespan=lifespan,
        docs_url=None,  # served from packaged assets (add_docs): /docs works without internet
        redoc_url=None,
        # /api/ner/recognize/ is a 404, not a redirect built from the client's Host header.
        redirect_slashes=False,
        title="bner",
        description="Named-entity recognition with a fine-tuned BERT. Entities come with character offsets into the request text.",
        version="1",
    )
    app.state.settings, app.state.tagger, app.state.batcher = settings, tagger, batcher
    routes = frozenset()

    def known_routes() -> frozenset:
        nonlocal routes
        routes = routes or frozenset(r.path for r in app.routes)
        return routes

    app.add_middleware(
        RequestGuard, max_body_bytes=settings.max_body_bytes, api_key=settings.api_key, protect_all=settings.protect_all,
        metrics=metrics, routes=known_routes, body_timeout=settings.body_timeout,
        probes=tuple(route for route in (settings.vertex_health_route,) if route),
    )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["GET", "POST"],
            allow_headers=["Content-Type", "X-API-Key"],
        )
    add_error_handlers(app, metrics)
    add_docs(app)
    add_probes_and_metrics(app, settings, tagger, metrics)
    add_recognize(app, settings, tagger, batcher, metrics)
    return app


MAX_ERRORS_SHOWN = 10
MAX_NAME_SHOWN = 64


def shortened(name: str) -> str:
    return name if len(name) <= MAX_NAME_SHOWN else name[:MAX_NAME_SHOWN] + "…"


def add_error_handlers(app: FastAPI, metrics: Metrics) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError):
        metrics.errors.labels("invalid").inc()
        messages = []
        for e in error.errors()[:MAX_ERRORS_SHOWN]:
            # Field names come from the client: a few of them, shortened, so an answer never echoes a huge key.
            where = ".".join(shortened(str(p)) for p in e.get("loc", ()) if p != "body")
            messages.append(f"{where}: {e.get('msg')}" if where else str(e.get("msg")))
        return JSONResponse({"detail": "; ".join(messages) or "invalid request"}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException):
        # A body FastAPI cannot read as JSON at all (not UTF-8, say) is the client's error too.
        if error.status_code == 400:
            metrics.errors.labels("invalid").inc()
        return await http_exception_handler(request, error)

    @app.exception_handler(Overloaded)
    async def overloaded(request: Request, error: Overloaded):
        metrics.errors.labels("overloaded").inc()
        return JSONResponse({"detail": str(error)}, status_code=503, headers={"Retry-After": "1"})

    @app.exception_handler(BackendUnavailable)
    async def unavailable(request: Request, error: BackendUnavailable):
        metrics.errors.labels("backend").inc()
        return JSONResponse({"detail": str(error)}, status_code=503, headers={"Retry-After": "1"})


def add_docs(app: FastAPI) -> None:
    """/docs (Swagger UI) from assets shipped in a Python package, never from a CDN.

    fastapi-offline packages Swagger UI's built files; only its static folder is used here,
    with FastAPI's own page template. (ReDoc is left out: its page fetches a logo from a CDN.)
    """
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles

    assets = str(resources.files("fastapi_offline").joinpath("static"))
    app.mount("/docs/assets", StaticFiles(directory=assets), name="docs-assets")

    def urls(request: Request) -> tuple[str, str]:
        root = request.scope.get("root_path", "").rstrip("/")
        return root + app.openapi_url, root + "/docs/assets"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request):
        openapi, static = urls(request)
        return get_swagger_ui_html(
            openapi_url=openapi, title=f"{app.title} API", swagger_js_url=f"{static}/swagger-ui-bundle.js",
            swagger_css_url=f"{static}/swagger-ui.css", swagger_favicon_url=f"{static}/favicon.png",
            swagger_ui_parameters={"validatorUrl": None, "tryItOutEnabled": True},
        )


def base_model_name(source: str) -> str | None:
    """The pretrained model's name from its folder: ``bert-base-cased``, or ``minilm`` for ``.cache/minilm/model``."""
    parts = [p for p in source.replace("\\", "/").rstrip("/").split("/") if p not in ("", ".")]
    while len(parts) > 1 and parts[-1].lower() in ("model", "models", "checkpoint", "hf", "huggingface"):
        parts.pop()
    return parts[-1] if parts else None


def model_description(settings: ServingSettings, tagger) -> dict:
    """What the page and clients show about the model: name, version, types, scores."""
    metadata = tagger.metadata
    export = metadata.training.get("export", {})
    test = metadata.evaluation.get("test") or {}
    int8 = tagger.backend.name == "onnx-int8"
    return {
        "name": export.get("model_name") or settings.model_name,
        "version": export.get("version"),
        "entity_types": tagger.entity_types,
        "label_scheme": metadata.label_scheme,
        "base_model": base_model_name(str(metadata.pretrained.get("source", ""))),
        "backend": tagger.backend.name,
        "runtime": tagger.backend.name if tagger.backend.name.startswith("onnx") else "tensorflow",
        # how a raw text is cut before tagging: into sentences, or not at all (whole texts; documents:
        # whole, by a model trained on document windows, however its sentences end)
        "text_units": "documents" if metadata.document_windows else "sentences" if metadata.split_sentences else "texts",
        **tagger.scoring,
        # not shown for a server set to decode otherwise than the score was made (models from before
        # scores recorded their scoring keep showing theirs)
        # (nor for the int8 model, which was not what was scored: its own check at export is shown instead)
        "test_f1": test.get("f1") if test.get("scoring", tagger.scoring) == tagger.scoring and not int8 else None,
        **({"int8_check": public_check(metadata.onnx_int8.get("check") or {})} if int8 else {}),
    }


def public_check(check: dict) -> dict:
    """The int8 model's check without the paths of the files it read (the training machine's, not a client's business)."""
    return {**check, "splits": {split: {k: v for k, v in m.items() if k != "file"} for split, m in (check.get("splits") or {}).items()}}


def add_probes_and_metrics(app: FastAPI, settings: ServingSettings, tagger, metrics: Metrics) -> None:
    page_html = resources.files("bner.serving").joinpath("static/index.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page():
        return page_html

    @app.get("/api/ner/health", summary="Liveness: the process is up")
    async def health():
        return {"status": "ok"}

    readiness = Readiness(tagger)
    description = model_description(settings, tagger)

    @app.get("/api/ner/model", summary="The model served: name, version, entity types, decoding, test F1")
    async def model():
        return description

    @app.get("/api/ner/ready", summary="Readiness: the model is loaded and the backend answers")
    async def ready():
        problem = await readiness.problem()
        if problem:
            return JSONResponse({"status": "unavailable", "detail": problem}, status_code=503)
        return {"status": "ready", "model": settings.model_name, "backend": tagger.backend.name, "entity_types": tagger.entity_types}

    for path, probe in (("/api/ner/health", health), ("/api/ner/ready", ready)):  # load balancers probe with HEAD
        app.add_api_route(path, probe, methods=["HEAD"], include_in_schema=False)
    if settings.vertex_health_route:  # Vertex AI sends traffic once this answers 200: ready, not merely alive
        app.add_api_route(settings.vertex_health_route, ready, methods=["GET", "HEAD"], include_in_schema=False)

    @app.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
    async def prometheus_metrics():
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


async def until_disconnected(work, request: Request, poll_seconds: float = 0.25):
    """The result of ``work``, or None (and ``work`` cancelled) once the client has gone away."""
    task = asyncio.ensure_future(work)
    while True:
        done, _ = await asyncio.wait({task}, timeout=poll_seconds)
        if done:
            return task.result()
        if await request.is_disconnected():
            task.cancel()
            return None


class Readiness:
    """The backend's answer to one probe inference, shared by every /ready call within a second.

    One check runs at a time, so a flood of probes cannot take the threads that requests need.
    """

    def __init__(self, tagger, ttl_seconds: float = 1.0):
        self.tagger, self.ttl = tagger, ttl_seconds
        self.lock = asyncio.Lock()
        self.checked_at, self.last = -1e9, None

    async def problem(self) -> str | None:
        async with self.lock:
            if time.monotonic() - self.checked_at > self.ttl:
                try:
                    await asyncio.to_thread(self.tagger.check)
                    self.last = None
                except BackendUnavailable as e:
                    self.last = str(e)
                self.checked_at = time.monotonic()
            return self.last


def add_recognize(app: FastAPI, settings: ServingSettings, tagger, batcher: MicroBatcher, metrics: Metrics) -> None:
    def too_large(detail: str) -> JSONResponse:
        metrics.errors.labels("too_large").inc()
        return JSONResponse({"detail": detail}, status_code=413)

    async def tag(texts: list[str], include_tokens: bool, request: Request) -> list[dict] | Response:
        """Each text's result (``TextResult``'s fields), or the error answer: the limits, then the batcher."""
        if len(texts) > settings.max_texts:
            return too_large(f"{len(texts)} texts in one request; the limit is {settings.max_texts}")
        for i, t in enumerate(texts):
            if len(t) > settings.max_text_chars:
                return too_large(f"text {i} has {len(t)} characters; the limit is {settings.max_text_chars}")
        # A bound from the characters decides most requests without tokenizing; the rest are counted,
        # and counting stops past the limit, so a refused request costs no more than an allowed one.
        pieces = budget.piece_bound(texts)
        if pieces > settings.max_pieces:
            pieces = await asyncio.to_thread(budget.count_pieces, tagger, texts, settings.max_pieces)
        if pieces <= settings.max_pieces and budget.has_classifier(tagger):  # an input for every span it checks
            pieces = await asyncio.to_thread(budget.with_classifier, tagger, texts, pieces, settings.max_pieces)
        if pieces > settings.max_pieces:
            return too_large(f"the texts make over {settings.max_pieces} word pieces, the limit")
        tagged = await until_disconnected(batcher.submit(texts, cost=pieces), request) if texts else []
        if tagged is None:
            metrics.errors.labels("disconnected").inc()
            return Response(status_code=499)  # nobody is listening; the work was dropped
        results = []
        for t in tagged:
            result = {"text": t.text, "entities": [e.as_dict() for e in t.entities]}
            if include_tokens:
                result["tokens"] = [
                    {"text": w.text, "start": w.start, "end": w.end, "tag": tag, "score": round(float(score), 4)}
                    for w, tag, score in zip(t.words, t.tagged.tags, t.tagged.scores)
                ]
            results.append(result)
        return results

    @app.post("/api/ner/recognize", response_model=RecognizeResponse, response_model_exclude_none=True,
              summary="Find the named entities in one text or several", responses=ERROR_RESPONSES)
    async def recognize(body: Annotated[RecognizeRequest, Body(openapi_examples=REQUEST_EXAMPLES)], request: Request):
        results = await tag([body.text] if body.text is not None else body.texts, body.include_tokens, request)
        if isinstance(results, Response):
            return results
        response = {"model": settings.model_name, "results": results}
        if body.text is not None:
            response["entities"] = results[0]["entities"]
        return response

    if settings.vertex_predict_route:
        @app.post(settings.vertex_predict_route, response_model=VertexResponse, response_model_exclude_none=True,
                  summary="Vertex AI prediction: one result per instance", responses=ERROR_RESPONSES)
        async def vertex_predict(body: VertexRequest, request: Request):
            texts = [i if isinstance(i, str) else i.text for i in body.instances]
            results = await tag(texts, (body.parameters or {}).get("include_tokens") is True, request)
            return results if isinstance(results, Response) else {"predictions": results, "model": settings.model_name}
