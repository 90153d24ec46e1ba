# syntax=docker/dockerfile:1
#
# bner client image: the HTTP API (FastAPI + uvicorn) in front of the model.
#
# Two ways to build it (paths are relative to the build context, the repo root):
#
#   GPU deployment (the model runs in TF Serving, see Dockerfile.serving):
#     docker build -t bner-client \
#       --build-arg METADATA=runs/sample/export/bner/1 --build-arg MODEL_NAME=bner .
#
#   CPU deployment (the export's model.onnx runs inside this container, in ONNX Runtime; no
#   TensorFlow: Python packages of about 260 MB instead of about 2.5 GB):
#     docker build -t bner-client-slim --build-arg EXTRAS=gcs \
#       --build-arg METADATA=runs/sample/export/bner/1 \
#       --build-arg MODEL_DIR=runs/sample/export/bner/1 --build-arg MODEL_NAME=bner .
#   (without EXTRAS=gcs the image keeps TensorFlow, for BNER_RUNTIME=tensorflow.)
#
# METADATA names the export's metadata.json or the export version folder holding it;
# tokenizer.json is taken from the same folder. MODEL_DIR (optional) names an export
# version folder to copy whole (saved_model.pb, variables/, metadata.json, tokenizer.json).
# The staged files land in /srv/bner/model whichever way they were named.

ARG PYTHON_IMAGE=python:3.11.16-slim-trixie

# ---------------------------------------------------------------------------
# Stage 1: install the package and its dependencies into a virtual environment.
FROM ${PYTHON_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# Only what `pip install .` needs: metadata first, then the package itself. The gcs extra
# lets METADATA_FILE / --model_dir name gs:// paths; tfserving is the client of TF Serving
# (and brings TensorFlow, for the SavedModel runtime too). Without it the image is the base
# install: ONNX Runtime, no TensorFlow.
ARG EXTRAS=gcs,tfserving
COPY pyproject.toml README.md ./
COPY bner ./bner
RUN pip install --no-cache-dir "/src[${EXTRAS}]" \
    && python -c "import importlib.util, sys; sys.exit('torch must not be in the client image' if importlib.util.find_spec('torch') else 0)"

# ---------------------------------------------------------------------------
# Stage 2: pick the model files named by the build args out of the build context.
FROM ${PYTHON_IMAGE} AS model

ARG METADATA=
ARG MODEL_DIR=

RUN --mount=type=bind,source=.,target=/context \
    set -eu; \
    metadata="${METADATA:-${MODEL_DIR}}"; \
    if [ -z "${metadata}" ]; then \
        echo "set --build-arg METADATA=<export version folder or its metadata.json>" >&2; exit 1; \
    fi; \
    mkdir -p /out/model; \
    if [ -n "${MODEL_DIR}" ]; then \
        test -f "/context/${MODEL_DIR}/saved_model.pb" \
            || { echo "MODEL_DIR=${MODEL_DIR} holds no saved_model.pb" >&2; exit 1; }; \
        cp -R "/context/${MODEL_DIR}/." /out/model/; \
    fi; \
    if [ -d "/context/${metadata}" ]; then src="/context/${metadata}/metadata.json"; else src="/context/${metadata}"; fi; \
    cp "${src}" /out/model/metadata.json; \
    cp "$(dirname "${src}")/tokenizer.json" /out/model/tokenizer.json; \
    rm -f /out/model/metadata.pkl; \
    chmod -R a+rX,go-w /out/model

# ---------------------------------------------------------------------------
# Stage 3: the runtime image.
FROM ${PYTHON_IMAGE} AS runtime

ARG MODEL_NAME=bner

LABEL org.opencontainers.image.title="bner client" \
      org.opencontainers.image.description="HTTP API for BERT named-entity recognition" \
      org.opencontainers.image.licenses="Apache-2.0"

RUN groupadd --system --gid 10001 bner \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin bner

COPY --from=build /opt/venv /opt/venv
COPY --from=model /out/model /srv/bner/model

# METADATA_FILE, MODEL_NAME, HOST_NAME and GRPC_SERVER_PORT keep the original meaning.
# HOST_NAME is deliberately unset: set it (e.g. to localhost) to use TF Serving over gRPC;
# without it the SavedModel in MODEL_DIR runs in-process (CPU image only).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    KERAS_BACKEND=tensorflow \
    KERAS_HOME=/tmp/.keras \
    TF_CPP_MIN_LOG_LEVEL=2 \
    METADATA_FILE=/srv/bner/model/metadata.json \
    MODEL_DIR=/srv/bner/model \
    MODEL_NAME=${MODEL_NAME} \
    GRPC_SERVER_PORT=8500 \
    PORT=8080

WORKDIR /srv/bner
USER 10001:10001
EXPOSE 8080

HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/api/ner/health' % os.environ.get('PORT', '8080'), timeout=4)"]

CMD ["bner-serve"]
