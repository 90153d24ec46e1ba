#!/usr/bin/env python3
"""How fast the server comes up, and how much memory it holds: start to ready, RSS, import times.

Starts ``python -m bner.serving --model_dir <export>`` on a free loopback port, polls
``/api/ner/ready`` until it answers 200, and reads the server's resident memory then. Also
times ``import bner`` and ``import bner.serving.app`` in fresh processes. Each figure is the
median of ``--repeats`` runs with a warm file cache (one unmeasured run first).

    python bench/serve_startup.py --export runs/sample/export/bner [--output_json bench/results/serve_startup.json]
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from server_process import free_port, rss_mb, write_result  # noqa: E402


def start_to_ready(export: str, timeout: float = 120.0) -> tuple[float, float]:
    port = free_port()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    started = time.perf_counter()
    server = subprocess.Popen(
        [sys.executable, "-m", "bner.serving", "--model_dir", export, "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        while time.perf_counter() - started < timeout:
            if server.poll() is not None:
                raise SystemExit(f"the server exited with {server.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/ner/ready", timeout=5) as reply:
                    if reply.status == 200:
                        return time.perf_counter() - started, rss_mb(server.pid)
            except OSError:
                time.sleep(0.05)
        raise SystemExit("the server did not become ready in time")
    finally:
        server.terminate()
        server.wait(timeout=30)


def import_seconds(module: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", f"import {module}"], check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--export", required=True, help="an export version folder or a folder of versions")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--label", default="current", help="a name for this code state in the JSON")
    parser.add_argument("--output_json", default=os.path.join(HERE, "results", "serve_startup.json"))
    args = parser.parse_args()
    start_to_ready(args.export)  # warm the file cache
    runs = [start_to_ready(args.export) for _ in range(args.repeats)]
    imports = {m: statistics.median(import_seconds(m) for _ in range(args.repeats)) for m in ("bner", "bner.serving.app")}
    result = {
        "benchmark": "server start to ready, RSS, import time",
        "label": args.label,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "export": args.export,
        "cpus": os.cpu_count(),
        "start_to_ready_seconds": round(statistics.median(r[0] for r in runs), 2),
        "rss_mb_at_ready": round(statistics.median(r[1] for r in runs), 1),
        "import_seconds": {k: round(v, 3) for k, v in imports.items()},
        "runs": [{"seconds": round(s, 2), "rss_mb": round(m, 1)} for s, m in runs],
    }
    write_result(result, args.output_json)


if __name__ == "__main__":
    main()
