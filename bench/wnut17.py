#!/usr/bin/env python3
"""bner against Hugging Face's token-classification recipe on WNUT-17, in one run.

Both fine-tune the same pretrained weights with the same epochs, peak learning rate,
warm-up, weight decay, batch size, maximum length and seed, one after the other on this
machine. For each: training wall time (optimizer steps and batching only; evaluation and
checkpoint writes excluded), real (non-padding) word pieces per second, and dev/test
entity F1 (conlleval rules). Results go to ``bench/results/wnut17_e<epochs>.json``.

    python bench/wnut17.py --epochs 1                       # speed: one epoch
    python bench/wnut17.py --epochs 3                       # quality: a short fine-tune
    python bench/wnut17.py --epochs 1 --skip_hf             # bner alone
    python bench/wnut17.py --epochs 3 --seed 7 --output_json bench/results/wnut17_e3_seed7.json --reuse_hf

``--paired`` trains Hugging Face's recipe from bner's initial classification head and on
bner's batches (the same sentences at every step; bench/bner_recorded.py records them), so
the two halves of a seed differ only in the training itself, not in the draws that move
F1 by points from seed to seed. Pool paired seeds with ``bench/wnut17_summary.py``.

    python bench/wnut17.py --epochs 3 --seed 7 --paired --output_json bench/results/paired/wnut17_e3_seed7.json

``--reuse_hf`` keeps the Hugging Face half of an existing ``--output_json`` made with the
same settings (its runs are deterministic for a seed: identical F1 on reruns) and reruns
only bner; the file records where that half came from.

The baseline runs in its own virtual environment (bench/requirements-hf-baseline.txt,
torch==2.13.0 CPU); point --hf_python at it. bner runs in the current environment.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def run(command: list[str], env: dict | None = None) -> float:
    print("$", " ".join(command), flush=True)
    started = time.time()
    subprocess.run(command, check=True, env={**os.environ, **(env or {})})
    return time.time() - started


def read_json(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def run_bner(args, work: str) -> dict:
    out = os.path.join(work, "bner")
    launcher = ["-m", "bner.ner.task"]
    if args.paired:
        launcher = [os.path.join(HERE, "bner_recorded.py"), f"--record_to={os.path.join(work, 'bner_draws')}", "--"]
    wall = run(
        [
            sys.executable, *launcher,
            f"--pretrained_model={args.model_dir}", f"--data_dir={args.data_dir}", f"--output_dir={out}",
            "--do_train", "--do_eval", f"--num_train_epochs={args.epochs}", f"--learning_rate={args.learning_rate}",
            f"--train_batch_size={args.batch_size}", f"--eval_batch_size={args.batch_size}", f"--max_seq_length={args.max_length}",
            f"--warmup_proportion={args.warmup_ratio}", f"--seed={args.seed}", f"--precision={args.bner_precision}",
            "--save_checkpoints_steps=100000", "--progress=false", *args.bner_flag,
        ]
    )
    training = read_json(os.path.join(out, "run.json"))["training"]
    test, dev = read_json(os.path.join(out, "eval_results.json")), read_json(os.path.join(out, "dev_results.json"))
    return {
        "train_seconds": training["train_seconds"],
        "real_pieces_per_epoch": training["real_pieces_per_epoch"],
        "pieces_per_second": training["real_pieces_per_epoch"] * args.epochs / training["train_seconds"],
        "precision": training["precision"],
        # The pause after each epoch (dev scoring, checkpoint), part by part.
        "epoch_end_pauses": [
            {k: h[k] for k in ("epoch", "dev_seconds", "dev_forward_seconds", "checkpoint_seconds", "pause_seconds") if k in h}
            for h in training.get("history", [])
        ],
        "steps": training["steps"],
        "best_step": training["best_step"],
        "dev": {k: dev[k] for k in ("precision", "recall", "f1")},
        "test": {k: test[k] for k in ("precision", "recall", "f1")},
        "process_wall_seconds": round(wall, 1),
    }


def run_hf(args, work: str) -> dict:
    out = os.path.join(work, "hf.json")
    command = [
        args.hf_python, os.path.join(HERE, "hf_token_classification.py"),
        f"--model_dir={args.model_dir}", f"--data_dir={args.data_dir}", f"--output_json={out}",
        f"--epochs={args.epochs}", f"--batch_size={args.batch_size}", f"--learning_rate={args.learning_rate}",
        f"--warmup_ratio={args.warmup_ratio}", f"--max_length={args.max_length}", f"--seed={args.seed}",
        *(["--bf16"] if hf_bf16(args) else []),
    ]
    if args.paired:
        draws = os.path.join(work, "bner_draws")
        command += [f"--head_init={draws}_head.npz", f"--train_batches={draws}_batches.json"]
    else:
        command.append("--group_by_length")
    wall = run(command)
    result = read_json(out)
    return {
        "train_seconds": result["train_seconds"],
        "real_pieces_per_epoch": result["real_pieces_per_epoch"],
        "pieces_per_second": result["pieces_per_second"],
        "precision": "bf16 autocast" if hf_bf16(args) else "float32",
        "dev": {k: result["dev"][k] for k in ("precision", "recall", "f1")},
        "test": {k: result["test"][k] for k in ("precision", "recall", "f1")},
        "truncated_words": result.get("truncated_words"),
        "versions": {k: result["config"].get(k) for k in ("torch_version", "transformers_version")},
        "process_wall_seconds": round(wall, 1),
    }


def hf_bf16(args) -> bool:
    """Whether the recipe runs in bf16 autocast: ``auto`` follows bner's own rule (bf16 only where the
    CPU computes it natively, AMX or AVX-512 BF16), so each side runs its fastest configuration;
    on a CPU without them torch emulates bf16 and runs several times slower than float32."""
    if args.hf_precision == "auto":
        from bner.environment import cpu_has_bf16

        return cpu_has_bf16()
    return args.hf_precision == "bf16"


SHARED_SETTINGS = ("model_dir", "data_dir", "epochs", "batch_size", "learning_rate", "warmup_ratio", "max_length", "seed", "hf_precision")


def bner_machine_facts() -> dict:
    from bner.environment import machine_facts

    return machine_facts()


def reusable_hf(path: str, args) -> dict | None:
    """The HF results stored in ``path`` when they were made with the same settings, else None."""
    if not os.path.exists(path):
        return None
    previous = read_json(path)
    settings = previous.get("settings", {})
    if "huggingface" not in previous or settings.get("paired") or any(settings.get(k) != getattr(args, k) for k in SHARED_SETTINGS):
        return None
    hf = previous["huggingface"]
    return {**hf, "reused_from_run_of": hf.get("reused_from_run_of", previous["date"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_dir", default=os.path.join(ROOT, ".cache", "minilm", "model"))
    parser.add_argument("--data_dir", default=os.path.join(ROOT, "..", "shared", "data", "wnut17"))
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--learning_rate", type=float, default=5e-5)
    parser.add_argument("--warmup_ratio", type=float, default=0.1)
    parser.add_argument("--max_length", type=int, default=128)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--bner_precision", default="auto")
    parser.add_argument("--hf_precision", choices=("auto", "bf16", "float32"), default="auto",
                        help="the recipe's precision; auto: bf16 autocast only where the CPU computes bf16 natively")
    parser.add_argument("--hf_python", default=os.path.join(ROOT, ".cache", "hfvenv", "bin", "python"))
    parser.add_argument("--skip_hf", action="store_true")
    parser.add_argument("--bner_flag", action="append", default=[],
                        help="an extra flag for bner only, e.g. --bner_flag=--context_words=64 (repeatable; recorded in the JSON)")
    parser.add_argument("--paired", action="store_true", help="HF starts from bner's initial head and trains on bner's batches")
    parser.add_argument("--reuse_hf", action="store_true", help="keep the HF results of --output_json if its settings match")
    parser.add_argument("--output_json", default=None)
    parser.add_argument("--keep_output", default=None, help="copy bner's run folder (model, export, results) here")
    args = parser.parse_args()
    if not os.path.exists(os.path.join(args.data_dir, "train.conll")):
        sys.exit(f"{args.data_dir}: no train.conll (WNUT-17 lives in ../shared/data/wnut17 beside the project)")

    epochs = f"{args.epochs:g}"
    path = args.output_json or os.path.join(HERE, "results", f"wnut17_e{epochs}.json")
    if args.paired and args.reuse_hf:
        sys.exit("--paired trains HF on this run's own draws: it cannot reuse an earlier HF half")
    reused = reusable_hf(path, args) if args.reuse_hf else None
    if args.reuse_hf and not reused:
        print(f"{path}: no Hugging Face results with these settings to reuse; running the baseline", flush=True)
    work = tempfile.mkdtemp(prefix="bner-bench-")
    try:
        results = {
            "benchmark": "wnut17 fine-tuning",
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": bner_machine_facts(),
            "settings": {k: v for k, v in vars(args).items() if k not in ("hf_python", "output_json")},
            "load_average_before": os.getloadavg(),
            "bner": run_bner(args, work),
        }
        if reused:
            results["huggingface"] = reused
        elif not args.skip_hf:
            results["huggingface"] = run_hf(args, work)
        if "huggingface" in results:
            b, h = results["bner"], results["huggingface"]
            results["wall_time_ratio_bner_over_hf"] = round(b["train_seconds"] / h["train_seconds"], 3)
            results["test_f1_difference_bner_minus_hf"] = round(100 * (b["test"]["f1"] - h["test"]["f1"]), 2)
        results["load_average_after"] = os.getloadavg()
        if args.keep_output:
            shutil.rmtree(args.keep_output, ignore_errors=True)
            shutil.copytree(os.path.join(work, "bner"), args.keep_output, ignore=shutil.ignore_patterns("checkpoints"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2)
    os.replace(path + ".tmp", path)
    print(json.dumps(results, indent=2))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
