#!/usr/bin/env python3
"""Do the TensorFlow and JAX backends train identically? Step by step, on the same random draws.

Runs bner's own training step on each backend in its own process (``TensorFlowStep`` on
TensorFlow, ``KerasStep`` on JAX), set up by ``bner.training.recipe.prepare`` as a real run is, from
the same starting point: the pretrained encoder,
a classification head drawn by NumPy, the same batches in the same order, float32. The
two backends' random generators differ, so dropout is replaced, in this script only, by
a mask that is a fixed hash of (layer seed, step, element), computed with integer ops
that give the same bits on both backends. Whatever differs between the per-step losses
and the final weights is then the backends' own doing.

    python bench/backend_equivalence.py --model_dir .cache/minilm/model --data_dir ../shared/data/wnut17

Results go to ``bench/results/backend_equivalence.json`` (or ``--output_json``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PRIME = 46337  # the largest prime whose square fits in int32: products stay exact on both backends


def hashed_dropout(backend: str):
    """A dropout function whose mask both backends compute bit for bit."""
    import keras
    ops = keras.ops

    def dropout(inputs, rate, noise_shape=None, seed=None):
        state = ops.cast(ops.mod(seed.next(), PRIME), "int32")
        if backend == "jax":
            size = int(np.prod(inputs.shape))
        else:
            import tensorflow as tf

            size = tf.size(inputs)
        index = ops.arange(size, dtype="int32")
        low, high = ops.mod(index, PRIME), ops.mod(index // PRIME, PRIME)
        mixed = ops.mod(low * low + state[0], PRIME)
        mixed = ops.mod(mixed * mixed + ops.mod(state[1] * 7919 + high, PRIME), PRIME)
        mixed = ops.mod(mixed * mixed + low, PRIME)
        keep = ops.reshape(mixed >= int(rate * PRIME), ops.shape(inputs))
        return ops.where(keep, inputs / (1.0 - rate), ops.zeros_like(inputs))

    return dropout


def sublayers(layer) -> list:
    """Every layer inside ``layer``: a model's ``layers``, and a layer's public attributes that are layers
    (or lists of them)."""
    import keras

    found, stack, seen = [], [layer], set()
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        found.append(current)
        children = [value for name, value in vars(current).items() if not name.startswith("_")]
        children += list(current.layers) if isinstance(current, keras.Model) else []
        for value in children:
            for item in value if isinstance(value, (list, tuple)) else [value]:
                if isinstance(item, keras.layers.Layer):
                    stack.append(item)
    return found


def worker(args) -> None:
    os.environ["KERAS_BACKEND"] = args.worker
    import keras

    from bner.config import TrainConfig
    from bner.data import batches, features
    from bner.model import network as model
    from bner.training.recipe import prepare

    dropout = hashed_dropout(args.worker)

    def hashed_dropout_call(layer, inputs, training=False):
        return dropout(inputs, layer.rate, seed=layer.seed_generator) if training and layer.rate > 0 else inputs

    model.Float32MaskDropout.call = hashed_dropout_call  # every dropout layer of the tagger

    with tempfile.TemporaryDirectory(prefix="bner-equivalence-") as out:
        # The run as bner.train prepares it (one epoch's schedule), in float32.
        config = TrainConfig.from_settings(
            pretrained_model=args.model_dir, data_dir=args.data_dir, output_dir=out, max_seq_length=args.max_seq_length,
            train_batch_size=args.batch_size, learning_rate=args.learning_rate, seed=args.seed, num_train_epochs=1.0,
            precision="float32",
        )
        setup = prepare(config)
    head = setup.network.get_layer("logits")
    rng = np.random.default_rng(args.seed)
    head.set_weights([(rng.standard_normal(tuple(head.kernel.shape)) * 0.02).astype("float32"), np.zeros(head.units, "float32")])
    # The same batches, padded alike: TensorFlow would pad to each batch's longest, JAX to
    # buckets, and the hashed dropout masks below depend on the padded shape.
    plan = batches.plan_batches(
        setup.plan.lengths, args.batch_size, batches.bucket_lengths(args.max_seq_length), shuffle_seed=args.seed
    )[: args.steps]
    losses = [setup.step(batch) for batch in batches.iterate_batches(setup.examples, plan, setup.tokenizer.token_to_id(features.SPECIAL["pad"]))]
    np.savez(args.weights_out, *[keras.ops.convert_to_numpy(v.value) for v in setup.network.trainable_variables])
    dropouts = [layer for layer in sublayers(setup.network) if isinstance(layer, keras.layers.Dropout) and layer.rate > 0]
    if not all(isinstance(layer, model.Float32MaskDropout) for layer in dropouts):
        raise SystemExit("a dropout layer of the tagger is not bner's: its mask would differ between the backends")
    print(json.dumps({"losses": losses, "dropout_layers": len(dropouts)}))


def run_worker(backend: str, args, weights: str) -> dict:
    command = [
        sys.executable, __file__, f"--worker={backend}", f"--weights_out={weights}", f"--model_dir={args.model_dir}",
        f"--data_dir={args.data_dir}", f"--steps={args.steps}", f"--batch_size={args.batch_size}",
        f"--max_seq_length={args.max_seq_length}", f"--learning_rate={args.learning_rate}", f"--seed={args.seed}",
    ]
    print("$", " ".join(command), flush=True)
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(command, check=True, capture_output=True, text=True, env=env)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model_dir", default=os.path.join(ROOT, ".cache", "minilm", "model"))
    parser.add_argument("--data_dir", default=os.path.join(ROOT, "..", "shared", "data", "wnut17"))
    parser.add_argument("--steps", type=int, default=107, help="optimizer steps (107 is one WNUT-17 epoch at batch 32)")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--max_seq_length", type=int, default=128)
    parser.add_argument("--learning_rate", type=float, default=5e-5)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--output_json", default=os.path.join(HERE, "results", "backend_equivalence.json"))
    parser.add_argument("--worker", choices=["tensorflow", "jax"], help=argparse.SUPPRESS)
    parser.add_argument("--weights_out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    with tempfile.TemporaryDirectory(prefix="bner-equivalence-") as work:
        files = {b: os.path.join(work, f"{b}.npz") for b in ("tensorflow", "jax")}
        runs = {b: run_worker(b, args, files[b]) for b in files}
        losses = {b: run["losses"] for b, run in runs.items()}
        tf_weights, jax_weights = np.load(files["tensorflow"]), np.load(files["jax"])
        weight_diff = max(float(np.abs(tf_weights[k] - jax_weights[k]).max()) for k in tf_weights.files)
    loss_diff = float(np.max(np.abs(np.subtract(losses["tensorflow"], losses["jax"]))))
    result = {
        "benchmark": "TensorFlow vs JAX training steps on identical draws",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "settings": {k: v for k, v in vars(args).items() if k not in ("worker", "weights_out", "output_json")},
        "steps": len(losses["tensorflow"]),
        "dropout_layers": {b: run["dropout_layers"] for b, run in runs.items()},
        "max_abs_loss_difference": loss_diff,
        "max_abs_weight_difference": weight_diff,
        "losses": losses,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.output_json)), exist_ok=True)
    with open(args.output_json, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    print(f"{result['steps']} steps: losses differ by at most {loss_diff:.2e}, weights by {weight_diff:.2e}")
    print(f"wrote {args.output_json}")


if __name__ == "__main__":
    main()
