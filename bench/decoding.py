#!/usr/bin/env python3
"""What valid-sequence decoding and document consistency buy: the same trained models scored each way.

For each seed, bner fine-tunes MiniLM with the recipe's settings (as bench/wnut17.py does),
then scores dev and test three times with the very same model: each word's arg-max label
(bner before constrained decoding), the most probable valid sequence (bner.inference.decoding), and
that sequence made consistent within documents (bner.inference.consistency, bner's default). The
comparison is paired, so seed-to-seed noise cancels; the summary gives the mean
differences with 95 % t-intervals. The number of invalid arg-max sequences is counted
too. Results: bench/results/decoding/<data>_seed<N>.json and <data>_summary.json (runs from
before consistency have no ``consistent`` figures; the summary then leaves them out).

    python bench/decoding.py --data_dir ../shared/data/wnut17 --seeds 1 2 3
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import statistics
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

# Two-sided 95 % t quantiles by degrees of freedom.
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


def interval(differences: list[float]) -> dict:
    n = len(differences)
    mean = statistics.fmean(differences)
    if n < 2:
        return {"mean": mean, "n": n}
    half = T95.get(n - 1, 1.96) * statistics.stdev(differences) / math.sqrt(n)
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": n}


MODES = (("argmax", "argmax", False), ("constrained", "constrained", False), ("consistent", "constrained", True))


def run_seed(args, seed: int) -> dict:
    import bner
    from bner.data import corpus
    from bner.inference import decoding as scheme_decoding

    name = os.path.basename(os.path.normpath(args.data_dir))
    with tempfile.TemporaryDirectory(prefix="bner-decoding-") as out:
        config = bner.TrainConfig.from_settings(
            data_dir=args.data_dir, pretrained_model=args.model_dir, output_dir=out, num_train_epochs=args.epochs,
            learning_rate=args.learning_rate, train_batch_size=32, eval_batch_size=32, max_seq_length=128, seed=seed,
            save_checkpoints_steps=100_000, progress=False, export=False, precision=args.precision,
        )
        trained = bner.train(config, say=lambda line: print(line, flush=True))
        result = {"data": name, "seed": seed, "epochs": args.epochs, "learning_rate": args.learning_rate,
                  "train_seconds": trained.train_seconds, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        for split in ("dev", "test"):
            sentences = corpus.read_conll(os.path.join(args.data_dir, f"{split}.conll"))
            for mode, decoding, consistent in MODES:
                tagger = bner.load(trained.model_dir, batch_size=32, decoding=decoding, consistent=consistent)
                scores, _ = tagger.evaluation(sentences)
                result[f"{split}_f1_{mode}"] = 100 * scores.f1
                if mode == "argmax":
                    tagged = tagger.tag_sentences([s.words for s in sentences])
                    rules = scheme_decoding.transitions(tuple(tagger.labels), tagger.metadata.label_scheme)
                    index = {label: i for i, label in enumerate(tagger.labels)}
                    result[f"{split}_invalid_argmax_sentences"] = sum(
                        not scheme_decoding.is_valid([index[t] for t in s.tags], rules) for s in tagged)
            print(f"seed {seed} {split}: " + ", ".join(f"{mode} {result[f'{split}_f1_{mode}']:.2f}" for mode, _, _ in MODES), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", default=os.path.join(ROOT, "..", "shared", "data", "wnut17"))
    parser.add_argument("--model_dir", default=os.path.join(ROOT, ".cache", "minilm", "model"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--learning_rate", type=float, default=5e-5)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--results_dir", default=os.path.join(HERE, "results", "decoding"))
    args = parser.parse_args()
    os.makedirs(args.results_dir, exist_ok=True)
    name = os.path.basename(os.path.normpath(args.data_dir))
    runs = []
    for seed in args.seeds:
        path = os.path.join(args.results_dir, f"{name}_seed{seed}.json")
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                runs.append(json.load(f))
            continue
        runs.append(run_seed(args, seed))
        with open(path, "w", encoding="utf-8") as f:
            json.dump(runs[-1], f, indent=1)
    summary = {"data": name, "seeds": [r["seed"] for r in runs], "epochs": args.epochs}
    for split in ("dev", "test"):
        summary[f"{split}_f1_argmax_mean"] = statistics.fmean(r[f"{split}_f1_argmax"] for r in runs)
        summary[f"{split}_f1_constrained_mean"] = statistics.fmean(r[f"{split}_f1_constrained"] for r in runs)
        summary[f"{split}_constrained_minus_argmax"] = interval([r[f"{split}_f1_constrained"] - r[f"{split}_f1_argmax"] for r in runs])
        summary[f"{split}_invalid_argmax_sentences_mean"] = statistics.fmean(r[f"{split}_invalid_argmax_sentences"] for r in runs)
        if all(f"{split}_f1_consistent" in r for r in runs):
            summary[f"{split}_f1_consistent_mean"] = statistics.fmean(r[f"{split}_f1_consistent"] for r in runs)
            summary[f"{split}_consistent_minus_constrained"] = interval(
                [r[f"{split}_f1_consistent"] - r[f"{split}_f1_constrained"] for r in runs])
            summary[f"{split}_consistent_minus_argmax"] = interval([r[f"{split}_f1_consistent"] - r[f"{split}_f1_argmax"] for r in runs])
    with open(os.path.join(args.results_dir, f"{name}_summary.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
