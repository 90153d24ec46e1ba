"""The process and the machine: settings that must be in place before TensorFlow or Keras are imported,
and the CPU facts that decide precision and speed (read without importing either)."""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import platform
import re
import sys
import tempfile


def configure_environment(quiet: bool = True) -> None:
    # Keras picks its backend at import; TensorFlow is the default (export needs it).
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    use_onednn()
    if quiet:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def use_onednn() -> None:
    """Run TensorFlow's CPU kernels through oneDNN unless ``TF_ENABLE_ONEDNN_OPTS`` says otherwise.

    TensorFlow turns oneDNN on by default only on CPUs with AVX-512 VNNI, BF16 or AMX; on
    an AVX2 CPU it falls back to Eigen, whose matrix products are slower for these models
    (docs/history.md). Set before TensorFlow loads; ``TF_ENABLE_ONEDNN_OPTS=0`` keeps Eigen.
    """
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")


def require_training(modules: tuple[str, ...] | None = None) -> None:
    """Refuse, in one line, what needs ``bner[train]`` (training, export, TensorFlow runtimes) where it is not installed.

    ``modules``: what must be importable (default: Keras and its backend). The base install
    loads, serves, predicts and evaluates exports with ONNX Runtime only.
    """
    modules = modules or ("keras", os.environ.get("KERAS_BACKEND", "tensorflow"))
    missing = [m for m in dict.fromkeys(modules) if importlib.util.find_spec(m) is None]
    if missing:
        from bner.config import ConfigError

        raise ConfigError(
            f"{' and '.join(missing)} not installed: training, export and the TensorFlow runtimes need "
            "pip install \"bner[train]\" (this install loads, serves, predicts and evaluates exports with ONNX Runtime)"
        )


def import_tensorflow_quietly(without_keras: bool = False) -> None:
    """Import TensorFlow and start its devices with native stderr captured.

    TensorFlow's C++ start-up lines (CUDA probing on CPU-only machines, oneDNN notes)
    are written before its logging settings take effect, so no environment variable
    hides them. They are shown after all if the import fails.

    ``without_keras`` (serving an export): TensorFlow imports Keras' optimizers eagerly
    at start-up, for SavedModels that Keras wrote; bner's exports are plain ``tf.Module``
    graphs, so Keras is kept out of the import and stays importable afterwards.
    """
    if "tensorflow" in sys.modules or os.environ.get("KERAS_BACKEND") not in (None, "tensorflow"):
        return
    require_training(("tensorflow",))
    with _keras_absent() if without_keras and "keras" not in sys.modules else contextlib.nullcontext():
        _import_tensorflow()


class _KerasAbsent(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Makes ``import keras`` fail with ImportError, which TensorFlow's start-up tolerates."""

    def find_spec(self, name, path=None, target=None):
        if name == "keras" or name.startswith("keras."):
            return importlib.machinery.ModuleSpec(name, self)  # no origin: TensorFlow then adds no keras path
        return None

    def create_module(self, spec):
        raise ImportError(f"{spec.name} is not loaded while TensorFlow starts for serving")

    def exec_module(self, module):
        raise ImportError(module.__name__)


@contextlib.contextmanager
def _keras_absent():
    finder = _KerasAbsent()
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)


def _import_tensorflow() -> None:
    # A multi-worker job configures collective ops before TensorFlow starts its devices.
    start_devices = not os.environ.get("TF_CONFIG")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf

            if start_devices:
                tf.config.list_logical_devices()
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AMX or AVX-512 BF16)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def machine_facts() -> dict:
    """The machine a run or a benchmark used: the CPU (model, cores, the bfloat16/AMX flags that decide
    its speed), Python and the platform. Accelerators are :func:`bner.training.hardware.accelerator_kinds`."""
    facts: dict = {"cpu": platform.processor() or platform.machine(), "cpu_cores": os.cpu_count(),
                   "python": platform.python_version(), "platform": platform.platform()}
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        text = ""
    model = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    if model:
        facts["cpu"] = model.group(1).strip()
    flags = re.search(r"^flags\s*:\s*(.+)$", text, re.M)
    if flags:
        present = set(flags.group(1).split())
        facts["cpu_flags"] = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_tile") if f in present]
    return facts
