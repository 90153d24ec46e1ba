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

Beside the clients, ``--slow_readers`` connections ask, pipelined, for the 1.5 MB Swagger
bundle and never read the answers; each is reopened when the server drops it (its write
timeout), and the drops are counted. /api/ner/health is probed every half second throughout.

Clients retry a 503 after its Retry-After, as a well-behaved client does.

Then the starvation check: four clients send single sentences and one a paragraph of 40
sentences (several model calls) for ``--starvation_seconds``, alone, beside one client that sends only maximum-size texts (about 32,000 word pieces each),
and beside ``--heavy_clients`` clients that each send 20,000 dots (under the word-piece budget,
one sentence per dot); it reports the single sentences' p50 and p99 each way. Last, the
shutdown check: SIGTERM while four such dot requests are in flight, and the seconds until the
process has exited (Kubernetes allows 25 after our manifests' 5 s preStop).
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
    if mix == "forty":  # a paragraph of 40 sentences: several model calls
        return "forty sentences", json.dumps({"text": " ".join(rng.choice(SENTENCES) for _ in range(40))}).encode()
    if mix == "dots":
        return "dots", json.dumps({"text": "." * 20_000}).encode()
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


async def client(port: int, seed: int, stop: float, statuses, latencies, mix: str = "soak", by_kind=None) -> None:
    """Closed-loop requests of ``mix``; a 503 is retried after its Retry-After, as a well-behaved client does."""
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
            if by_kind is not None and status == "200":
                by_kind[kind].append(time.perf_counter() - started)
            if status == "503":
                await asyncio.sleep(min(float(reply.headers.get("retry-after", 1)), 5.0))


async def liveness(port: int, stop: float, latencies: list[float]) -> None:
    """/api/ner/health every half second: the liveness probe must stay fast under load."""
    import httpx

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        while time.perf_counter() < stop:
            started = time.perf_counter()
            reply = await http.get("/api/ner/health")
            latencies.append(time.perf_counter() - started if reply.status_code == 200 else float("inf"))
            await asyncio.sleep(0.5)


async def slow_reader(port: int, stop: float, drops: list[int]) -> None:
    """Pipelined requests for the Swagger bundle, never read; reconnects when the server drops the connection."""
    request = b"GET /docs/assets/swagger-ui-bundle.js HTTP/1.1\r\nHost: x\r\n\r\n" * 8
    while time.perf_counter() < stop:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.5)
            continue
        try:
            # Never read; keep asking (a write is also how a reset connection is noticed) until
            # the server gives up on us or the soak ends.
            while time.perf_counter() < stop and not writer.transport.is_closing():
                writer.write(request)
                await asyncio.sleep(1.0)
            if writer.transport.is_closing():
                drops[0] += 1
        except OSError:
            drops[0] += 1
        finally:
            writer.close()


async def soak(port: int, clients: int, seconds: float, seed: int, heavy: tuple[str, int] | None = None, health=None,
               slow_readers: int = 0, drops: list[int] | None = None, small_only: bool = False):
    """``clients`` on the soak mix; in the starvation check (``small_only``), single sentences only,
    beside ``heavy`` (mix, count) clients that send only that mix."""
    statuses = collections.defaultdict(collections.Counter)
    latencies: list[float] = []
    by_kind = collections.defaultdict(list)
    stop = time.perf_counter() + seconds
    mixes = [heavy[0]] * heavy[1] if heavy else []
    mixes += ["small" if small_only else "soak"] * clients + (["forty"] if small_only else [])
    probes = [liveness(port, stop, health)] if health is not None else []
    probes += [slow_reader(port, stop, drops) for _ in range(slow_readers)]
    await asyncio.gather(*(client(port, seed + i, stop, statuses, latencies, mix, by_kind) for i, mix in enumerate(mixes)), *probes)
    if small_only:
        return statuses, latencies, by_kind
    return statuses, latencies


def starvation(port: int, seconds: float, seed: int, heavy_clients: int) -> dict:
    """Single sentences from 4 clients, alone, beside one maximum-size client, and beside ``heavy_clients`` dot clients."""
    out = {}
    for name, heavy in (("alone", None), ("with one maximum-size client", ("largest", 1)),
                        (f"with {heavy_clients} clients of 20,000 dots", ("dots", heavy_clients))):
        statuses, latencies, by_kind = asyncio.run(soak(port, 4, seconds, seed, heavy=heavy, small_only=True))
        out[name] = {
            "forty_sentence_latency_ms": {q: milliseconds(by_kind["forty sentences"], p) for q, p in (("p50", 50), ("p99", 99))},
            "heavy_requests_answered": sum(len(v) for k, v in by_kind.items() if k in ("dots", "largest")),
            "single_sentence_latency_ms": {q: milliseconds(latencies, p) for q, p in (("p50", 50), ("p99", 99))},
            "single_sentences_answered": len(latencies),
            "statuses": {k: dict(v) for k, v in statuses.items()},
        }
    return out


def shutdown_seconds(port: int, server: subprocess.Popen, in_flight: int = 4) -> float:
    """Seconds from SIGTERM to exit while ``in_flight`` requests of 20,000 dots are being tagged."""
    import threading

    import httpx

    def send():
        try:
            httpx.post(f"http://127.0.0.1:{port}/api/ner/recognize", json={"text": "." * 20_000}, timeout=120)
        except httpx.HTTPError:
            pass

    senders = [threading.Thread(target=send, daemon=True) for _ in range(in_flight)]
    for thread in senders:
        thread.start()
    time.sleep(1.0)
    started = time.perf_counter()
    server.terminate()
    server.wait(timeout=120)
    return round(time.perf_counter() - started, 2)


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
    parser.add_argument("--heavy_clients", type=int, default=8, help="clients of 20,000 dots in the starvation check")
    parser.add_argument("--shutdown_check", type=int, default=1, help="1: end with the shutdown check; 0: skip it")
    parser.add_argument("--slow_readers", type=int, default=20, help="connections that never read their answers, during the soak")
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
        drops = [0]
        statuses, latencies = asyncio.run(soak(port, args.clients, args.seconds, args.seed, health=health,
                                               slow_readers=args.slow_readers, drops=drops))
        elapsed = time.perf_counter() - started
        rss_end = rss_mb(server.pid)
        starved = starvation(port, args.starvation_seconds, args.seed, args.heavy_clients) if args.starvation_seconds else None
        shutdown = shutdown_seconds(port, server) if args.shutdown_check else None
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
        "slow_readers": args.slow_readers,
        "slow_reader_connections_dropped_by_the_server": drops[0],
        "shutdown_seconds_with_4_dot_requests_in_flight": shutdown,
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
