import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import types

import numpy as np
import pytest

from bner.data import batches, features
from bner.model import network as model
from bner.model.metadata import EncoderConfig
from bner.training import hardware, loop
from bner.training import optimizer as optimizers
from tests.cli import read_json, run_task, tiny_training_flags
from tests.conftest import write_synthetic_data


def test_schedule_warms_up_then_decays_to_zero():
    schedule = optimizers.WarmupLinearDecay(1e-3, warmup_steps=10, total_steps=110)
    values = [float(schedule(s)) for s in (0, 4, 9, 10, 60, 109, 110)]
    assert values[0] == pytest.approx(1e-4)
    assert values[2] == pytest.approx(1e-3)
    assert values[3] == pytest.approx(1e-3)
    assert values[4] == pytest.approx(5e-4)
    assert values[5] == pytest.approx(1e-5)
    assert values[6] == 0.0


@pytest.mark.parametrize("fused", [True, False], ids=["fused_tensorflow_kernel", "keras_ops"])
def test_adamw_follows_the_adam_paper_even_for_tiny_gradients(fused, monkeypatch):
    """Epsilon is added to the bias-corrected root (as PyTorch does), not to Keras' uncorrected one.

    Both forms of the update: TensorFlow's fused kernel and the backend-neutral ops (JAX).
    """
    import keras

    if fused and keras.backend.backend() != "tensorflow":
        pytest.skip("TensorFlow's kernel")
    monkeypatch.setattr(optimizers, "_fused_update_available", lambda: fused)
    lr, eps, b1, b2, wd = 1e-3, 1e-8, 0.9, 0.999, 0.01
    start = np.array([1.0, -2.0, 0.5], dtype=np.float32)
    gradients = [np.array([3e-8, -2e-7, 0.3], dtype=np.float32) * (k + 1) for k in range(3)]
    variable = keras.Variable(start)
    optimizer = optimizers.AdamW(learning_rate=lr, weight_decay=wd, epsilon=eps)
    for g in gradients:
        optimizer.apply_gradients([(keras.ops.convert_to_tensor(g), variable)])
    expected, m, v = start.astype(np.float64), 0.0, 0.0
    for t, g in enumerate(gradients, start=1):
        expected = expected * (1 - lr * wd)  # decoupled weight decay, as torch.optim.AdamW
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g.astype(np.float64) ** 2
        expected = expected - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(variable), expected, rtol=0, atol=1e-6)
    # Keras' own form barely moves the weight whose gradients are ~1e-8.
    keras_variable = keras.Variable(start)
    keras_optimizer = keras.optimizers.AdamW(learning_rate=lr, weight_decay=0.0, epsilon=eps)
    for g in gradients:
        keras_optimizer.apply_gradients([(keras.ops.convert_to_tensor(g), keras_variable)])
    ours = abs(float(keras.ops.convert_to_numpy(variable)[0]) - 1.0)
    theirs = abs(float(keras.ops.convert_to_numpy(keras_variable)[0]) - 1.0)
    assert ours > 2e-3 and theirs < ours / 3, (ours, theirs)


def test_no_weight_decay_on_layer_norm_and_biases():
    from bner.model.metadata import EncoderConfig
    from bner.model.network import build_tagger

    tagger = build_tagger(EncoderConfig(30, 8, 1, 2, 16, 16), 3)
    optimizer = optimizers.make_optimizer(1e-3, 100, 10, weight_decay=0.01)
    optimizer.build(tagger.trainable_variables)
    decayed = {v.path for v, decays in zip(tagger.trainable_variables, optimizer.decays) if decays}
    assert decayed, "kernels and embeddings decay"
    assert not any(p.endswith(("bias", "gamma", "beta")) for p in decayed)
    assert any(p.endswith("kernel") for p in decayed) and any("embedding" in p for p in decayed)


def test_precision_and_strategy_on_this_machine():
    assert hardware.select_precision("float32") == "float32"
    expected = "mixed_bfloat16" if hardware.cpu_has_bf16() else "float32"
    assert hardware.select_precision("auto") == expected
    assert hardware.select_precision("auto", on_tpu=True) == "mixed_bfloat16"
    import tensorflow as tf

    strategy = hardware.select_strategy()
    assert strategy is tf.distribute.get_strategy() and hardware.is_chief()


class FakeTpuRuntime:
    """Stands in for the Cloud TPU calls: records them, reports an 8-core TPU."""

    def __init__(self, cores: int = 8):
        self.calls = []
        self.topology = types.SimpleNamespace(num_tasks=1, num_tpus_per_task=cores)

    def resolve(self, tpu, zone, project):
        self.calls.append(("resolve", tpu, zone, project))
        return "resolver"

    def initialize(self, resolver):
        self.calls.append(("initialize", resolver))
        return self.topology

    def device_assignment(self, topology, num_replicas):
        self.calls.append(("device_assignment", num_replicas))
        return f"first {num_replicas} cores"

    def strategy(self, resolver, device_assignment):
        self.calls.append(("strategy", resolver, device_assignment))
        return "tpu strategy"


def test_tpu_flags_resolve_the_tpu_and_honour_num_tpu_cores():
    runtime = FakeTpuRuntime()
    settings = hardware.TpuSettings(use_tpu=True, tpu_name="my-tpu", tpu_zone="us-central1-b", gcp_project="proj", num_tpu_cores=8)
    assert hardware.select_strategy(settings, tpu_runtime=runtime) == "tpu strategy"
    assert runtime.calls == [
        ("resolve", "my-tpu", "us-central1-b", "proj"),
        ("initialize", "resolver"),
        ("strategy", "resolver", None),  # all cores: TPUStrategy's own layout
    ]
    runtime = FakeTpuRuntime()
    master_only = hardware.TpuSettings(use_tpu=True, master="grpc://10.0.0.2:8470", num_tpu_cores=4)
    hardware.select_strategy(master_only, tpu_runtime=runtime)
    assert runtime.calls[0] == ("resolve", "grpc://10.0.0.2:8470", None, None)
    assert ("device_assignment", 4) in runtime.calls and runtime.calls[-1] == ("strategy", "resolver", "first 4 cores")
    with pytest.raises(ValueError, match="num_tpu_cores=16, but the TPU has 8 cores"):
        hardware.select_strategy(dataclasses.replace(settings, num_tpu_cores=16), tpu_runtime=FakeTpuRuntime())


def test_an_unreachable_tpu_is_one_line_that_says_what_to_pass():
    class Unreachable(FakeTpuRuntime):
        def initialize(self, resolver):
            raise RuntimeError("Could not connect to TPU 'local'\n" + "  traceback line\n" * 50)

    with pytest.raises(ValueError, match=r"^cannot reach the TPU local: Could not connect to TPU 'local'\. On a Cloud TPU VM") as caught:
        hardware.select_strategy(hardware.TpuSettings(use_tpu=True, tpu_name="local"), tpu_runtime=Unreachable())
    assert "\n" not in str(caught.value)


def test_device_gpu_fails_in_one_line_without_one(monkeypatch):
    import tensorflow as tf

    from bner.config import ConfigError, TrainConfig

    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [])
    with pytest.raises(ConfigError, match=r"^--device=gpu: TensorFlow sees no GPU .*tensorflow\[and-cuda\]"):
        hardware.use_device("gpu")
    hardware.use_device("auto")
    with pytest.raises(ConfigError, match="--device=tpu: expected one of auto, cpu, gpu"):
        TrainConfig.from_settings(device="tpu").check()


def test_the_start_up_line_names_the_device_and_slow_precision_is_warned_about(monkeypatch):
    monkeypatch.setattr(hardware, "accelerator_kinds", lambda: [])
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert hardware.device_description() == "CPU (no GPU found)"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert "tensorflow[and-cuda]" in hardware.device_description()
    assert hardware.device_description(on_tpu=True, replicas=8) == "TPU (8 cores)"
    assert "slower than float32" in hardware.precision_warning("mixed_float16")
    assert hardware.precision_warning("float32") is None
    monkeypatch.setattr(hardware, "accelerator_kinds", lambda: ["NVIDIA L4", "NVIDIA L4"])
    assert hardware.device_description() == "2 × NVIDIA L4" and hardware.precision_warning("mixed_float16") is None


def test_a_run_that_learned_nothing_says_what_to_try_and_ties_keep_the_later_epoch():
    from bner.config import TrainConfig
    from bner.folders.model_card import _training
    from bner.inference.evaluate import Counts, Scores
    from bner.training.callbacks import DevEvaluation
    from bner.training.recipe import default_learning_rate, learned_nothing

    config = TrainConfig.from_settings(learning_rate=5e-5, num_train_epochs=2)
    nothing = [{"dev_f1": 0.0, "dev_predicted_entities": 3}, {"dev_f1": 0.0, "dev_predicted_entities": 0}]
    line = learned_nothing(nothing, config)
    assert line.startswith("the model predicts no entities on dev (F1 0.00 after each of 2 epoch(s))")
    assert "--learning_rate, now 5e-05" in line and "--num_train_epochs, now 2" in line
    assert learned_nothing([{"dev_f1": 0.0}, {"dev_f1": 0.1}], config) is None and learned_nothing([], config) is None
    card = _training({"steps": 10, "epochs": 2, "best_dev_f1": 0.0, "best_step": 10, "warnings": [line]})
    assert f"**Warning:** {line}" in card

    f1s = iter([0.5, 0.5, 0.4])
    state = types.SimpleNamespace(best_dev_f1=-1.0, best_step=-1, epochs_without_improvement=0, step=0, stopped_early=False)
    callback = DevEvaluation(lambda: Scores(Counts(2, 2, 1) if next(f1s) == 0.5 else Counts(2, 2, 0), {}, 1, 1))
    callback.set_params({"state": state, "steps": 100})
    for step in (10, 20, 30):
        callback.on_epoch_end(0, {"step": step})
    assert state.best_step == 20  # the tie at step 20 went to the later model; step 30 was worse

    small, base = EncoderConfig(30522, 384, 6, 12, 1536), EncoderConfig(30522, 768, 12, 12, 3072)
    assert (default_learning_rate(small), default_learning_rate(base)) == (1e-4, 5e-5)
    assert TrainConfig().optimization.learning_rate is None
    TrainConfig().check()  # None: chosen from the encoder


def test_the_default_learning_rate_resumes_a_run_recorded_with_a_number():
    from bner.config import TrainConfig
    from bner.folders import run_folder

    recorded = {"config": TrainConfig.from_settings(learning_rate=5e-5, document_windows=True).to_json()}
    resumed = run_folder.with_recorded_defaults(TrainConfig(), recorded)
    assert resumed.optimization.learning_rate == 5e-5 and resumed.model.document_windows is True
    assert not TrainConfig.from_json(recorded).differences(resumed)
    explicit = TrainConfig.from_settings(learning_rate=1e-4, document_windows=False)
    assert run_folder.with_recorded_defaults(explicit, recorded) is explicit
    # A run recorded before document windows existed trained on sentences: the same command (and
    # --document_windows=false) resume it so, and --config replays it so.
    old = {"config": TrainConfig.from_settings(learning_rate=5e-5).to_json()}
    del old["config"]["model"]["document_windows"]
    assert TrainConfig.from_json(old).model.document_windows is False
    for command in (TrainConfig(), TrainConfig.from_settings(document_windows=False)):
        resumed = run_folder.with_recorded_defaults(command, old)
        assert resumed.model.document_windows is False and not TrainConfig.from_json(old).differences(resumed)
    assert TrainConfig.from_json({"model": {}}).model.document_windows is None  # a config given alone: the default


def test_steps_per_execution_groups_same_shape_batches_within_checkpoints():
    rng = np.random.default_rng(0)
    examples = [
        features.Example(features.Window(i, 0, 1, 0, 1), rng.integers(5, 30, n).astype(np.int32), np.zeros(n, np.int32), np.zeros(1, np.int64))
        for i, n in enumerate(rng.integers(3, 40, 1000))
    ]
    buckets = batches.bucket_lengths(64)
    plan = batches.BatchPlan([len(e) for e in examples], 8, buckets, num_epochs=2, seed=42, drop_remainder=True, group=4)
    groups = []

    class RecordingStep:
        def __call__(self, batch):
            return self.run_group([batch])[0]

        def run_group(self, batches):
            groups.append([b.labels.shape for b in batches])
            return [1.0] * len(batches)

    class NoCheckpoints:
        saved = []

        def latest(self):
            return None

        def save(self, step, *args, best_step=None):
            self.saved.append(step)

        def wait(self):
            pass

    tagger = model.build_tagger(EncoderConfig(40, 8, 1, 2, 16, 64, dropout=0.0), 2)
    optimizer = optimizers.make_optimizer(1e-3, 10, 0)
    checkpoints = NoCheckpoints()
    state = loop.run_training(tagger, optimizer, RecordingStep(), examples, plan, 0, checkpoints, [], 12, steps_per_execution=4)
    per_epoch = plan.steps_per_epoch
    assert state.step == 2 * per_epoch == sum(len(g) for g in groups)
    assert all(len(g) <= 4 and len(set(g)) == 1 for g in groups), "one shape per execution"
    assert all(shape[0] == 8 for g in groups for shape in g), "static batch size"
    assert sum(len(g) == 4 for g in groups) > len(groups) / 2, "most executions are full"
    ends = np.cumsum([len(g) for g in groups])
    assert all(s in ends for s in checkpoints.saved), "no execution spans a checkpoint"


MIRRORED_SCRIPT = textwrap.dedent(
    """
    import os, sys, numpy as np
    os.environ["KERAS_BACKEND"] = "tensorflow"
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from bner.data import batches
    from bner.model import network as model
    from bner.training import steps
    from bner.training import optimizer as optimizers
    from bner.model.metadata import EncoderConfig
    replicas = int(sys.argv[1])
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]) if replicas == 2 else tf.distribute.get_strategy()
    keras.utils.set_random_seed(0)
    with strategy.scope():
        tagger = model.build_tagger(EncoderConfig(40, 16, 1, 2, 32, 32, dropout=0.0), 3)
        optimizer = optimizers.make_optimizer(1e-2, 10, 0)
        optimizer.build(tagger.trainable_variables)
    step = steps.TensorFlowStep(tagger, optimizer, strategy, clip_norm=0.05)
    rng = np.random.default_rng(0)
    ids = rng.integers(5, 40, (6, 12)).astype(np.int32)
    labels = rng.integers(-1, 3, (6, 12)).astype(np.int32)
    mask = np.ones_like(ids)
    batch = batches.Batch(np.arange(6), {"input_ids": ids, "attention_mask": mask, "token_type_ids": 0 * mask}, labels)
    losses = step.run_group([batch] * 3) if sys.argv[3] == "group" else [step(batch) for _ in range(3)]
    np.save(sys.argv[2], np.concatenate([np.ravel(w) for w in tagger.get_weights()]))
    print(losses)
    """
)


def test_mirrored_strategy_step_equals_single_device_step(tmp_path):
    """Two replicas on two logical CPUs take the same steps as one device, clipping included,
    whether the three steps run one call each or as one execution (``run_group``)."""
    script = tmp_path / "mirrored.py"
    script.write_text(MIRRORED_SCRIPT)
    weights = {}
    for replicas, mode in ((1, "single"), (2, "single"), (1, "group"), (2, "group")):
        path = tmp_path / f"w{replicas}{mode}.npy"
        subprocess.run([sys.executable, str(script), str(replicas), str(path), mode], check=True, capture_output=True)
        weights[replicas, mode] = np.load(path)
    reference = weights[1, "single"]
    for key, value in weights.items():
        assert np.abs(value - reference).max() < 1e-5, key


def test_synthetic_task_is_learned(tiny_model, tmp_path):
    data = write_synthetic_data(tmp_path / "data", scheme="IOB2")
    out = tmp_path / "out"
    run_task(*tiny_training_flags(tiny_model, data, str(out)), "--do_train", "--do_eval")
    scores = read_json(out / "eval_results.json")
    assert scores["f1"] >= 0.95, scores
    record = read_json(out / "run.json")
    assert record["training"]["best_dev_f1"] >= 0.9
    assert record["labels"] == ["O", "B-LOC", "B-ORG", "B-PER", "I-LOC", "I-ORG", "I-PER"]
    assert set(record["data_files"]) == {"train", "dev", "test"} and len(record["data_files"]["train"]["sha256"]) == 64
    assert record["data_files"]["train"]["sentences"] == 300 and set(record["data_files"]["train"]["entities"]) == {"LOC", "ORG", "PER"}
    assert record["seed"] == 42 and "keras" in record["versions"]


def test_killed_run_resumes_to_the_same_total_steps(tiny_model, tmp_path):
    data = write_synthetic_data(tmp_path / "data", train=400, dev=20, test=20)
    out = tmp_path / "out"
    flags = tiny_training_flags(tiny_model, data, str(out), "--do_train", "--save_checkpoints_steps=3", "--num_train_epochs=3")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.Popen([sys.executable, "-m", "bner.ner.task", "--progress=false", *flags], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pointer = out / "checkpoints" / "checkpoint.json"
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        if pointer.exists() and any(int(n[5:14]) % 25 for n in read_json(pointer)["checkpoints"]):
            break  # a mid-epoch checkpoint exists
        time.sleep(0.05)
    assert process.poll() is None, "training finished before it could be interrupted"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    interrupted_at = int(read_json(pointer)["checkpoints"][-1][5:14])
    assert read_json(out / "run.json")["status"] == "running"

    result = run_task(*flags)
    assert "resuming from" in result.stdout
    record = read_json(out / "run.json")
    planned, per_epoch = map(int, re.search(r"(\d+) steps \((\d+) per epoch\)", result.stdout).groups())
    assert planned == 3 * per_epoch
    assert 0 < interrupted_at < planned and interrupted_at % per_epoch
    assert record["training"]["steps"] == planned
    assert [h["epoch"] for h in record["training"]["history"]][-1] == 3
    # Each epoch's pause is on record, part by part (dev scoring, checkpoint).
    assert all(h["pause_seconds"] >= h["dev_seconds"] + h["checkpoint_seconds"] - 0.02 for h in record["training"]["history"])
    # (rounded to 10 ms, so a fast dev pass on an idle machine may show 0.0)
    assert all(0 <= h["dev_forward_seconds"] <= h["dev_seconds"] for h in record["training"]["history"])
    assert record["status"] == "finished" and record["training"]["resumed_from_step"] == interrupted_at
    assert (out / "export" / "bner" / "1" / "saved_model.pb").exists()


def checkpoint_arrays(path) -> dict:
    with np.load(path) as data:
        return {k: data[k] for k in data.files if k != "state"}


def test_resume_after_a_kill_is_bit_identical_to_an_uninterrupted_run(tiny_model, tmp_path):
    """What a kill -9 leaves on disk (atomic writes: the last complete checkpoint, maybe a partial
    temp file) is rebuilt for three kill points from an uninterrupted run that kept every
    checkpoint; each resumed run must end with the same weights, optimizer state and per-epoch
    losses, bit for bit. Dropout is on, so the dropout seed state must be restored too."""
    import shutil

    data = write_synthetic_data(tmp_path / "data", train=96, dev=0, test=16)
    os.remove(os.path.join(data, "dev.conll"))  # best-on-dev selection would keep a model folder the kill may lose
    common = ["--do_train", "--num_train_epochs=2", "--save_checkpoints_steps=2", "--max_checkpoints=100", "--dropout=0.2",
              "--keep_checkpoints"]
    full = tmp_path / "full"
    run_task(*tiny_training_flags(tiny_model, data, str(full), *common))
    record = read_json(full / "run.json")
    steps, per_epoch = record["training"]["steps"], 6  # 96 sentences, batch 16
    assert steps == 12
    final = checkpoint_arrays(full / "checkpoints" / f"ckpt-{steps:09d}.npz")
    # mid-epoch (step 4), at the epoch boundary (6), and during the write of step 10's checkpoint.
    for kill_at, partial in ((4, None), (per_epoch, None), (8, 10)):
        out = tmp_path / f"killed_at_{kill_at}"
        (out / "checkpoints").mkdir(parents=True)
        name = f"ckpt-{kill_at:09d}.npz"
        shutil.copy(full / "checkpoints" / name, out / "checkpoints" / name)
        (out / "checkpoints" / "checkpoint.json").write_text(json.dumps({"checkpoints": [name]}))
        if partial:
            half = (full / "checkpoints" / f"ckpt-{partial:09d}.npz").read_bytes()[:1000]
            (out / "checkpoints" / f".tmp-abc-ckpt-{partial:09d}.npz").write_bytes(half)
        (out / "run.json").write_text(json.dumps({**record, "status": "running", "config": {
            **record["config"], "output": {**record["config"]["output"], "output_dir": str(out)}}}))
        result = run_task(*tiny_training_flags(tiny_model, data, str(out), *common))
        assert f"resuming from {out / 'checkpoints' / name}" in result.stdout
        resumed = checkpoint_arrays(out / "checkpoints" / f"ckpt-{steps:09d}.npz")
        assert resumed.keys() == final.keys()
        for key in final:
            np.testing.assert_array_equal(resumed[key], final[key], err_msg=f"kill at {kill_at}: {key}")
        history = read_json(out / "run.json")["training"]["history"]
        assert [h["loss"] for h in history] == [h["loss"] for h in record["training"]["history"]], kill_at


def test_cpu_training_graphs_turn_grapplers_pass_off_and_back():
    """Training on a CPU skips Grappler's rewrites of its functions; the user's setting comes back afterwards."""
    import tensorflow as tf

    from bner.training import hardware

    assert not tf.config.optimizer.get_experimental_options().get("disable_meta_optimizer", False)
    with hardware.cpu_training_graphs():
        assert tf.config.optimizer.get_experimental_options()["disable_meta_optimizer"]
    assert not tf.config.optimizer.get_experimental_options().get("disable_meta_optimizer", False)


def test_one_trace_serves_every_batch_length(tiny_model, tmp_path):
    """Batches are padded to their longest example, and the TensorFlow step takes them all without retracing."""
    import keras

    if keras.backend.backend() != "tensorflow":
        pytest.skip("the JAX step compiles bucketed shapes")
    from bner.config import TrainConfig
    from bner.training.recipe import prepare

    data = write_synthetic_data(tmp_path / "data", train=200, long_every=7)
    setup = prepare(TrainConfig.from_settings(pretrained_model=tiny_model, data_dir=data, output_dir=str(tmp_path / "out"),
                                              train_batch_size=16, max_seq_length=64))
    plan = setup.plan.epoch(0)
    assert setup.plan.buckets is None
    assert all(length == max(len(setup.examples[i]) for i in indices) for indices, length in plan)
    lengths = {length for _, length in plan}
    assert len(lengths) > 3
    for batch in batches.iterate_batches(setup.examples, plan, 0):
        setup.step(batch)
    assert setup.step._step.experimental_get_tracing_count() == 1
