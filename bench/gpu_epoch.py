#!/usr/bin/env python3
"""One training epoch on a GPU: bner (JAX backend, and TensorFlow where installed) against the HF recipe.

For a GPU machine (CI never has one). Same data, model, batch, length and learning rate for
every system, one after the other on the same GPU; for each: optimizer-step wall time,
real (non-padding) word pieces per second and model FLOPs utilisation (MFU: 6 × parameters
× pieces per second over the GPU's peak dense bf16 FLOP/s; attention's own FLOPs are left
out, as is usual for short sequences). Results go to ``--output_json``.

A BERT-base-size model without a download: ``--make_random_base DIR`` writes a randomly
initialised BERT-base (12 layers, hidden 768) Hugging Face folder with MiniLM's vocabulary,
using the recipe's python (transformers); speed does not depend on the weights.

    python bench/gpu_epoch.py --make_random_base /tmp/bert-base --hf_python /path/to/hfvenv/bin/python
    python bench/gpu_epoch.py --model_dir /tmp/bert-base --data_dir ../shared/data/ncbi_disease \\
        --hf_python /path/to/hfvenv/bin/python --peak_tflops 989 --output_json bench/results/gpu_epoch.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

MAKE_BASE = """
import shutil, sys
from transformers import BertConfig, BertForTokenClassification
out, vocab = sys.argv[1], sys.argv[2]
config = BertConfig(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                    intermediate_size=3072, hidden_act="gelu", max_position_embeddings=512)
BertForTokenClassification(config).bert.save_pretrained(out)
shutil.copy(vocab, out + "/vocab.txt")
"""


def parameters(model_dir: str) -> int:
    """Encoder parameters from the folder's config.json (the FLOPs of a token: 6 × parameters)."""
    with open(os.path.join(model_dir, "config.json")) as f:
        c = json.load(f)
    h, layers, inter, vocab = c["hidden_size"], c["num_hidden_layers"], c["intermediate_size"], c["vocab_size"]
    per_layer = 4 * h * h + 4 * h + 2 * h * inter + inter + h + 4 * h
    return layers * per_layer + (vocab + c.get("max_position_embeddings", 512) + c.get("type_vocab_size", 2) + 2) * h


def run_bner(args, backend: str, work: str) -> dict:
    out = os.path.join(work, f"bner-{backend}")
    command = [
        sys.executable, "-m", "bner.ner.task", f"--pretrained_model={args.model_dir}", f"--data_dir={args.data_dir}",
        f"--output_dir={out}", "--do_train", "--num_train_epochs=1", f"--learning_rate={args.learning_rate}",
        f"--train_batch_size={args.batch_size}", f"--max_seq_length={args.max_length}", "--precision=auto",
        "--save_checkpoints_steps=100000", "--progress=false", "--export=false",
    ]
    started = time.time()
    subprocess.run(command, check=True, env={**os.environ, "KERAS_BACKEND": backend})
    with open(os.path.join(out, "run.json")) as f:
        training = json.load(f)["training"]
    return {"train_seconds": training["train_seconds"], "real_pieces": training["real_pieces_per_epoch"],
            "precision": training["precision"], "process_wall_seconds": round(time.time() - started, 1)}


def run_hf(args, work: str) -> dict:
    out = os.path.join(work, "hf.json")
    command = [
        args.hf_python, os.path.join(HERE, "hf_token_classification.py"), f"--model_dir={args.model_dir}",
        f"--data_dir={args.data_dir}", f"--output_json={out}", "--epochs=1", f"--batch_size={args.batch_size}",
        f"--learning_rate={args.learning_rate}", f"--max_length={args.max_length}", "--bf16", "--group_by_length",
    ]
    started = time.time()
    subprocess.run(command, check=True)
    with open(out) as f:
        result = json.load(f)
    return {"train_seconds": result["train_seconds"], "real_pieces": result["real_pieces_per_epoch"],
            "precision": "bf16 autocast", "process_wall_seconds": round(time.time() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--make_random_base", metavar="DIR", help="write a random BERT-base folder here and stop")
    parser.add_argument("--model_dir")
    parser.add_argument("--data_dir", default=os.path.join(ROOT, "..", "shared", "data", "ncbi_disease"))
    parser.add_argument("--hf_python", help="python of the recipe's venv (torch, transformers)")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--max_length", type=int, default=128)
    parser.add_argument("--learning_rate", type=float, default=5e-5)
    parser.add_argument("--peak_tflops", type=float, default=989.0, help="the GPU's dense bf16 peak (H100/H200 SXM: 989)")
    parser.add_argument("--systems", nargs="+", default=["jax", "tensorflow", "hf"])
    parser.add_argument("--output_json", default=os.path.join(HERE, "results", "gpu_epoch.json"))
    args = parser.parse_args()
    if args.make_random_base:
        vocab = os.path.join(ROOT, ".cache", "minilm", "model", "vocab.txt")
        subprocess.run([args.hf_python or sys.executable, "-c", MAKE_BASE, args.make_random_base, vocab], check=True)
        print(f"wrote {args.make_random_base}")
        return
    if not args.model_dir:
        sys.exit("--model_dir is required (or --make_random_base DIR first)")
    flops_per_piece = 6 * parameters(args.model_dir)
    results = {"benchmark": "one training epoch on a GPU", "settings": vars(args), "parameters": flops_per_piece // 6}
    try:
        results["gpu"] = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                                capture_output=True, text=True).stdout.strip()
    except OSError:
        results["gpu"] = "unknown (no nvidia-smi)"
    work = tempfile.mkdtemp(prefix="bner-gpu-")
    try:
        for system in args.systems:
            if system == "hf":
                if not args.hf_python:
                    results[system] = {"skipped": "no --hf_python"}
                    continue
                r = run_hf(args, work)
            elif system == "tensorflow" and importlib.util.find_spec("tensorflow") is None:
                results[system] = {"skipped": "TensorFlow is not installed on this machine"}
                continue
            else:
                r = run_bner(args, system, work)
            r["pieces_per_second"] = round(r["real_pieces"] / r["train_seconds"], 1)
            r["mfu"] = round(flops_per_piece * r["pieces_per_second"] / (args.peak_tflops * 1e12), 4)
            results[system] = r
            print(system, json.dumps(r), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    with open(args.output_json + ".tmp", "w") as f:
        json.dump(results, f, indent=2)
    os.replace(args.output_json + ".tmp", args.output_json)
    print(f"wrote {args.output_json}")


if __name__ == "__main__":
    main()
