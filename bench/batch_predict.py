#!/usr/bin/env python3
"""Sentences per second labelling a corpus: ``bner predict`` against Beam with 1 and 2 local workers.

The same export and the same sentences (raw text, one sentence a line, cut into 8 files
for Beam to spread over its workers), measured one after the other in this process:

    python bench/batch_predict.py --export runs/sample/export/bner --sentences 20000

Sentences come from the shared WNUT-17 and NCBI-disease training files (tokens joined by
spaces), repeated if needed. Results go to bench/results/batch_predict.json with the
machine's CPU facts; the Beam runs include starting the pipeline and loading the model
in each worker.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from bner.data import corpus  # noqa: E402
from bner.environment import machine_facts  # noqa: E402
from bner.inference import prediction  # noqa: E402

SHARED = os.path.join(os.path.dirname(ROOT), "shared", "data")


def sentences(count: int) -> list[str]:
    texts = []
    for name in ("wnut17", "ncbi_disease"):
        path = os.path.join(SHARED, name, "train.conll")
        if os.path.exists(path):
            texts += [" ".join(s.words) for s in corpus.read_conll(path)]
    if not texts:
        raise SystemExit(f"no corpus under {SHARED}")
    return [texts[i % len(texts)] for i in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--export", required=True)
    parser.add_argument("--sentences", type=int, default=20_000)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--output_json", default=os.path.join(HERE, "results", "batch_predict.json"))
    args = parser.parse_args()

    from bner import batch_predict
    from bner.inference.loader import load

    texts = sentences(args.sentences)
    with tempfile.TemporaryDirectory(prefix="bner-bench-") as tmp:
        whole = os.path.join(tmp, "all.txt")
        with open(whole, "w", encoding="utf-8") as f:
            f.write("\n".join(texts) + "\n")
        per_file = -(-len(texts) // args.files)
        for i in range(args.files):
            with open(os.path.join(tmp, f"part-{i}.txt"), "w", encoding="utf-8") as f:
                f.write("\n".join(texts[i * per_file : (i + 1) * per_file]) + "\n")

        runs = {}
        started = time.perf_counter()
        tagger = load(args.export, batch_size=args.batch_size)
        loaded = time.perf_counter()
        count = prediction.predict_file(tagger, whole, os.path.join(tmp, "predicted.jsonl"), batch_size=args.batch_size).count
        done = time.perf_counter()
        runs["bner predict"] = {"seconds": round(done - started, 1), "load_seconds": round(loaded - started, 1),
                                "sentences_per_second": round(count / (done - started), 1)}
        print(f"bner predict: {count} sentences in {done - started:.1f} s", flush=True)
        predicted = sum(len(json.loads(line)["entities"]) for line in open(os.path.join(tmp, "predicted.jsonl"), encoding="utf-8"))

        for workers in (1, 2):
            output = os.path.join(tmp, f"beam{workers}", "part")
            started = time.perf_counter()
            batch_predict.run(args.export, [os.path.join(tmp, "part-*.txt")], output, num_workers=workers, batch_size=args.batch_size)
            seconds = time.perf_counter() - started
            lines = [json.loads(line) for path in glob.glob(output + "-*-of-*.jsonl") for line in open(path, encoding="utf-8")]
            assert len(lines) == count, (len(lines), count)
            entities = sum(len(r["entities"]) for r in lines)
            runs[f"beam, {workers} worker{'s' if workers > 1 else ''}"] = {
                "seconds": round(seconds, 1), "sentences_per_second": round(count / seconds, 1), "same_entity_count": entities == predicted,
            }
            print(f"beam {workers} worker(s): {count} sentences in {seconds:.1f} s", flush=True)

    result = {
        "benchmark": "sentences per second labelling raw text: bner predict vs Beam (FnApiRunner) with 1 and 2 local workers",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "export": args.export, "sentences": count, "batch_size": args.batch_size, "input_files_for_beam": args.files,
        "machine": machine_facts(), "runs": runs,
    }
    os.makedirs(os.path.dirname(args.output_json), exist_ok=True)
    with open(args.output_json, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
