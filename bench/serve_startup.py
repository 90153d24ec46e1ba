#!/usr/bin/env python3
"""How fast the server comes up, and how much memory it holds: start to ready, cold start, RSS, imports.

Starts ``python -m bner.serving --model_dir <export>`` on a free loopback port, polls
``/api/ner/ready`` until it answers 200, and reads the server's resident memory then.
The cold start (what scale-to-zero costs a user, e.g. on Cloud Run) is measured as the CPU
image runs: ``bner-serve`` with ``MODEL_DIR`` in the environment, a client posting to
``/api/ner/recognize`` from the moment the process starts until the first answer, then
the latency of the first and second requests once it is up. Also times ``import bner``
and ``import bner.serving.app`` in fresh processes. Each figure is the median of
``--repeats`` runs with a warm file cache (one unmeasured run first).

Each ``--runtimes`` (``onnx``: the export's model.onnx in ONNX Runtime; ``tensorflow``: its
SavedModel) is measured in the same run, one after the other (``BNER_RUNTIME``).

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
from common import free_port, rss_mb, write_result  # noqa: E402


def until_answered(command: list[str], env: dict, probe, timeout: float = 120.0):
    """Start the server and call ``probe(server, started)`` until it returns without an OSError; stop the server."""
    started = time.perf_counter()
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while time.perf_counter() - started < timeout:
            if server.poll() is not None:
                raise SystemExit(f"the server exited with {server.returncode}")
            try:
                return probe(server, started)
            except OSError:
                time.sleep(0.05)
        raise SystemExit("the server did not answer in time")
    finally:
        server.terminate()
        server.wait(timeout=30)


RUNTIME = {"BNER_RUNTIME": "auto"}  # set per measured runtime in main()


def start_to_ready(export: str) -> tuple[float, float]:
    port = free_port()

    def ready(server, started):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/ner/ready", timeout=5) as reply:
            if reply.status != 200:
                raise OSError(reply.status)
        return time.perf_counter() - started, rss_mb(server.pid)

    command = [sys.executable, "-m", "bner.serving", "--model_dir", export, "--host", "127.0.0.1", "--port", str(port)]
    return until_answered(command, {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **RUNTIME}, ready)


def cold_start(export: str) -> dict:
    """Seconds from process start to the first answered recognize request, as the CPU image starts."""
    import json

    port = free_port()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "MODEL_DIR": export, "PORT": str(port), "BNER_HOST": "127.0.0.1",
           "WEB_CONCURRENCY": "1", **RUNTIME}
    body = json.dumps({"text": "Angela Merkel flew to Paris on Monday to meet officials of the European Commission ."}).encode()

    def recognize() -> float:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/api/ner/recognize", body, {"Content-Type": "application/json"})
        sent = time.perf_counter()
        with urllib.request.urlopen(request, timeout=30) as reply:
            reply.read()
        return time.perf_counter() - sent

    def answered(server, started):
        first = recognize()
        return {"seconds_to_first_answer": time.perf_counter() - started, "first_request_ms": 1000 * first,
                "second_request_ms": 1000 * recognize(), "third_request_ms": 1000 * recognize()}

    return until_answered(["bner-serve"], env, answered)


def import_seconds(module: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", f"import {module}"], check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--export", required=True, help="an export version folder or a folder of versions")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--label", default="current", help="a name for this code state in the JSON")
    parser.add_argument("--runtimes", nargs="+", default=["onnx", "tensorflow"], choices=["onnx", "tensorflow", "auto"])
    parser.add_argument("--output_json", default=os.path.join(HERE, "results", "serve_startup.json"))
    args = parser.parse_args()
    imports = {m: statistics.median(import_seconds(m) for _ in range(args.repeats)) for m in ("bner", "bner.serving.app")}
    result = {
        "benchmark": "server start to ready, RSS, import time",
        "label": args.label,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "export": args.export,
        "cpus": os.cpu_count(),
        "import_seconds": {k: round(v, 3) for k, v in imports.items()},
        "runtimes": {},
    }
    for runtime in args.runtimes:
        RUNTIME["BNER_RUNTIME"] = runtime
        start_to_ready(args.export)  # warm the file cache
        runs = [start_to_ready(args.export) for _ in range(args.repeats)]
        colds = [cold_start(args.export) for _ in range(args.repeats)]
        result["runtimes"][runtime] = {
            "start_to_ready_seconds": round(statistics.median(r[0] for r in runs), 2),
            "rss_mb_at_ready": round(statistics.median(r[1] for r in runs), 1),
            "cold_start": {k: round(statistics.median(c[k] for c in colds), 3) for k in colds[0]},
            "runs": [{"seconds": round(s, 2), "rss_mb": round(m, 1)} for s, m in runs],
            "cold_start_runs": [{k: round(v, 3) for k, v in c.items()} for c in colds],
        }
    write_result(result, args.output_json)


if __name__ == "__main__":
    main()
