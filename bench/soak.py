#!/usr/bin/env python3
"""Soak: a server under a mix of normal, large and invalid requests for minutes on end.

Starts ``python -m bner.serving --model_dir <export>`` on a free loopback port and runs
``--clients`` closed-loop clients for ``--seconds``. Each request is drawn from a mix:
one normal sentence (most), a large text (about 20,000 characters), or an invalid one
(bad JSON, a wrong field, a lone surrogate, a body over the limit, punctuation over the
word-piece budget). It reports, per kind, the status codes seen; for normal requests the
latency percentiles; and the server's resident memory after warm-up and at the end.
The pass conditions: no 5xx at all, every valid request answered 200 (or 503 under a full
queue, counted apart), memory growth under 10 %.

    python bench/soak.py --export runs/sample/export/bner [--seconds 600 --clients 32]

Then the starvation check: four clients send single sentences for ``--starvation_seconds``,
alone and then beside one client that sends only maximum-size texts (about 32,000 word
pieces each); it reports the single sentences' p50 and p99 both ways.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime
import json
import os
import random
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from common import free_port, percentile, rss_mb, write_result  # noqa: E402


def milliseconds(seconds: list[float], q: float) -> float | None:
    value = percentile(seconds, q)
    return None if value is None else round(1000 * value, 1)

SENTENCES = [
    "Angela Merkel flew to Paris on Monday to meet officials of the European Commission .",
    "Shares of Toyota rose in Tokyo after the company beat forecasts .",
    "The United Nations said on Tuesday that aid had reached Kabul .",
    "Manchester United beat Arsenal 2-1 at Old Trafford .",
    "Café owners in Zürich met Ms. Müller — 3 km from the Rhine 🙂.",
]
INVALID = [
    (b"{not json", "bad JSON"),
    (b'{"txt": "Paris"}', "wrong field"),
    (b'{"text": "Anna \\ud800 visited Oslo ."}', "lone surrogate (valid: answered 200)"),
    (b'{"text": "' + b"." * 60_000 + b'"}', "punctuation over the word-piece budget"),
    (b'{"text": "' + b"a" * 2_100_000 + b'"}', "body over the limit"),
]


def request(rng: random.Random, mix: str = "soak") -> tuple[str, bytes]:
    if mix == "small":
        return "normal", json.dumps({"text": rng.choice(SENTENCES)}).encode()
    if mix == "largest":
        # As large as the default limits allow: about 32,000 word pieces in one text.
        text = " ".join(rng.choice(SENTENCES) for _ in range(1_900))[:99_000]
        return "largest", json.dumps({"text": text}).encode()
    draw = rng.random()
    if draw < 0.85:
        return "normal", json.dumps({"text": rng.choice(SENTENCES)}).encode()
    if draw < 0.90:
        text = " ".join(rng.choice(SENTENCES) for _ in range(250))  # about 20,000 characters
        return "large", json.dumps({"text": text}).encode()
    body, name = rng.choice(INVALID)
    return f"invalid: {name}", body


async def client(port: int, seed: int, stop: float, statuses, latencies, mix: str = "soak") -> None:
    import httpx

    rng = random.Random(seed)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120) as http:
        while time.perf_counter() < stop:
            kind, body = request(rng, mix)
            started = time.perf_counter()
            try:
                reply = await http.post("/api/ner/recognize", content=body, headers={"content-type": "application/json"})
                status = str(reply.status_code)
            except httpx.HTTPError as e:
                status = f"transport error ({type(e).__name__})"
            statuses[kind][status] += 1
            if kind == "normal" and status == "200":
                latencies.append(time.perf_counter() - started)


async def liveness(port: int, stop: float, latencies: list[float]) -> None:
    """/api/ner/health every half second: the liveness probe must stay fast under load."""
    import httpx

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        while time.perf_counter() < stop:
            started = time.perf_counter()
            reply = await http.get("/api/ner/health")
            latencies.append(time.perf_counter() - started if reply.status_code == 200 else float("inf"))
            await asyncio.sleep(0.5)


async def soak(port: int, clients: int, seconds: float, seed: int, large_clients: int | None = None, health=None):
    """``clients`` on the soak mix; with ``large_clients`` given (the starvation check), those
    send only the largest texts and the others only single sentences."""
    statuses = collections.defaultdict(collections.Counter)
    latencies: list[float] = []
    stop = time.perf_counter() + seconds
    mixes = ["largest"] * (large_clients or 0) + ["soak" if large_clients is None else "small"] * clients
    probes = [liveness(port, stop, health)] if health is not None else []
    await asyncio.gather(*(client(port, seed + i, stop, statuses, latencies, mix) for i, mix in enumerate(mixes)), *probes)
    return statuses, latencies


def starvation(port: int, seconds: float, seed: int) -> dict:
    """Single sentences from 4 clients, alone and while one client sends maximum-size texts."""
    out = {}
    for large in (0, 1):
        statuses, latencies = asyncio.run(soak(port, 4, seconds, seed, large_clients=large))
        out["with one maximum-size client" if large else "alone"] = {
            "single_sentence_latency_ms": {q: milliseconds(latencies, p) for q, p in (("p50", 50), ("p99", 99))},
            "single_sentences_answered": len(latencies),
            "statuses": {k: dict(v) for k, v in statuses.items()},
        }
    return out


def wait_ready(port: int, server: subprocess.Popen) -> None:
    import httpx

    deadline = time.time() + 180
    while time.time() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with {server.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/ner/ready", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.3)
    raise SystemExit("the server did not become ready")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--export", required=True)
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--warmup_seconds", type=float, default=30)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--starvation_seconds", type=float, default=60, help="then the starvation check, this long each way (0: skip)")
    parser.add_argument("--output_json", default=os.path.join(HERE, "results", "soak.json"))
    args = parser.parse_args()
    port = free_port()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    server = subprocess.Popen([sys.executable, "-m", "bner.serving", "--model_dir", args.export, "--host", "127.0.0.1",
                               "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_ready(port, server)
        asyncio.run(soak(port, args.clients, args.warmup_seconds, args.seed + 10_000))
        rss_start = rss_mb(server.pid)
        started = time.perf_counter()
        health: list[float] = []
        statuses, latencies = asyncio.run(soak(port, args.clients, args.seconds, args.seed, health=health))
        elapsed = time.perf_counter() - started
        rss_end = rss_mb(server.pid)
        starved = starvation(port, args.starvation_seconds, args.seed) if args.starvation_seconds else None
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=60)
    server_errors = sum(n for counts in statuses.values() for status, n in counts.items() if status.startswith("5") and status != "503")
    valid = {k: v for k, v in statuses.items() if k in ("normal", "large") or "surrogate" in k}
    valid_failures = sum(n for counts in valid.values() for status, n in counts.items() if status not in ("200", "503"))
    result = {
        "benchmark": "soak: mixed normal, large and invalid requests",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "export": args.export,
        "cpus": os.cpu_count(),
        "clients": args.clients,
        "seconds": round(elapsed, 1),
        "requests": sum(sum(c.values()) for c in statuses.values()),
        "statuses": {k: dict(v) for k, v in sorted(statuses.items())},
        "normal_latency_ms": {q: milliseconds(latencies, p) for q, p in (("p50", 50), ("p90", 90), ("p99", 99))},
        "normal_requests_per_second": round(len(latencies) / elapsed, 1),
        "health_latency_ms": {q: milliseconds(health, p) for q, p in (("p50", 50), ("p99", 99), ("max", 100))},
        "server_5xx_other_than_503": server_errors,
        "valid_requests_not_answered_200_or_503": valid_failures,
        "rss_mb": {"after_warmup": round(rss_start, 1), "end": round(rss_end, 1), "growth_percent": round(100 * (rss_end / rss_start - 1), 1)},
        "server_stderr_lines": len([line for line in stderr.splitlines() if line.strip()]),
        "starvation_check": starved,
    }
    result["passed"] = server_errors == 0 and valid_failures == 0 and result["rss_mb"]["growth_percent"] < 10
    write_result(result, args.output_json)


if __name__ == "__main__":
    main()
