"""The hardware a run uses: precision, distribution strategy, Cloud TPUs, and which process is chief."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import os

import keras

from bner.environment import cpu_has_bf16
from bner.errors import first_line

# What installs TensorFlow's CUDA build, for the messages of a run that finds no GPU.
CUDA_INSTALL = "pip install 'tensorflow[and-cuda]'"


@contextlib.contextmanager
def cpu_training_graphs():
    """On a CPU-only TensorFlow, build the training loop's functions without Grappler's rewrites.

    Grappler's pass over the training step's graph (forward, gradient and optimizer:
    thousands of ops) costs seconds at the first step and makes the steps no faster on a
    CPU (docs/history.md). On accelerators its layout and fusion passes matter, so they
    stay. The previous setting is restored afterwards: only functions first run inside are
    affected.
    """
    import tensorflow as tf

    if any(d.device_type != "CPU" for d in tf.config.list_logical_devices()):
        yield
        return
    previous = tf.config.optimizer.get_experimental_options().get("disable_meta_optimizer", False)
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    try:
        yield
    finally:
        tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": previous})


def accelerator_kinds() -> list[str]:
    """The kinds of accelerator the Keras backend sees (empty on a CPU)."""
    try:
        return [d.device_kind for d in _keras_devices() if d.platform != "cpu"]
    except Exception:  # noqa: BLE001 — device discovery differs by backend; the facts are informative only
        return []


def use_device(device: str) -> None:
    """Apply ``--device`` before anything touches a device: ``gpu`` fails in one line without one, ``cpu`` hides them."""
    if device == "auto":
        return
    from bner.config import ConfigError

    if keras.backend.backend() == "jax":
        import jax

        if device == "cpu":
            if jax.default_backend() != "cpu":
                raise ConfigError("--device=cpu under JAX: set JAX_PLATFORMS=cpu in the environment instead")
            return
        if jax.default_backend() != "gpu":
            raise ConfigError("--device=gpu: JAX sees no GPU (install jax[cuda12] where an NVIDIA driver runs; nvidia-smi shows it)")
        return
    import tensorflow as tf

    if device == "cpu":
        try:
            tf.config.set_visible_devices([], "GPU")
        except RuntimeError:  # this process has used its devices already (a search's earlier trial)
            if tf.config.get_visible_devices("GPU"):
                raise ConfigError("--device=cpu: this process has used its GPUs already; give every run in it the same --device") from None
    elif not tf.config.list_physical_devices("GPU"):
        hint = "CUDA_VISIBLE_DEVICES hides them all; " if os.environ.get("CUDA_VISIBLE_DEVICES", "").strip() in ("-1",) else ""
        raise ConfigError(f"--device=gpu: TensorFlow sees no GPU ({hint}on Linux with an NVIDIA driver: "
                          f"{CUDA_INSTALL}; nvidia-smi shows whether the driver sees one)")


def device_description(on_tpu: bool = False, replicas: int = 1) -> str:
    """What the run computes on, for its start-up line: "CPU (no GPU found)", "1 × NVIDIA H100 ...", "TPU (8 cores)"."""
    if on_tpu:
        return f"TPU ({replicas} cores)"
    kinds = collections.Counter(accelerator_kinds())
    if kinds:
        return ", ".join(f"{n} × {kind}" for kind, n in kinds.items())
    if os.environ.get("CUDA_VISIBLE_DEVICES", "").strip() not in ("", "-1"):
        return f"CPU (no GPU found, though CUDA_VISIBLE_DEVICES is set: install TensorFlow's CUDA build, {CUDA_INSTALL})"
    return "CPU (no GPU found)"


def precision_warning(precision: str) -> str | None:
    """A line when the precision asked for is slow on the device the run has (None when it suits it)."""
    if precision == "float32" or accelerator_kinds():
        return None
    if precision == "mixed_float16":
        return "--precision=mixed_float16 on a CPU: float16 is emulated there and slower than float32; use auto or float32"
    if precision == "mixed_bfloat16" and keras.backend.backend() == "tensorflow" and not cpu_has_bf16():
        return "--precision=mixed_bfloat16 on a CPU without bfloat16 instructions: slower than float32; use auto or float32"
    return None


def _keras_devices():
    if keras.backend.backend() == "jax":
        import jax

        return jax.devices()
    import tensorflow as tf

    Device = collections.namedtuple("Device", "platform device_kind")
    return [Device(d.device_type.lower(), d.name) for d in tf.config.list_logical_devices() if d.device_type != "CPU"]


def select_precision(requested: str, on_tpu: bool = False) -> str:
    """The Keras dtype policy: ``auto`` picks bfloat16 where the hardware computes it natively."""
    if requested != "auto":
        return requested
    if on_tpu:
        return "mixed_bfloat16"
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            details = tf.config.experimental.get_device_details(gpus[0])
            capability = details.get("compute_capability", (0, 0))
            return "mixed_bfloat16" if capability >= (8, 0) else "mixed_float16"
        return "mixed_bfloat16" if cpu_has_bf16() else "float32"
    if backend == "jax":
        import jax

        return "mixed_bfloat16" if jax.default_backend() in ("gpu", "tpu") else "float32"
    return "float32"


@dataclasses.dataclass(frozen=True)
class TpuSettings:
    use_tpu: bool = False
    tpu_name: str | None = None
    tpu_zone: str | None = None
    gcp_project: str | None = None
    master: str | None = None
    num_tpu_cores: int = 8


class TpuRuntime:
    """The calls that reach a Cloud TPU, in one place so tests can stand in for the cloud."""

    def __init__(self):
        import tensorflow as tf

        self.tf = tf

    def resolve(self, tpu: str | None, zone: str | None, project: str | None):
        return self.tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu, zone=zone, project=project)

    def initialize(self, resolver):
        """Connect and initialise the TPU system; returns its topology."""
        self.tf.config.experimental_connect_to_cluster(resolver)
        return self.tf.tpu.experimental.initialize_tpu_system(resolver)

    def device_assignment(self, topology, num_replicas: int):
        return self.tf.tpu.experimental.DeviceAssignment.build(topology, num_replicas=num_replicas)

    def strategy(self, resolver, device_assignment):
        return self.tf.distribute.TPUStrategy(resolver, experimental_device_assignment=device_assignment)


def tpu_strategy(tpu: TpuSettings, runtime: TpuRuntime | None = None):
    """TPUStrategy on the TPU the flags name, over ``num_tpu_cores`` of its cores."""
    runtime = runtime or TpuRuntime()
    name = tpu.tpu_name or tpu.master
    try:
        resolver = runtime.resolve(name, tpu.tpu_zone, tpu.gcp_project)
        topology = runtime.initialize(resolver)
    except Exception as e:  # noqa: BLE001 — TensorFlow raises many types (NotFoundError, ValueError, RuntimeError) here
        raise ValueError(f"cannot reach the TPU {name or '(found from the environment)'}: {first_line(e)}. On a Cloud TPU VM pass "
                         "--tpu_name=local; elsewhere the TPU's name with --tpu_zone and --gcp_project") from None
    available = topology.num_tasks * topology.num_tpus_per_task
    if not 0 < tpu.num_tpu_cores <= available:
        raise ValueError(f"--num_tpu_cores={tpu.num_tpu_cores}, but the TPU has {available} cores")
    # All cores: TPUStrategy's own layout. Fewer: one replica on each of the first N.
    assignment = None if tpu.num_tpu_cores == available else runtime.device_assignment(topology, tpu.num_tpu_cores)
    return runtime.strategy(resolver, assignment)


def select_strategy(tpu: TpuSettings = TpuSettings(), tpu_runtime: TpuRuntime | None = None):
    """TPU flags → TPUStrategy; ``TF_CONFIG`` → MultiWorkerMirroredStrategy; several GPUs → MirroredStrategy; else default."""
    import tensorflow as tf

    if tpu.use_tpu:
        return tpu_strategy(tpu, tpu_runtime)
    if os.environ.get("TF_CONFIG"):
        return tf.distribute.MultiWorkerMirroredStrategy()
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def is_chief(tf_config: str | None = None) -> bool:
    """Whether this process writes checkpoints, results and the export.

    Read from ``TF_CONFIG`` (as Vertex AI and Kubernetes operators set it), so the
    answer is the same before, during and after training and needs no TensorFlow: the
    ``chief`` task, else worker 0 of a cluster without one; a process outside any
    cluster is its own chief.
    """
    raw = os.environ.get("TF_CONFIG") if tf_config is None else tf_config
    if not raw:
        return True
    config = json.loads(raw)
    task = config.get("task") or {}
    if not task.get("type"):
        return True
    if task["type"] == "chief":
        return True
    return task["type"] == "worker" and int(task.get("index", 0)) == 0 and "chief" not in config.get("cluster", {})
