"""Offline checks of the Vertex AI custom-job specs in configurations/ and the image they run.

Each file is what ``gcloud ai custom-jobs create --config`` takes: a ``CustomJobSpec`` in YAML
(camelCase keys, as in the v1 REST reference). The checks cover the fields the API requires,
the machine and accelerator pairs Vertex AI documents for training, and the job's arguments:
they are parsed by absl against ``bner.ner.task``'s real flag definitions, so a renamed flag or
a bad value fails here rather than minutes into a cloud job. Nothing is submitted anywhere.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
from absl import flags

from bner.cli import flags as task_flags

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[1]
HPTUNING = ROOT / "configurations" / "vertex_hptuning.yaml"
# CustomJobSpecs, the format `gcloud ai custom-jobs create --config` takes; the tuning job holds one.
CONFIGURATIONS = sorted(p for p in (ROOT / "configurations").glob("*.yaml") if p != HPTUNING)
DOCKERFILE_TRAIN = ROOT / "Dockerfile.train"

# Fields of CustomJobSpec, WorkerPoolSpec, MachineSpec, ContainerSpec and PythonPackageSpec
# (Vertex AI REST reference, v1).
JOB_SPEC_FIELDS = {
    "workerPoolSpecs", "scheduling", "serviceAccount", "network", "reservedIpRanges", "pscInterfaceConfig",
    "baseOutputDirectory", "protectedArtifactLocationId", "tensorboard", "enableWebAccess",
    "enableDashboardAccess", "experiment", "experimentRun", "models", "persistentResourceId",
}
POOL_FIELDS = {"machineSpec", "replicaCount", "containerSpec", "pythonPackageSpec", "diskSpec", "nfsMounts", "lustreMounts"}
MACHINE_FIELDS = {"machineType", "acceleratorType", "acceleratorCount", "tpuTopology", "reservationAffinity"}
CONTAINER_FIELDS = {"imageUri", "command", "args", "env"}
PACKAGE_FIELDS = {"executorImageUri", "packageUris", "pythonModule", "args", "env"}

# GPU machine families and the GPU types Vertex AI training pairs them with.
GPU_FAMILIES = {
    "n1-": {"NVIDIA_TESLA_T4", "NVIDIA_TESLA_V100", "NVIDIA_TESLA_P100", "NVIDIA_TESLA_P4"},
    "g2-standard-": {"NVIDIA_L4"},
    "a2-highgpu-": {"NVIDIA_TESLA_A100"},
    "a2-megagpu-": {"NVIDIA_TESLA_A100"},
    "a2-ultragpu-": {"NVIDIA_A100_80GB"},
    "a3-highgpu-": {"NVIDIA_H100_80GB"},
    "a3-megagpu-": {"NVIDIA_H100_MEGA_80GB"},
}
G2_GPU_COUNT = {4: 1, 8: 1, 12: 1, 16: 1, 24: 2, 32: 1, 48: 4, 96: 8}
# TPU v5e machine types: single-host slices are the topologies whose chips fit on one VM.
TPU_VM_MACHINE = re.compile(r"ct5lp-hightpu-(\d)t")
CAMEL_CASE = re.compile(r"[a-z][a-zA-Z0-9]*")
FLAG_ARG = re.compile(r"--([a-z][a-z0-9_]*)=(.*)", re.DOTALL)
PATH_FLAGS = ("data_dir", "output_dir", "pretrained_model", "export_dir", "bert_config_file", "vocab_file", "init_checkpoint", "predict_file")
TASK_FLAGS = {f.name for f in flags.FLAGS.get_key_flags_for_module(task_flags)}

# Placeholders one sed line fills in (docs/cloud.md).
IMAGE_PREFIX = "REGION-docker.pkg.dev/PROJECT_ID/bner/bner-train:"
BUCKET_PREFIX = "gs://BUCKET/"
PREBUILT_PREFIX = "us-docker.pkg.dev/vertex-ai/training/"


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _load(path: Path) -> dict:
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(spec, dict), f"{_rel(path)}: expected a mapping (a CustomJobSpec)"
    return spec


def _positive_int(value) -> int | None:
    """The int a JSON int64 field holds (YAML int or digit string), or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    if isinstance(value, str) and value.isdigit() and int(value) > 0:
        return int(value)
    return None


def _program(pool: dict) -> dict:
    return pool.get("containerSpec") or pool.get("pythonPackageSpec") or {}


def _is_tpu(pool: dict) -> bool:
    machine_type = str(pool.get("machineSpec", {}).get("machineType"))
    return machine_type == "cloud-tpu" or bool(TPU_VM_MACHINE.fullmatch(machine_type))


def _gpu_type(pool: dict) -> str | None:
    accelerator = pool["machineSpec"].get("acceleratorType", "")
    return accelerator if accelerator.startswith("NVIDIA_") else None


def _strings(node) -> list[str]:
    if isinstance(node, dict):
        return [s for value in node.values() for s in _strings(value)]
    if isinstance(node, list):
        return [s for item in node for s in _strings(item)]
    return [node] if isinstance(node, str) else []


def _key_problems(node, where: str = "") -> list[str]:
    problems = []
    if isinstance(node, dict):
        for key, value in node.items():
            if not (isinstance(key, str) and CAMEL_CASE.fullmatch(key)):
                problems.append(f"{where}{key}: keys are camelCase (gcloud rejects keys with underscores)")
            problems += _key_problems(value, f"{where}{key}.")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            problems += _key_problems(item, f"{where}{i}.")
    return problems


def _machine_problems(machine: dict) -> list[str]:
    """Accelerator type, count and topology agree with the machine type."""
    machine_type = machine.get("machineType")
    accelerator, count = machine.get("acceleratorType"), machine.get("acceleratorCount")
    if not isinstance(machine_type, str) or not machine_type:
        return ["machineSpec.machineType is required"]
    if (accelerator is None) != (count is None):
        return [f"{machine_type}: acceleratorType and acceleratorCount go together"]
    if count is not None and _positive_int(count) is None:
        return [f"{machine_type}: acceleratorCount must be a positive integer, not {count!r}"]
    count = _positive_int(count)
    tpu_vm = TPU_VM_MACHINE.fullmatch(machine_type)
    if "tpuTopology" in machine and not tpu_vm:
        return [f"{machine_type}: tpuTopology is for TPU VM machine types"]
    if machine_type == "cloud-tpu":
        # bner connects to the TPU on its own VM: one host, 8 cores (v2-8 / v3-8).
        if accelerator not in ("TPU_V2", "TPU_V3") or count != 8:
            return [f"cloud-tpu takes acceleratorType TPU_V2 or TPU_V3 with acceleratorCount 8, not {accelerator} × {count}"]
        return []
    if tpu_vm:
        topology = re.fullmatch(r"(\d+)x(\d+)", str(machine.get("tpuTopology", "")))
        if accelerator is not None:
            return [f"{machine_type}: TPU v5e machine types take tpuTopology, not acceleratorType"]
        if not topology:
            return [f"{machine_type}: tpuTopology (e.g. 2x2) is required"]
        chips = int(topology[1]) * int(topology[2])
        if chips != int(tpu_vm[1]):
            return [f"{machine_type} has {tpu_vm[1]} chips; topology {machine['tpuTopology']} spans {chips} (bner needs a single-host slice)"]
        return []
    family = next((f for f in GPU_FAMILIES if machine_type.startswith(f)), None)
    if accelerator is None:
        return [f"{machine_type} needs a GPU"] if family and family != "n1-" else []
    if family is None or accelerator not in GPU_FAMILIES[family]:
        return [f"{machine_type} cannot take {accelerator}"]
    size = int(re.search(r"-(\d+)g?$", machine_type)[1])
    if family == "n1-":
        expected = count if count in (1, 2, 4, 8) else "1, 2, 4 or 8"
    else:
        expected = G2_GPU_COUNT.get(size) if family == "g2-standard-" else size
    if count != expected:
        return [f"{machine_type} comes with {expected} × {accelerator}, not {count}"]
    return []


def _pool_problems(pool, index: int) -> list[str]:
    where = f"workerPoolSpecs[{index}]"
    if not isinstance(pool, dict):
        return [f"{where}: expected a mapping"]
    problems = [f"{where}.{key}: not a WorkerPoolSpec field" for key in set(pool) - POOL_FIELDS]
    if _positive_int(pool.get("replicaCount")) is None:
        problems.append(f"{where}.replicaCount must be a positive integer, not {pool.get('replicaCount')!r}")
    machine = pool.get("machineSpec")
    if not isinstance(machine, dict):
        return [*problems, f"{where}.machineSpec is required"]
    problems += [f"{where}.machineSpec.{key}: not a MachineSpec field" for key in set(machine) - MACHINE_FIELDS]
    problems += [f"{where}: {p}" for p in _machine_problems(machine)]

    kinds = [k for k in ("containerSpec", "pythonPackageSpec") if k in pool]
    if len(kinds) != 1:
        return [*problems, f"{where}: exactly one of containerSpec and pythonPackageSpec, found {kinds}"]
    (kind,) = kinds
    spec, fields = pool[kind], CONTAINER_FIELDS if kind == "containerSpec" else PACKAGE_FIELDS
    problems += [f"{where}.{kind}.{key}: not a {kind[0].upper() + kind[1:]} field" for key in set(spec) - fields]
    required = ("imageUri",) if kind == "containerSpec" else ("executorImageUri", "packageUris", "pythonModule")
    problems += [f"{where}.{kind}.{key} is required" for key in required if not spec.get(key)]
    if kind == "pythonPackageSpec":
        uris = spec.get("packageUris") or []
        if not isinstance(uris, list) or not all(isinstance(u, str) and u.startswith("gs://") and u.endswith((".tar.gz", ".whl")) for u in uris):
            problems.append(f"{where}.pythonPackageSpec.packageUris: gs:// URIs of .tar.gz or .whl files")
    args = spec.get("args", [])
    if not (isinstance(args, list) and all(isinstance(a, str) for a in args)):
        problems.append(f"{where}.{kind}.args: a list of strings")
    return problems


def spec_problems(spec: dict) -> list[str]:
    """What the CustomJob API (or gcloud) would reject in a CustomJobSpec, as messages."""
    problems = [f"{key}: not a CustomJobSpec field (--config takes the jobSpec part only)" for key in set(spec) - JOB_SPEC_FIELDS]
    problems += _key_problems(spec)
    pools = spec.get("workerPoolSpecs")
    if not isinstance(pools, list) or not pools:
        return [*problems, "workerPoolSpecs: a non-empty list is required"]
    for i, pool in enumerate(pools):
        problems += _pool_problems(pool, i)
    if any(isinstance(p, dict) and _is_tpu(p) for p in pools):
        if len(pools) != 1 or _positive_int(pools[0].get("replicaCount")) != 1:
            problems.append("a TPU job has one worker pool with one replica")
    base = spec.get("baseOutputDirectory")
    if base is not None and (set(base) != {"outputUriPrefix"} or not str(base["outputUriPrefix"]).startswith("gs://")):
        problems.append("baseOutputDirectory: {outputUriPrefix: gs://...}")
    return problems


def parse_task_args(args: list[str]) -> flags.FlagValues:
    """The arguments parsed by absl against bner.ner.task's flags, as the job would parse them.

    A deep copy of the flag registry keeps the process-wide ``FLAGS`` unparsed.
    """
    for arg in args:
        match = FLAG_ARG.fullmatch(arg)
        if not match:
            raise ValueError(f"{arg!r}: write each flag as --name=value (one list item each)")
        if match[1] not in TASK_FLAGS:
            raise ValueError(f"{arg!r}: not a flag of bner.ner.task")
    values = copy.deepcopy(flags.FLAGS)
    leftover = values(["bner.ner.task", *args])
    if leftover[1:]:
        raise ValueError(f"bner.ner.task takes no positional arguments: {leftover[1:]}")
    return values


def args_problems(args: list[str]) -> list[str]:
    try:
        values = parse_task_args(args)
    except (ValueError, flags.Error) as e:
        return [str(e)]
    problems = []
    if not (values.do_train or values.do_eval or values.do_predict or values.do_export):
        problems.append("nothing to do: set --do_train, --do_eval, --do_predict or --do_export")
    if values.do_train and not (values.pretrained_model or values.bert_config_file):
        problems.append("--do_train needs --pretrained_model (or the original --bert_config_file trio)")
    for name in PATH_FLAGS:
        value = values[name].value
        if values[name].present and not str(value).startswith("gs://"):
            problems.append(f"--{name}={value}: a cloud job reads and writes gs:// paths")
    if values.use_tpu and not (values.tpu_name or values.master):
        problems.append("--use_tpu needs --tpu_name (local on a TPU VM)")
    return problems


# --------------------------------------------------------------------------------------------


def test_the_configurations_exist():
    names = {p.name for p in CONFIGURATIONS}
    assert {"vertex_tpu.yaml", "vertex_gpu.yaml", "vertex_gpu_multiworker.yaml", "vertex_package.yaml"} <= names


@pytest.mark.parametrize("path", CONFIGURATIONS, ids=_rel)
def test_is_a_valid_custom_job_spec(path):
    assert spec_problems(_load(path)) == []


@pytest.mark.parametrize("path", CONFIGURATIONS, ids=_rel)
def test_args_are_bner_task_flags(path):
    for i, pool in enumerate(_load(path)["workerPoolSpecs"]):
        assert args_problems(_program(pool).get("args", [])) == [], f"workerPoolSpecs[{i}]"


@pytest.mark.parametrize("path", CONFIGURATIONS, ids=_rel)
def test_file_name_says_which_accelerator(path):
    pools = _load(path)["workerPoolSpecs"]
    for pool in pools:
        values = parse_task_args(_program(pool).get("args", []))
        if "tpu" in path.stem:
            assert _is_tpu(pool), "a TPU configuration asks for a TPU machine"
            assert values.use_tpu and values.tpu_name == "local", "on a TPU VM the TPU is local: --use_tpu=true --tpu_name=local"
        elif "gpu" in path.stem:
            assert _gpu_type(pool), "a GPU configuration asks for NVIDIA GPUs"
            assert not values.use_tpu
        else:
            assert not _is_tpu(pool) and not _gpu_type(pool) and not values.use_tpu


@pytest.mark.parametrize("path", CONFIGURATIONS, ids=_rel)
def test_outputs_go_to_the_base_output_directory(path):
    """Vertex AI's AIP_MODEL_DIR/AIP_CHECKPOINT_DIR/AIP_TENSORBOARD_LOG_DIR are model/, checkpoints/
    and logs/ under the prefix: the folders bner writes under --output_dir."""
    spec = _load(path)
    for pool in spec["workerPoolSpecs"]:
        output_dir = parse_task_args(_program(pool).get("args", [])).output_dir
        assert output_dir == spec["baseOutputDirectory"]["outputUriPrefix"]


@pytest.mark.parametrize("path", CONFIGURATIONS, ids=_rel)
def test_placeholders_are_uniform(path):
    """One sed line fills them in: every bucket path is under gs://BUCKET/, every image ours or Vertex AI's."""
    spec = _load(path)
    assert not [s for s in _strings(spec) if "gs://" in s and BUCKET_PREFIX not in s]
    for pool in spec["workerPoolSpecs"]:
        if "containerSpec" in pool:
            image = pool["containerSpec"]["imageUri"]
            assert image.startswith(IMAGE_PREFIX), image
            tag = image[len(IMAGE_PREFIX):]
            assert tag != "latest" and re.fullmatch(r"\d+\.\d+\.\d+-(cpu|gpu|tpu)", tag), f"pin the tag and name the variant: {image}"
        else:
            executor = pool["pythonPackageSpec"]["executorImageUri"]
            assert executor.startswith(PREBUILT_PREFIX) and executor.endswith(":latest"), executor


def test_multiworker_has_a_chief_then_workers():
    pools = _load(ROOT / "configurations" / "vertex_gpu_multiworker.yaml")["workerPoolSpecs"]
    assert len(pools) >= 2
    assert _positive_int(pools[0]["replicaCount"]) == 1, "the first pool is the chief: one replica"
    assert all(_positive_int(p["replicaCount"]) >= 1 for p in pools[1:])
    # MultiWorkerMirroredStrategy runs the same program everywhere.
    assert len({json.dumps(_program(p), sort_keys=True) for p in pools}) == 1, "every pool runs the same image and flags"
    assert len({json.dumps(p["machineSpec"], sort_keys=True) for p in pools}) == 1, "same machines, so replicas keep pace"
    gpus = sum(_positive_int(p["replicaCount"]) * _positive_int(p["machineSpec"]["acceleratorCount"]) for p in pools)
    batch = parse_task_args(_program(pools[0])["args"]).train_batch_size
    assert batch % gpus == 0, f"--train_batch_size={batch} does not split evenly over {gpus} GPUs"


def test_container_jobs_run_the_training_image():
    """containerSpec sets no command, so Dockerfile.train's ENTRYPOINT runs bner.ner.task with the args."""
    lines = [line.strip() for line in DOCKERFILE_TRAIN.read_text(encoding="utf-8").splitlines()]
    (entrypoint,) = [line.split(None, 1)[1] for line in lines if line.startswith("ENTRYPOINT")]
    assert json.loads(entrypoint) == ["python", "-m", "bner.ner.task"]
    users = [line.split(None, 1)[1] for line in lines if line.startswith("USER")]
    assert users and re.fullmatch(r"[1-9]\d*(:\d+)?", users[-1]), "run as a numeric non-root user"
    assert any(re.fullmatch(r"ARG PYTHON_IMAGE=python:3\.11\.\d+-slim(-\w+)?", line) for line in lines), "pin the base image"
    assert "ARG ACCELERATOR=" in "\n".join(lines)
    for variant in ("cpu", "gpu", "tpu"):
        assert any(line.startswith(f"{variant})") for line in lines), f"Dockerfile.train builds no {variant} variant"
    assert not re.search(r"(API_KEY|PASSWORD|SECRET|TOKEN|CREDENTIALS)\s*=", DOCKERFILE_TRAIN.read_text(encoding="utf-8"))
    for path in CONFIGURATIONS:
        for pool in _load(path)["workerPoolSpecs"]:
            if "containerSpec" in pool:
                assert "command" not in pool["containerSpec"], f"{_rel(path)}: leave command to the image's ENTRYPOINT"


# ---------------------------------------------------------------------------- the checks bite


def _valid_spec() -> dict:
    return {
        "workerPoolSpecs": [{
            "machineSpec": {"machineType": "g2-standard-8", "acceleratorType": "NVIDIA_L4", "acceleratorCount": 1},
            "replicaCount": 1,
            "containerSpec": {"imageUri": IMAGE_PREFIX + "0.1.0-gpu", "args": ["--do_train=true", "--pretrained_model=gs://b/m"]},
        }],
    }


def _tpu_pool() -> dict:
    return {"machineSpec": {"machineType": "ct5lp-hightpu-4t", "tpuTopology": "2x2"}, "replicaCount": 1, "containerSpec": {"imageUri": "x"}}


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda s: s["workerPoolSpecs"][0].update(replica_count=1), "camelCase"),
        (lambda s: s.update(displayName="x"), "not a CustomJobSpec field"),
        (lambda s: s["workerPoolSpecs"][0].update(replicaCount=0), "positive integer"),
        (lambda s: s["workerPoolSpecs"][0].update(pythonPackageSpec={"executorImageUri": "x"}), "exactly one of"),
        (lambda s: s["workerPoolSpecs"][0]["containerSpec"].pop("imageUri"), "imageUri is required"),
        (lambda s: s["workerPoolSpecs"][0]["machineSpec"].pop("acceleratorCount"), "go together"),
        (lambda s: s["workerPoolSpecs"][0]["machineSpec"].update(acceleratorType="NVIDIA_TESLA_T4"), "cannot take"),
        (lambda s: s["workerPoolSpecs"][0]["machineSpec"].update(acceleratorCount=2), "comes with 1"),
        (lambda s: s["workerPoolSpecs"][0].update(machineSpec={"machineType": "cloud-tpu", "acceleratorType": "TPU_V3", "acceleratorCount": 4}), "acceleratorCount 8"),
        (lambda s: s["workerPoolSpecs"][0].update(machineSpec={"machineType": "ct5lp-hightpu-4t", "tpuTopology": "4x4"}), "single-host"),
        (lambda s: s["workerPoolSpecs"].extend([_tpu_pool(), _tpu_pool()]), "one worker pool"),
    ],
)
def test_spec_problems_are_found(change, message):
    spec = _valid_spec()
    assert spec_problems(spec) == []
    change(spec)
    problems = spec_problems(spec)
    assert any(message in p for p in problems), problems


@pytest.mark.parametrize(
    "args, message",
    [
        (["--do_train=true", "--pretrained_model=gs://b/m", "--use_tpu=yes please"], "Non-boolean"),
        (["--do_train=true", "--pretrained_model=gs://b/m", "--train_batch_size=32.5"], "train_batch_size"),
        (["--do_train=true", "--pretrained_model=gs://b/m", "--precision=fp8"], "one of"),
        (["--do_train=true", "--pretrained_model=gs://b/m", "--num_epochs=3"], "not a flag of bner.ner.task"),
        (["--do_train", "--pretrained_model=gs://b/m"], "--name=value"),
        (["--do_train=true"], "needs --pretrained_model"),
        (["--do_eval=true", "--data_dir=/data/conll"], "gs:// paths"),
        (["--pretrained_model=gs://b/m"], "nothing to do"),
        (["--do_train=true", "--pretrained_model=gs://b/m", "--use_tpu=true"], "--tpu_name"),
    ],
)
def test_args_problems_are_found(args, message):
    problems = args_problems(args)
    assert any(message in p for p in problems), problems


def test_parsing_leaves_the_global_flags_alone():
    parsed, batch_size = flags.FLAGS.is_parsed(), flags.FLAGS["train_batch_size"].value
    assert parse_task_args(["--do_train=true", "--train_batch_size=7"]).train_batch_size == 7
    assert (flags.FLAGS.is_parsed(), flags.FLAGS["train_batch_size"].value) == (parsed, batch_size)


# ---------------------------------------------------------------------------- hyperparameter tuning


def test_tuning_job_matches_the_vertex_ai_schema():
    from tests.discovery import discovery_schemas, schema_errors

    schemas = discovery_schemas("aiplatform.v1")
    job = _load(HPTUNING)
    assert schema_errors(job, schemas["GoogleCloudAiplatformV1HyperparameterTuningJob"], schemas) == []
    assert _key_problems(job) == []
    broken = copy.deepcopy(job)
    broken["studySpec"]["algorithm"] = "GRID"
    broken["studySpec"]["parameters"][0]["discreteValues"] = [1]
    assert len(schema_errors(broken, schemas["GoogleCloudAiplatformV1HyperparameterTuningJob"], schemas)) == 2


def test_tuning_job_trials_are_bner_runs_reporting_dev_f1():
    job = _load(HPTUNING)
    study, trial = job["studySpec"], job["trialJobSpec"]
    assert spec_problems(trial) == []
    assert study["algorithm"] == "GRID_SEARCH"
    assert _positive_int(job["maxTrialCount"]) and _positive_int(job["parallelTrialCount"])
    (metric,) = study["metrics"]
    assert metric == {"metricId": "dev_f1", "goal": "MAXIMIZE"}  # chosen on dev, never on test
    grid = 1
    for parameter in study["parameters"]:
        name, values = parameter["parameterId"], parameter["discreteValueSpec"]["values"]
        grid *= len(values)
        for value in values:  # each trial's values are bner flags of the right type and range
            args = [*_program(trial["workerPoolSpecs"][0])["args"], f"--{name}={value}"]
            assert args_problems(args) == [], (name, value)
    assert job["maxTrialCount"] == grid, "a grid search runs every combination once"
    values = parse_task_args(_program(trial["workerPoolSpecs"][0])["args"])
    assert values.hypertune_metric == metric["metricId"]
    # Each trial writes to its own folder: no --output_dir, so bner follows AIP_MODEL_DIR (<prefix>/<trial>/model).
    assert not values["output_dir"].present and trial["baseOutputDirectory"]["outputUriPrefix"].startswith(BUCKET_PREFIX)


def test_a_trial_writes_where_vertex_ai_says(tmp_path):
    """AIP_MODEL_DIR names <base>/<trial>/model/: the run goes to <base>/<trial>."""
    import subprocess
    import sys

    code = ("import sys; from bner.cli.flags import FLAGS, config_from_flags; FLAGS(sys.argv); "
            "print(config_from_flags().output.output_dir)")
    env = {"AIP_MODEL_DIR": "gs://BUCKET/runs/RUN/7/model/", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code, "--do_train"], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "gs://BUCKET/runs/RUN/7"
    given = subprocess.run([sys.executable, "-c", code, "--output_dir=gs://BUCKET/x"], env=env, capture_output=True, text=True, check=True)
    assert given.stdout.strip() == "gs://BUCKET/x"
