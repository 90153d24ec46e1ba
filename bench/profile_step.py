#!/usr/bin/env python3
"""Where a training step's time goes: TensorFlow's profiler over bner's step, summed by op type.

The step is the one ``bner.train`` prepares (MiniLM by default, AdamW, clipping, the run's
precision), on batches of real shapes: ``--lengths`` word pieces, batch ``--batch_size``.
After ``--warmup`` steps, ``--steps`` steps run under ``tf.profiler``; the host trace is
read back (XPlane protobuf, shipped with TensorFlow) and each op's time is added up per op
type and per group (matrix products, attention reshapes, optimizer, LayerNorm, dropout,
activation, ...). Op times overlap on several threads, so their sum can exceed the wall
time; the table says where the work is, the wall time what it costs.

    python bench/profile_step.py --lengths 32 64 --output_json bench/results/profile_step.json
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import re
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

# Op type → group, first match wins (names as TensorFlow's CPU kernels report them).
GROUPS = [
    ("matrix products", r"MatMul|Einsum|BatchMatMul|Conv"),
    ("optimizer", r"ApplyAdam|ResourceApply|AssignVariable|AssignSub|AssignAdd|ReadVariable"),
    ("gradient clipping", r"L2Loss|GlobalNorm|Sqrt|Maximum|Minimum"),
    ("dropout", r"Random|Select"),
    ("layer norm", r"Mean|SquaredDifference|Rsqrt|FusedBatchNorm|Moments"),
    ("activation", r"Erf|Erfc|Tanh|Exp"),
    ("softmax & loss", r"Softmax|SparseSoftmax|LogSoftmax|CrossEntropy"),
    ("transposes & reshapes", r"Transpose|Reshape|ConcatV2|Pack|Unpack|Slice|StridedSlice|Pad|Tile|BroadcastTo"),
    ("embeddings", r"Gather|ScatterNd|UnsortedSegmentSum|SegmentSum"),
    ("reductions", r"Sum|Prod|Max|Min|ArgMax"),
    ("element-wise", r"Mul|Add|Sub|RealDiv|Div|Neg|Square|Cast|Less|Greater|Equal|LogicalAnd|Where|ZerosLike|OnesLike|Fill"),
]


def group_of(op_type: str) -> str:
    for name, pattern in GROUPS:
        if re.search(pattern, op_type):
            return name
    return "other"


def op_times(logdir: str) -> dict[str, float]:
    """Total microseconds per op type in the profile's host trace."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    totals: dict[str, float] = collections.defaultdict(float)
    for path in glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True):
        space = xplane_pb2.XSpace()
        with open(path, "rb") as f:
            space.ParseFromString(f.read())
        for plane in space.planes:
            if not plane.name.startswith("/host:CPU"):
                continue
            for line in plane.lines:
                if not line.name.startswith("tf_Compute"):  # the executor threads that run ops
                    continue
                for event in line.events:
                    name = plane.event_metadata[event.metadata_id].name
                    # Ops are "op_name:OpType"; frames around them ("ExecutorState::Process") are not ops.
                    if "::" in name or ":" not in name:
                        continue
                    totals[name.rsplit(":", 1)[1]] += event.duration_ps / 1e6
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_dir", default=os.path.join(os.path.dirname(HERE), ".cache", "minilm", "model"))
    parser.add_argument("--lengths", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--label", default="current", help="a name for this code state in the JSON (e.g. before/after)")
    parser.add_argument("--output_json")
    args = parser.parse_args()

    from bner.environment import configure_environment, machine_facts

    configure_environment()
    import numpy as np
    import tensorflow as tf

    from bner.config import TrainConfig
    from bner.data import batches
    from bner.training.recipe import prepare

    with tempfile.TemporaryDirectory() as out:
        setup = prepare(TrainConfig.from_settings(pretrained_model=args.model_dir, output_dir=out, precision=args.precision))
    rng = np.random.default_rng(0)
    results = []
    for length in args.lengths:
        n = args.batch_size
        ids = rng.integers(min(1000, setup.metadata.encoder.vocab_size // 4), min(20000, setup.metadata.encoder.vocab_size), (n, length)).astype(np.int32)
        mask = np.ones_like(ids)
        labels = rng.integers(0, len(setup.metadata.labels), (n, length)).astype(np.int32)
        batch = batches.Batch(np.arange(n), {"input_ids": ids, "attention_mask": mask, "token_type_ids": 0 * mask}, labels)
        for _ in range(args.warmup):
            setup.step(batch)
        with tempfile.TemporaryDirectory() as logdir:
            tf.profiler.experimental.start(logdir)
            started = time.perf_counter()
            for _ in range(args.steps):
                setup.step(batch)
            wall = (time.perf_counter() - started) / args.steps
            tf.profiler.experimental.stop()
            totals = op_times(logdir)
        per_step = {op: us / args.steps / 1000 for op, us in totals.items()}
        groups: dict[str, float] = collections.defaultdict(float)
        for op, ms in per_step.items():
            groups[group_of(op)] += ms
        row = {
            "batch": n, "length": length, "wall_ms_per_step_profiled": round(1000 * wall, 1),
            "op_ms_per_step_by_group": {k: round(v, 1) for k, v in sorted(groups.items(), key=lambda kv: -kv[1])},
            "op_ms_per_step_top_ops": {k: round(v, 1) for k, v in sorted(per_step.items(), key=lambda kv: -kv[1])[:25]},
        }
        results.append(row)
        print(f"\n{n}×{length}: {row['wall_ms_per_step_profiled']} ms per step (profiled)")
        for name, ms in row["op_ms_per_step_by_group"].items():
            print(f"  {name:24s} {ms:8.1f} ms")
    report = {"benchmark": "training step op times", "label": args.label, "precision": setup.precision,
              "machine": machine_facts(), "steps": results}
    if args.output_json:
        with open(args.output_json + ".tmp", "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)
        os.replace(args.output_json + ".tmp", args.output_json)
        print(f"\nwrote {args.output_json}")


if __name__ == "__main__":
    main()
