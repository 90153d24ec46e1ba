#!/usr/bin/env python3
"""Fine-tuning speed and a learning check for every encoder family, bner against the Hugging Face recipe.

No pretrained weights of RoBERTa, XLM-R, DeBERTa, DistilBERT, ELECTRA or ALBERT are
available offline, so each family is a small random model written by transformers itself
(scripts/make_encoder_fixtures.py: 2 layers, 3 for ALBERT, hidden 128, a 4,000-piece
tokenizer of the family's kind trained on the benchmark's training text). Both systems
fine-tune it for one epoch on the same data with the same settings, one after the other in
this run (bench/wnut17.py's two halves). The figures to read are the training speed (real
word pieces a second) and that the loss falls and F1 leaves zero.

    /work/hfvenv/bin/python scripts/make_encoder_fixtures.py --out .cache/bench_encoders \
        --corpus ../shared/data/ncbi_disease/train.conll --vocab 4000 --hidden 128 --init huggingface
    python bench/encoder_families.py --models .cache/bench_encoders --data_dir ../shared/data/ncbi_disease \
        --hf_python /work/hfvenv/bin/python

Without --models it runs the test fixtures (hidden 32, a 400-piece vocabulary), which learn
too little NER in an epoch to leave F1 zero.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import wnut17  # noqa: E402  (its bner and Hugging Face halves)
from common import write_result  # noqa: E402

FIXTURES = os.path.join(ROOT, "tests", "fixtures", "encoders")


def loss_fell(run_folder_json: str) -> dict:
    curve = wnut17.read_json(run_folder_json)["training"]["loss_curve"]
    losses = [point["loss"] if isinstance(point, dict) else point[1] for point in curve]
    return {"first_loss": round(losses[0], 4), "last_loss": round(losses[-1], 4)} if losses else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=FIXTURES, help="a folder of one model folder per family")
    parser.add_argument("--families", nargs="*", default=None, help="default: every folder in --models")
    parser.add_argument("--data_dir", default=os.path.join(ROOT, "..", "shared", "data", "ncbi_disease"))
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--learning_rate", type=float, default=1e-3)  # random weights: a pretrained rate would barely move them
    parser.add_argument("--max_length", type=int, default=128)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--hf_python", default=os.path.join(ROOT, ".cache", "hfvenv", "bin", "python"))
    parser.add_argument("--skip_hf", action="store_true")
    parser.add_argument("--output_json", default=os.path.join(HERE, "results", "encoder_families.json"))
    args = parser.parse_args()
    args.families = args.families or sorted(f for f in os.listdir(args.models) if os.path.exists(os.path.join(args.models, f, "config.json")))
    results = {
        "benchmark": "one epoch per encoder family (tiny random models), bner and the Hugging Face recipe",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": wnut17.bner_machine_facts(),
        "settings": {k: v for k, v in vars(args).items() if k not in ("hf_python", "output_json")},
        "load_average_before": os.getloadavg(),
        "families": {},
    }
    for family in args.families:
        shared = argparse.Namespace(
            model_dir=os.path.join(args.models, family), data_dir=args.data_dir, epochs=args.epochs, batch_size=args.batch_size,
            learning_rate=args.learning_rate, warmup_ratio=0.1, max_length=args.max_length, seed=args.seed,
            bner_precision="auto", hf_precision="auto", hf_python=args.hf_python, paired=False, bner_flag=[],
        )
        work = tempfile.mkdtemp(prefix=f"bner-family-{family}-")
        try:
            row = {"bner": wnut17.run_bner(shared, work)}
            row["bner"].update(loss_fell(os.path.join(work, "bner", "run.json")))
            if not args.skip_hf:
                row["huggingface"] = wnut17.run_hf(shared, work)
                hf = wnut17.read_json(os.path.join(work, "hf.json"))
                row["huggingface"]["train_loss"] = hf.get("train_loss")
                row["huggingface"]["torch_num_threads"] = hf.get("config", {}).get("torch_num_threads")
                row["pieces_per_second_bner_over_hf"] = round(
                    row["bner"]["pieces_per_second"] / row["huggingface"]["pieces_per_second"], 2)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        results["families"][family] = row
        b = row["bner"]
        line = (f"{family:12s} bner {b['pieces_per_second']:8.0f} pieces/s, loss {b.get('first_loss')} → {b.get('last_loss')}, "
                f"test F1 {100 * b['test']['f1']:.2f}")
        if "huggingface" in row:
            h = row["huggingface"]
            line += f" | HF {h['pieces_per_second']:8.0f} pieces/s, test F1 {100 * h['test']['f1']:.2f}"
        print(line, flush=True)
    results["load_average_after"] = os.getloadavg()
    write_result(results, args.output_json)


if __name__ == "__main__":
    main()
