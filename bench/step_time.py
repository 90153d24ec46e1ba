#!/usr/bin/env python3
"""Training step time at fixed shapes: bner's TensorFlow step against PyTorch's.

MiniLM-L6-H384, batch 32 at lengths 32/64/128: bner's ``TensorFlowStep`` at the precision
``auto`` picks on this CPU (mixed bfloat16 where it computes bf16 natively, else float32),
with TensorFlow's oneDNN kernels on (bner's default) and off (``--onednn both``), and the
same model in PyTorch at the matching precision (bf16 autocast or float32), fused AdamW
and gradient clipping (its own venv, torch 2.13.0 CPU). Each runs in a fresh process.

    python bench/step_time.py [--model_dir .cache/minilm/model] [--torch_python /path/to/hfvenv/bin/python] \
        [--onednn both] [--output_json bench/results/step_time.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
LENGTHS = (32, 64, 128)

BNER = """
import json, os, sys, tempfile, time, numpy as np
from bner.environment import configure_environment; configure_environment()
from bner.training.hardware import select_precision
from bner.data import batches
from bner.config import TrainConfig
from bner.training.recipe import prepare
precision, model_dir, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
lengths = [int(x) for x in sys.argv[4].split(",")]
# The step as bner.train prepares it (network, AdamW, strategy, clipping) for a run on the bundled sample.
with tempfile.TemporaryDirectory() as out:
    setup = prepare(TrainConfig.from_settings(pretrained_model=model_dir, output_dir=out, precision=precision))
precision = setup.precision
step, num_labels = setup.step, len(setup.metadata.labels)
rng = np.random.default_rng(0)
for length in lengths:
    ids = rng.integers(min(1000, setup.metadata.encoder.vocab_size // 4), min(20000, setup.metadata.encoder.vocab_size), (32, length)).astype(np.int32)
    labels = rng.integers(0, num_labels, (32, length)).astype(np.int32)
    mask = np.ones_like(ids)
    b = batches.Batch(np.arange(32), {"input_ids": ids, "attention_mask": mask, "token_type_ids": 0 * mask}, labels)
    step(b); step(b)
    times = []
    for _ in range(steps):
        t = time.perf_counter(); step(b); times.append(time.perf_counter() - t)
    print(json.dumps({"system": "bner", "precision": precision, "length": length, "labels": num_labels,
                      "onednn": os.environ["TF_ENABLE_ONEDNN_OPTS"] == "1", "median_seconds": float(np.median(times))}), flush=True)
"""

TORCH = """
import json, sys, time, torch
from transformers import AutoModelForTokenClassification
model_dir, steps = sys.argv[1], int(sys.argv[2])
lengths = [int(x) for x in sys.argv[3].split(",")]
bf16 = sys.argv[4] == "bf16"
torch.manual_seed(0)
m = AutoModelForTokenClassification.from_pretrained(model_dir, num_labels=9)  # as bner: the sample's labels
m.train()
opt = torch.optim.AdamW(m.parameters(), lr=5e-5, weight_decay=0.01, fused=True)
for length in lengths:
    ids = torch.randint(1000, 20000, (32, length)); labels = torch.randint(0, 9, (32, length))
    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = m(input_ids=ids, labels=labels).loss
        loss.backward(); torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0); opt.step(); opt.zero_grad()
    step(); step()
    times = []
    for _ in range(steps):
        t = time.perf_counter(); step(); times.append(time.perf_counter() - t)
    times.sort()
    print(json.dumps({"system": "pytorch", "precision": "bf16 autocast" if bf16 else "float32", "length": length, "median_seconds": times[len(times) // 2],
                      "torch": torch.__version__, "threads": torch.get_num_threads()}), flush=True)
"""


def run(command: list[str], env: dict | None = None) -> list[dict]:
    out = subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_dir", default=os.path.join(os.path.dirname(HERE), ".cache", "minilm", "model"))
    parser.add_argument("--torch_python", default=None, help="python of a venv with torch==2.13.0 and transformers")
    parser.add_argument("--steps", type=int, default=7)
    parser.add_argument("--onednn", choices=("on", "off", "both"), default="on", help="TensorFlow's oneDNN kernels for bner")
    parser.add_argument("--output_json", default=os.path.join(HERE, "results", "step_time.json"))
    args = parser.parse_args()
    sys.path.insert(0, os.path.dirname(HERE))
    from bner.environment import cpu_has_bf16, machine_facts

    lengths = ",".join(map(str, LENGTHS))
    runs = []
    for onednn in {"on": ["1"], "off": ["0"], "both": ["1", "0"]}[args.onednn]:
        env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": onednn}
        runs += run([sys.executable, "-c", BNER, "auto", args.model_dir, str(args.steps), lengths], env)
    if args.torch_python:
        runs += run([args.torch_python, "-c", TORCH, args.model_dir, str(args.steps), lengths, "bf16" if cpu_has_bf16() else "float32"])
    for r in runs:
        onednn = {True: " oneDNN", False: " Eigen"}.get(r.get("onednn"), "")
        print(f"{r['system'] + onednn:14} {r['precision']:15} 32x{r['length']:<4} {r['median_seconds']:.3f} s/step  "
              f"{32 * r['length'] / r['median_seconds']:.0f} pieces/s")
    results = {"batch_size": 32, "machine": machine_facts(), "load_average": os.getloadavg(), "runs": runs}
    with open(args.output_json + ".tmp", "w") as f:
        json.dump(results, f, indent=2)
    os.replace(args.output_json + ".tmp", args.output_json)
    print(f"wrote {args.output_json}")


if __name__ == "__main__":
    main()
