#!/usr/bin/env python3
"""Long inputs: preparing one labelled sentence of up to 1M words, and `bner predict` on a 200 MB line.

1. The time per word of ``Preprocessor.encode`` (tokenizer, windows, labels) for one sentence of
   25,000 to 1,000,000 words: flat when preparation is linear in sentence length.
2. Peak resident memory of ``bner predict`` on a file holding a short line, a 200 MB line (over
   ``--max_line_bytes``: reported, never held whole) and a line just under the limit.

    python bench/long_inputs.py --export runs/sample/export/bner/1
"""

from __future__ import annotations

import argparse
import datetime
import os
import resource
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from common import write_result  # noqa: E402


def preparation(export: str, sizes: list[int]) -> list[dict]:
    import bner

    preprocessor = bner.load(export).preprocessor
    rows = []
    for n in sizes:
        words = [("Paris", "London", "x", "the")[i % 4] for i in range(n)]
        labels = [i % 3 for i in range(n)]
        started = time.perf_counter()
        windows = len(preprocessor.encode([words], [labels]))
        seconds = time.perf_counter() - started
        rows.append({"words": n, "seconds": round(seconds, 3), "microseconds_per_word": round(seconds / n * 1e6, 2), "windows": windows})
        print(f"  one sentence of {n:,} words: {seconds:.2f} s, {rows[-1]['microseconds_per_word']} µs a word", flush=True)
    return rows


def long_line(export: str, huge_mb: int, limit: int) -> dict:
    from bner.inference.prediction import MAX_LINE_BYTES

    limit = limit or MAX_LINE_BYTES
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "long.txt")
        with open(path, "w", encoding="utf-8") as f:
            f.write("Angela Merkel flew to Paris .\n")
            chunk = "Paris " * 166_667  # about 1 MB
            for _ in range(huge_mb):
                f.write(chunk)
            f.write("\n" + "Paris " * ((limit - 10) // 6) + "\n")
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "bner.cli.main", "predict", export, path, "--output", path + ".jsonl",
                               "--progress", "false", "--max_line_bytes", str(limit)], capture_output=True, text=True)
        seconds = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        with open(path + ".jsonl.errors.jsonl", encoding="utf-8") as f:
            errors = f.read().splitlines()
    result = {"huge_line_mb": huge_mb, "max_line_bytes": limit,
              "exit_status": done.returncode, "seconds": round(seconds, 1),
              "peak_rss_mb": round(max(peak, before) / 1024, 1), "errors_file_lines": len(errors)}
    print(f"  a {huge_mb} MB line and one of {limit:,} bytes: peak RSS {result['peak_rss_mb']} MB, {seconds:.1f} s, "
          f"exit {done.returncode}, {len(errors)} line(s) in the errors file", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--export", required=True)
    parser.add_argument("--sizes", type=int, nargs="+", default=[25_000, 100_000, 250_000, 1_000_000])
    parser.add_argument("--huge_mb", type=int, default=200)
    parser.add_argument("--max_line_bytes", type=int, default=0, help="0: bner predict's default")
    parser.add_argument("--output_json", default=os.path.join(HERE, "results", "long_inputs.json"))
    args = parser.parse_args()
    from bner.environment import machine_facts

    write_result({
        "benchmark": "long inputs: preparation time per word, and bner predict's memory with a 200 MB line",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_facts(),
        "export": args.export,
        # The long line first: a child's peak memory counts this process's pages at the time it
        # starts, so it must start before this process has tagged anything itself.
        "long_line": long_line(args.export, args.huge_mb, args.max_line_bytes),
        "preparation": preparation(args.export, args.sizes),
    }, args.output_json)


if __name__ == "__main__":
    main()
