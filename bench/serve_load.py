#!/usr/bin/env python3
"""HTTP serving load test: bner's service against a Hugging Face pipeline baseline.

Single-sentence latency (p50/p90/p99/mean) and throughput at several numbers of
concurrent clients, over HTTP on 127.0.0.1, for two servers run back to back:

1. bner: ``python -m bner.serving --model_dir <export>`` (in-process SavedModel
   backend, micro-batching; BNER_MAX_BATCH_SIZE / BNER_MAX_WAIT_MS from the
   environment or ``--bner_env KEY=VALUE``);
2. the baseline: bench/hf_serving_app.py, a thin FastAPI app around
   ``transformers.pipeline("token-classification", aggregation_strategy="simple")``,
   run with ``--hf_python`` (its own virtual environment).

Each server is started as a subprocess, checked with one request (the response's
entity list must have the API's shape), loaded at each client count in turn and
stopped before the next server starts. Load: N clients in one asyncio process, each
sending one ``{"text": ...}`` request at a time, back to back (closed loop), for
``--warmup`` + ``--duration`` seconds; only requests that complete inside the
``--duration`` window count. Sentences come round-robin from a fixed list (WNUT-17
test sentences, words joined with spaces, when the file is there; otherwise a
built-in list of news-like sentences). Request bodies are encoded once up front and
responses are not parsed during the load (only the status code is checked), to keep
the load generator's share of the CPU small; its CPU use and the server's are
recorded per level all the same, since they share the machine.

Run it with bner's python:

    python bench/serve_load.py --export /path/to/export/bner/1 \\
        --hf_python /work/hfvenv/bin/python --hf_model_dir /work/minilm/model \\
        --clients 1 8 32 --duration 20 --warmup 3 --output_json bench/results/serve_load.json

When ``--hf_labels_from`` is not given, the baseline's classification head takes
its labels from the export's metadata.json (a randomly initialised head on a plain
encoder folder: see bench/hf_serving_app.py).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import importlib.metadata
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE_FOLDER = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE_FOLDER)
from common import free_port, percentile  # noqa: E402

from bner.environment import machine_facts  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CONLL = REPO.parent / "shared" / "data" / "wnut17" / "test.conll"
RECOGNIZE = "/api/ner/recognize"
CHECK_SENTENCE = "Angela Merkel met executives from Siemens in Berlin on Tuesday ."

FALLBACK_SENTENCES = [
    "The European Central Bank left interest rates unchanged on Thursday .",
    "Apple unveiled a new iPhone at an event in Cupertino , California .",
    "Prime Minister Keir Starmer visited Washington to meet President Joe Biden .",
    "Shares of Toyota rose 3 percent in Tokyo after the company raised its forecast .",
    "The United Nations Security Council will meet in New York next week .",
    "Lionel Messi scored twice as Inter Miami beat Orlando City 3-1 .",
    "Microsoft agreed to buy Activision Blizzard for $ 69 billion .",
    "Floods in southern Germany forced thousands of people from their homes .",
    "The World Health Organization warned of a rise in measles cases in Europe .",
    "Elon Musk said Tesla would build a new factory near Berlin .",
    "Police in Paris arrested two men after a robbery at the Louvre .",
    "Amazon opened its first cashier-free grocery store in London .",
    "The Federal Reserve chair Jerome Powell spoke at a conference in Jackson Hole .",
    "Wildfires spread across Greece as temperatures passed 40 degrees .",
    "Google was fined by the European Commission over its advertising business .",
    "Serena Williams announced her retirement after the US Open .",
    "Oil prices fell after OPEC agreed to raise production in July .",
    "The Indian Space Research Organisation landed a probe near the Moon 's south pole .",
    "Volkswagen recalled 100,000 cars in China because of a faulty airbag .",
    "Voters in Brazil elected Luiz Inacio Lula da Silva as president .",
    "A strong earthquake struck off the coast of Japan early on Monday .",
    "Netflix said it added 8 million subscribers in the last quarter .",
    "The Louvre in Paris reopened after a two-day strike by museum staff .",
    "Boeing delivered its first 737 MAX to Air India in Seattle .",
    "Pope Francis met refugees on the Greek island of Lesbos .",
    "The Bank of England raised rates for the tenth time in a row .",
    "Researchers at Stanford University published a study on sleep and memory .",
    "Manchester United sacked its manager after a defeat by Liverpool .",
    "Samsung Electronics reported a drop in profit as chip prices slumped .",
    "Protesters gathered outside the parliament in Budapest on Sunday .",
]


# ---------------------------------------------------------------- inputs


def read_conll_sentences(path: Path, count: int, min_words: int = 4, max_words: int = 50) -> list[str]:
    """The first ``count`` sentences of a CoNLL file with min..max words, words joined with spaces."""
    sentences, words = [], []
    with open(path, encoding="utf-8") as handle:
        for raw in itertools.chain(handle, [""]):
            line = raw.strip()
            if not line:
                if min_words <= len(words) <= max_words:
                    sentences.append(" ".join(words))
                    if len(sentences) >= count:
                        break
                words = []
                continue
            token = line.split("\t")[0] if "\t" in line else line.split()[0]
            if token != "-DOCSTART-":
                words.append(token)
    return sentences


def load_sentences(conll: str | None, count: int) -> tuple[list[str], str]:
    if conll and Path(conll).is_file():
        sentences = read_conll_sentences(Path(conll), count)
        if sentences:
            return sentences, os.path.abspath(conll)
    return list(FALLBACK_SENTENCES), "built-in news-like sentences"


def bner_serving_defaults() -> dict[str, float | int]:
    """ServingSettings' defaults for the batching knobs (importing the settings imports no TensorFlow)."""
    from bner.serving.settings import ServingSettings

    defaults = ServingSettings()
    return {"max_batch_size": defaults.max_batch_size, "max_wait_ms": defaults.max_wait_ms}


def parse_env_pairs(pairs: list[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"error: --bner_env expects KEY=VALUE, got {pair!r}")
        env[key] = value
    return env


# ---------------------------------------------------------------- servers


_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http(method: str, url: str, body: dict | None = None, timeout: float = 10.0) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with _NO_PROXY.open(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class Server:
    """A server subprocess on 127.0.0.1, its output in a log file."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], port: int, ready_path: str, log_dir: str):
        self.name, self.cmd, self.env, self.port, self.ready_path = name, cmd, env, port, ready_path
        self.log_path = os.path.join(log_dir, f"{name}.log")
        self.proc: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return Path(self.log_path).read_text(encoding="utf-8", errors="replace")[-chars:]
        except OSError:
            return ""

    def start(self, timeout: float) -> float:
        started = time.perf_counter()
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self.cmd, env=self.env, cwd=REPO, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT)
        deadline = started + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode} while starting:\n{self.log_tail()}")
            try:
                status, _ = http("GET", self.base + self.ready_path, timeout=2)
                if status == 200:
                    return time.perf_counter() - started
            except OSError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"{self.name} not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def cpu_seconds(self) -> float | None:
        """user + system CPU time of the server process and its live child processes (uvicorn workers)."""
        try:
            return sum(self._process_cpu(pid) for pid in [self.proc.pid, *self._children(self.proc.pid)])
        except (OSError, IndexError, ValueError, AttributeError):
            return None

    @staticmethod
    def _process_cpu(pid: int) -> float:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    @classmethod
    def _children(cls, pid: int) -> list[int]:
        found = []
        for task in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as handle:
                    direct = [int(c) for c in handle.read().split()]
            except OSError:
                continue
            for child in direct:
                found += [child, *cls._children(child)]
        return found

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGINT, 20), (signal.SIGTERM, 10)):
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                pass
        self.proc.kill()
        self.proc.wait(timeout=10)


def check_response(server: Server) -> dict:
    """One request; the response must be ``{"entities": [{text, type, start, end, score}, ...]}``."""
    status, raw = http("POST", server.base + RECOGNIZE, {"text": CHECK_SENTENCE}, timeout=60)
    if status != 200:
        raise RuntimeError(f"{server.name}: check request answered {status}: {raw[:500]!r}")
    payload = json.loads(raw)
    entities = payload.get("entities") if isinstance(payload, dict) else None
    if not isinstance(entities, list):
        raise RuntimeError(f"{server.name}: no 'entities' list in {payload!r}")
    for e in entities:
        ok = (isinstance(e, dict) and isinstance(e.get("text"), str) and isinstance(e.get("type"), str)
              and isinstance(e.get("start"), int) and isinstance(e.get("end"), int) and isinstance(e.get("score"), (int, float))
              and CHECK_SENTENCE[e["start"]:e["end"]] == e["text"])
        if not ok:
            raise RuntimeError(f"{server.name}: malformed entity {e!r}")
    return {"text": CHECK_SENTENCE, "entities": entities}


def scrape_batches(server: Server) -> tuple[float, float] | None:
    """bner's Prometheus counters: (texts, model calls) so far."""
    try:
        status, raw = http("GET", server.base + "/metrics", timeout=5)
    except OSError:
        return None
    if status != 200:
        return None
    text = raw.decode(errors="replace")
    total = re.search(r"^bner_batch_texts_sum (\S+)$", text, re.M)
    calls = re.search(r"^bner_batch_texts_count (\S+)$", text, re.M)
    return (float(total.group(1)), float(calls.group(1))) if total and calls else None


# ---------------------------------------------------------------- load


class RawConnection:
    """A minimal HTTP/1.1 keep-alive client for one connection (``--client raw``)."""

    def __init__(self, port: int):
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, payload: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            self.writer.write(payload)
            head = await self.reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            match = re.search(rb"\r\ncontent-length:\s*(\d+)", head, re.I)
            if not match:
                raise RuntimeError("response without Content-Length")
            await self.reader.readexactly(int(match.group(1)))
            if re.search(rb"\r\nconnection:\s*close", head, re.I):
                self.close()
            return status
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def run_level(port: int, clients: int, bodies: list[bytes], warmup: float, duration: float, timeout: float,
                    client_kind: str, max_requests: int | None = None) -> dict:
    counter = itertools.count()
    latencies: list[float] = []
    errors, error_samples, late, last_end = 0, [], 0, 0.0
    start = time.perf_counter()
    window_start, window_end = start + warmup, start + warmup + duration

    async def loop(send):
        nonlocal errors, late, last_end
        while time.perf_counter() < window_end:
            i = next(counter)
            if max_requests is not None and i >= max_requests:
                return
            body = bodies[i % len(bodies)]
            t0 = time.perf_counter()
            failure = None
            try:
                status = await asyncio.wait_for(send(body), timeout)
                if status != 200:
                    failure = f"HTTP {status}"
            except Exception as e:  # noqa: BLE001 - any failure is an error to count
                failure = f"{type(e).__name__}: {e}"[:300]
            t1 = last_end = time.perf_counter()
            if t1 > window_end:
                late += 1
            elif t1 >= window_start:
                if failure is None:
                    latencies.append(t1 - t0)
                else:
                    errors += 1
                    if len(error_samples) < 5:
                        error_samples.append(failure)
            if failure is not None:
                await asyncio.sleep(0.01)  # no hot loop against a failing server

    if client_kind == "httpx":
        import httpx  # imported once in main(), before any level is timed

        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=timeout,
                                     trust_env=False, headers={"Content-Type": "application/json"}) as client:
            async def send(body):
                return (await client.post(RECOGNIZE, content=body)).status_code

            await asyncio.gather(*(loop(send) for _ in range(clients)))
    else:
        head = (f"POST {RECOGNIZE} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
                "Content-Length: {}\r\n\r\n")
        raw_bodies = {body: head.format(len(body)).encode() + body for body in bodies}
        connections = [RawConnection(port) for _ in range(clients)]

        def sender(conn):
            async def send(body):
                return await conn.request(raw_bodies[body])
            return send

        try:
            await asyncio.gather(*(loop(sender(c)) for c in connections))
        finally:
            for c in connections:
                c.close()

    capped = max_requests is not None and next(counter) > max_requests
    # A level cut short by --max_requests is measured up to its last response.
    window = (min(window_end, last_end) if capped else window_end) - window_start
    ms = sorted(v * 1000.0 for v in latencies)

    def r2(value):
        return None if value is None else round(value, 2)

    level = {
        "clients": clients,
        "requests": len(ms),
        "errors": errors,
        "error_samples": error_samples,
        "completed_after_window": late,
        "window_s": round(window, 3),
        "throughput_rps": round(len(ms) / window, 2) if window > 0 else None,
        "latency_ms": {
            "p50": r2(percentile(ms, 50)),
            "p90": r2(percentile(ms, 90)),
            "p99": r2(percentile(ms, 99)),
            "mean": r2(sum(ms) / len(ms)) if ms else None,
            "min": r2(ms[0]) if ms else None,
            "max": r2(ms[-1]) if ms else None,
        },
    }
    if capped:
        level["capped_at_requests"] = max_requests
    return level


def load_server(server: Server, args, bodies: list[bytes]) -> list[dict]:
    results = []
    for i, n in enumerate(args.clients):
        if i and args.pause > 0:
            time.sleep(args.pause)
        batches_before = scrape_batches(server) if server.name.startswith("bner") else None  # bner's own metrics
        cpu_before, gen_before, wall_before = server.cpu_seconds(), time.process_time(), time.perf_counter()
        level = asyncio.run(run_level(server.port, n, bodies, args.warmup, args.duration, args.request_timeout, args.client,
                                      args.max_requests))
        wall = time.perf_counter() - wall_before
        cpu_after, gen_after = server.cpu_seconds(), time.process_time()
        # CPU use over the whole level (warm-up included), in cores: 1.0 = one core busy.
        level["server_cpu_cores"] = round((cpu_after - cpu_before) / wall, 3) if None not in (cpu_before, cpu_after) else None
        level["loadgen_cpu_cores"] = round((gen_after - gen_before) / wall, 3)
        if batches_before is not None:
            batches_after = scrape_batches(server)
            if batches_after is not None and batches_after[1] > batches_before[1]:
                level["mean_texts_per_model_call"] = round(
                    (batches_after[0] - batches_before[0]) / (batches_after[1] - batches_before[1]), 2)
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} died during the load:\n{server.log_tail()}")
        print(f"  {server.name} clients={n}: {level['throughput_rps']} req/s, p50 {level['latency_ms']['p50']} ms, "
              f"p99 {level['latency_ms']['p99']} ms, errors {level['errors']}", flush=True)
        results.append(level)
    return results


def library_ceiling(export: str, sentences: list[str], batch_sizes: list[int], seconds: float, runtime: str = "auto") -> list[dict]:
    """What the server's work costs without the server: ``bner.load(export).predict`` in this process.

    Per batch size: sentences per second of the whole library call (tokenizer, windows, model,
    decoding, consistency) and of the model alone (the backend's own time in its model calls),
    on the same sentences the clients send. Run with no server up, so it has the machine.
    """
    import bner

    tagger = bner.load(export, runtime=runtime)
    rows = []
    for size in batch_sizes:
        batches = [sentences[i:i + size] for i in range(0, len(sentences), size)]
        tagger.predict(batches[0])  # warm-up
        model_before, done, start = tagger.backend.model_seconds, 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            for batch in batches:
                tagger.predict(batch)
                done += len(batch)
        elapsed, model = time.perf_counter() - start, tagger.backend.model_seconds - model_before
        rows.append({"batch_size": size, "library_sentences_per_s": round(done / elapsed, 1),
                     "model_only_sentences_per_s": round(done / model, 1) if model > 0 else None})
        print(f"  library ({tagger.backend.name}), batch {size}: {rows[-1]['library_sentences_per_s']} sentences/s "
              f"(model alone {rows[-1]['model_only_sentences_per_s']})", flush=True)
    return rows


def server_share(levels: list[dict], ceiling: list[dict]) -> list[dict]:
    """Each level's throughput against the library at the batch size nearest its mean texts per model call."""
    rows = []
    for level in levels:
        size = level.get("mean_texts_per_model_call")
        if not size or not ceiling or not level.get("throughput_rps"):
            continue
        nearest = min(ceiling, key=lambda row: abs(row["batch_size"] - size))
        rows.append({"clients": level["clients"], "mean_texts_per_model_call": size, "library_batch_size": nearest["batch_size"],
                     "share_of_library": round(level["throughput_rps"] / nearest["library_sentences_per_s"], 3),
                     "share_of_model_only": round(level["throughput_rps"] / nearest["model_only_sentences_per_s"], 3)
                     if nearest["model_only_sentences_per_s"] else None})
    return rows


def run_system(server: Server, args, bodies: list[bytes]) -> dict:
    print(f"starting {server.name}: {' '.join(server.cmd)}", flush=True)
    try:
        startup_s = server.start(args.startup_timeout)
        _, ready_raw = http("GET", server.base + server.ready_path)
        check = check_response(server)
        levels = load_server(server, args, bodies)
    finally:
        server.stop()
    try:
        ready = json.loads(ready_raw)
    except ValueError:
        ready = ready_raw.decode(errors="replace")
    return {"command": server.cmd, "startup_s": round(startup_s, 2), "ready": ready, "check": check, "levels": levels}


def median_of_rounds(rounds: list[dict]) -> dict:
    """One system's rounds as one result: each level's throughput and latencies are the median over
    the rounds (the rounds' throughputs are kept beside it), the rest from the first round."""
    import statistics

    merged = json.loads(json.dumps(rounds[0]))
    for i, level in enumerate(merged.get("levels", [])):
        same = [r["levels"][i] for r in rounds if len(r.get("levels", [])) > i]
        values = [lv["throughput_rps"] for lv in same if lv["throughput_rps"] is not None]
        level["throughput_rps"] = round(statistics.median(values), 2) if values else None
        level["rounds_throughput_rps"] = values
        for q in ("p50", "p90", "p99", "mean"):
            qs = [lv["latency_ms"][q] for lv in same if lv["latency_ms"][q] is not None]
            level["latency_ms"][q] = round(statistics.median(qs), 2) if qs else None
            level["latency_ms"][f"rounds_{q}"] = qs
    merged["rounds"] = len(rounds)
    return merged


# ---------------------------------------------------------------- report


def git_revision() -> str | None:
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True, check=True).stdout
        return rev + ("+dirty" if dirty.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def same_levels(first: dict | None, second: dict | None) -> list[tuple[dict, dict]]:
    """The two systems' levels at the client counts both measured, in the first's order."""
    if not first or not second or "levels" not in first or "levels" not in second:
        return []
    by_clients = {level["clients"]: level for level in second["levels"]}
    return [(level, by_clients[level["clients"]]) for level in first["levels"] if level["clients"] in by_clients]


def compare(bner: dict | None, hf: dict | None) -> dict:
    pairs = same_levels(bner, hf)
    if not pairs:
        return {}
    rows = []
    for b, h in pairs:
        ratio = b["throughput_rps"] / h["throughput_rps"] if b["throughput_rps"] is not None and h["throughput_rps"] else None
        p99_b, p99_h = b["latency_ms"]["p99"], h["latency_ms"]["p99"]
        measured = p99_b is not None and p99_h is not None
        rows.append({
            "clients": b["clients"],
            "throughput_ratio_bner_over_hf": round(ratio, 3) if ratio is not None else None,
            "p99_ms_bner": p99_b,
            "p99_ms_hf": p99_h,
            "p99_ratio_bner_over_hf": round(p99_b / p99_h, 3) if measured and p99_h else None,
            "p99_no_worse": p99_b <= p99_h if measured else None,
            "p50_ms_bner": b["latency_ms"]["p50"],
            "p50_ms_hf": h["latency_ms"]["p50"],
        })
    result = {"per_clients": rows}
    if rows:
        top = max(rows, key=lambda r: r["clients"])
        single = min(rows, key=lambda r: r["clients"])
        ratio, p99_ratio = top["throughput_ratio_bner_over_hf"], top["p99_ratio_bner_over_hf"]
        single_ok = single["p50_ms_bner"] is not None and single["p50_ms_hf"] is not None and single["p50_ms_bner"] <= single["p50_ms_hf"]
        result["target"] = {
            "clients": top["clients"],
            "goal": "at the most clients: bner throughput >= 3x the baseline's with p99 <= half of its p99; "
                    "at the fewest: p50 latency no worse",
            "throughput_ratio": ratio,
            "p99_ratio": p99_ratio,
            "single_client_p50_no_worse": single_ok,
            "met": bool(ratio is not None and ratio >= 3.0 and p99_ratio is not None and p99_ratio <= 0.5 and single_ok),
        }
        if any("capped_at_requests" in level for level in bner["levels"] + hf["levels"]):
            result["target"]["note"] = "levels cut short by --max_requests (a smoke test): not a result"
    return result


def runtime_ratios(faster: dict | None, baseline: dict | None) -> dict:
    """One of bner's runtimes against another, served the same way: throughput and latency ratios per
    client count, and the runtime targets (at the most clients >= 1.5x the throughput, at the fewest
    p50 <= 0.7x)."""
    rows = []
    for a, b in same_levels(faster, baseline):
        if not a["throughput_rps"] or not b["throughput_rps"]:
            continue
        rows.append({"clients": a["clients"], "throughput_ratio": round(a["throughput_rps"] / b["throughput_rps"], 3),
                     "p50_ratio": round(a["latency_ms"]["p50"] / b["latency_ms"]["p50"], 3) if b["latency_ms"]["p50"] else None,
                     "p99_ratio": round(a["latency_ms"]["p99"] / b["latency_ms"]["p99"], 3) if b["latency_ms"]["p99"] else None})
    if not rows:
        return {}
    top, single = max(rows, key=lambda r: r["clients"]), min(rows, key=lambda r: r["clients"])
    return {"per_clients": rows, "target": {
        "goal": "at the most clients throughput >= 1.5x; at the fewest p50 <= 0.7x",
        "throughput_ratio": top["throughput_ratio"], "single_client_p50_ratio": single["p50_ratio"],
        "met": top["throughput_ratio"] >= 1.5 and single["p50_ratio"] is not None and single["p50_ratio"] <= 0.7}}


def print_table(systems: dict, comparison: dict) -> None:
    print()
    print(f"{'system':<7} {'clients':>7} {'req/s':>9} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'mean ms':>8} "
          f"{'errors':>6} {'srv cpu':>7} {'gen cpu':>7}")
    def f(value, width, digits=1):
        return f"{'-':>{width}}" if value is None else f"{value:>{width}.{digits}f}"

    for name, system in systems.items():
        if "error" in system:
            print(f"{name:<7} failed: {system['error'].splitlines()[0]}")
        for lv in system.get("levels", []):
            lat = lv["latency_ms"]
            print(f"{name:<7} {lv['clients']:>7} {f(lv['throughput_rps'], 9)} {f(lat['p50'], 8)} {f(lat['p90'], 8)} "
                  f"{f(lat['p99'], 8)} {f(lat['mean'], 8)} {lv['errors']:>6} {f(lv['server_cpu_cores'], 7, 2)} "
                  f"{f(lv['loadgen_cpu_cores'], 7, 2)}")
    for row in comparison.get("per_clients", []):
        print(f"clients={row['clients']}: bner/hf throughput x{row['throughput_ratio_bner_over_hf']}, "
              f"p99 {row['p99_ms_bner']} vs {row['p99_ms_hf']} ms ({'no worse' if row['p99_no_worse'] else 'WORSE'})")
    target = comparison.get("target")
    if target:
        print(f"target at {target['clients']} clients ({target['goal']}): {'MET' if target['met'] else 'NOT MET'}"
              + (f" [{target['note']}]" if "note" in target else ""))


# ---------------------------------------------------------------- main


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--export", required=True, help="bner export version folder (…/export/bner/<version>)")
    parser.add_argument("--hf_python", help="python of the Hugging Face venv (required unless --systems bner)")
    parser.add_argument("--hf_model_dir", help="Hugging Face model folder for the baseline (required unless --systems bner)")
    parser.add_argument("--hf_labels_from", help="metadata.json to take the baseline head's labels from "
                                                 "(default: the export's; pass 'none' for a fine-tuned folder's own labels)")
    parser.add_argument("--hf_torch_threads", type=int, help="baseline's torch.set_num_threads (default: its own, the CPU count)")
    parser.add_argument("--hf_threadpool_size", type=int, help="baseline's FastAPI threadpool tokens (default: anyio's 40)")
    parser.add_argument("--bner_python", default=sys.executable, help="python for bner's server (default: this one)")
    parser.add_argument("--bner_env", action="append", default=[], metavar="KEY=VALUE",
                        help="environment for bner's server, e.g. BNER_MAX_WAIT_MS=2 (repeatable)")
    parser.add_argument("--systems", nargs="+", choices=["bner", "bner-int8", "bner-tensorflow", "hf"], default=["bner", "hf"],
                        help="what to run, in order (bner: the export's default runtime, ONNX Runtime where it has model.onnx; "
                             "bner-int8: its model.int8.onnx, BNER_RUNTIME=onnx-int8; "
                             "bner-tensorflow: its SavedModel, BNER_RUNTIME=tensorflow)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds per client count")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds before each measurement")
    parser.add_argument("--pause", type=float, default=1.0, help="idle seconds between client counts")
    parser.add_argument("--request_timeout", type=float, default=30.0)
    parser.add_argument("--startup_timeout", type=float, default=300.0)
    # The load generator shares the machine with the server: httpx.AsyncClient took 0.3 of the 2 cores
    # at 32 clients, which capped bner at 161 req/s where the raw client measured 262.
    parser.add_argument("--client", choices=["httpx", "raw"], default="raw",
                        help="load generator's HTTP client: a minimal asyncio HTTP/1.1 client (the default: it leaves "
                             "the server the most CPU), or httpx.AsyncClient")
    parser.add_argument("--ceiling_batches", type=int, nargs="*", default=[1, 4, 8, 16],
                        help="batch sizes at which to time the library in-process and the model alone, after the "
                             "servers (none: skip)")
    parser.add_argument("--ceiling_seconds", type=float, default=8.0, help="seconds per ceiling batch size")
    parser.add_argument("--rounds", type=int, default=1, help="run the systems this many times, interleaved (A B C A B C …), "
                        "and report each level's median: on a shared machine, one run's figures move by ±20 %%")
    parser.add_argument("--max_requests", type=int, help="stop each client count after this many requests, warm-up "
                                                         "included (for smoke tests on a busy machine; not for results)")
    parser.add_argument("--conll", default=str(DEFAULT_CONLL), help="CoNLL file to take sentences from")
    parser.add_argument("--num_sentences", type=int, default=200)
    parser.add_argument("--output_json", help="write the results here")
    args = parser.parse_args(argv)
    if "hf" in args.systems and not (args.hf_python and args.hf_model_dir):
        parser.error("the baseline needs --hf_python and --hf_model_dir (or run --systems bner)")
    if min(args.clients) < 1 or args.duration <= 0 or args.warmup < 0:
        parser.error("clients must be >= 1, duration > 0, warmup >= 0")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    export = os.path.abspath(args.export)
    metadata_path = os.path.join(export, "metadata.json")
    with open(metadata_path, encoding="utf-8") as handle:
        metadata = json.load(handle)

    if args.client == "httpx":
        import httpx  # noqa: F401 - import now, not inside the first timed level

    sentences, source = load_sentences(args.conll, args.num_sentences)
    bodies = [json.dumps({"text": s}).encode() for s in sentences]

    bner_env_extra = parse_env_pairs(args.bner_env)
    bner_env = {**os.environ, **bner_env_extra}
    defaults = bner_serving_defaults()

    def setting(key, default):
        value = bner_env.get(key)
        return {"value": value, "source": "--bner_env" if key in bner_env_extra else "environment"} if value else \
            {"value": default, "source": "server default"}

    hf_labels_from = None if (args.hf_labels_from or "").lower() == "none" else (args.hf_labels_from or metadata_path)
    report = {
        "benchmark": "serve_load",
        "started_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git_revision": git_revision(),
        "machine": {**machine_facts(), "load_average_before": [round(x, 2) for x in os.getloadavg()]},
        "settings": {
            "clients": args.clients, "duration_s": args.duration, "warmup_s": args.warmup, "pause_s": args.pause,
            "request_timeout_s": args.request_timeout, "rounds": args.rounds, "load_generator": f"one asyncio process, {args.client} client, "
            "one connection per client (pool sized to N), closed loop, status code checked, responses not parsed",
            "sentences": {"source": source, "count": len(sentences),
                          "mean_chars": round(sum(map(len, sentences)) / len(sentences), 1),
                          "mean_words": round(sum(len(s.split()) for s in sentences) / len(sentences), 1)},
            "systems": args.systems,
        },
        "bner": {
            "export": export,
            "export_metadata": {k: metadata.get(k) for k in ("pretrained", "encoder", "max_seq_length", "lowercase")},
            "num_labels": len(metadata.get("labels", [])),
            "backend": "in-process: model.onnx in ONNX Runtime (bner-int8: model.int8.onnx; bner-tensorflow: the SavedModel)",
            "int8": metadata.get("onnx_int8") or None,
            "BNER_MAX_BATCH_SIZE": setting("BNER_MAX_BATCH_SIZE", defaults["max_batch_size"]),
            "BNER_MAX_WAIT_MS": setting("BNER_MAX_WAIT_MS", defaults["max_wait_ms"]),
            "bner_env": bner_env_extra,
            "versions": {name: version(name) for name in ("onnxruntime", "tensorflow", "keras", "fastapi", "uvicorn", "httpx")},
        },
        "hf": {"model_dir": os.path.abspath(args.hf_model_dir) if args.hf_model_dir else None, "labels_from": hf_labels_from,
               "python": args.hf_python},
        "systems": {},
    }

    log_dir = tempfile.mkdtemp(prefix="serve_load-")
    servers = {}
    if "bner" in args.systems:
        port = free_port()
        servers["bner"] = Server("bner", [args.bner_python, "-m", "bner.serving", "--model_dir", export, "--host", "127.0.0.1",
                                          "--port", str(port)], bner_env, port, "/api/ner/ready", log_dir)
    for name, runtime in (("bner-int8", "onnx-int8"), ("bner-tensorflow", "tensorflow")):
        if name in args.systems:
            port = free_port()
            servers[name] = Server(
                name, [args.bner_python, "-m", "bner.serving", "--model_dir", export, "--host", "127.0.0.1",
                       "--port", str(port)], {**bner_env, "BNER_RUNTIME": runtime}, port, "/api/ner/ready", log_dir)
    if "hf" in args.systems:
        port = free_port()
        cmd = [args.hf_python, str(REPO / "bench" / "hf_serving_app.py"), "--model_dir", args.hf_model_dir,
               "--host", "127.0.0.1", "--port", str(port)]
        if hf_labels_from:
            cmd += ["--labels_from", hf_labels_from]
        if args.hf_torch_threads:
            cmd += ["--torch_threads", str(args.hf_torch_threads)]
        if args.hf_threadpool_size:
            cmd += ["--threadpool_size", str(args.hf_threadpool_size)]
        hf_env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONHOME")}
        servers["hf"] = Server("hf", cmd, hf_env, port, "/api/ner/health", log_dir)

    interrupted, failed = False, False
    rounds: dict[str, list[dict]] = {name: [] for name in args.systems}
    try:
        for round_number in range(args.rounds):
            if args.rounds > 1:
                print(f"round {round_number + 1} of {args.rounds}", flush=True)
            for name in args.systems:
                if name in report["systems"]:
                    continue  # failed in an earlier round
                try:
                    rounds[name].append(run_system(servers[name], args, bodies))
                except (RuntimeError, OSError, ValueError) as e:
                    failed = True
                    print(f"{name} failed: {e}", file=sys.stderr)
                    report["systems"][name] = {"error": str(e), "log": servers[name].log_path}
    except KeyboardInterrupt:
        interrupted = True
        print("interrupted", file=sys.stderr)
    finally:
        for server in servers.values():
            server.stop()
    for name, done in rounds.items():
        if done and name not in report["systems"]:
            report["systems"][name] = median_of_rounds(done)

    import statistics

    for system, runtime, key in (("bner", "auto", ""), ("bner-int8", "onnx-int8", "_int8")):
        if interrupted or not args.ceiling_batches or system not in args.systems:
            continue
        print(f"the same sentences through bner.load(export, runtime={runtime!r}).predict, no server:", flush=True)
        measured = [library_ceiling(export, sentences, args.ceiling_batches, args.ceiling_seconds, runtime) for _ in range(args.rounds)]
        report[f"library_ceiling{key}"] = [
            {"batch_size": rows[0]["batch_size"],
             **{name: statistics.median(row[name] for row in rows) for name in ("library_sentences_per_s", "model_only_sentences_per_s")},
             "rounds_library_sentences_per_s": [row["library_sentences_per_s"] for row in rows]}
            for rows in zip(*measured)
        ]
        if "levels" in report["systems"].get(system, {}):
            report[f"server_share_of_library{key}"] = server_share(report["systems"][system]["levels"], report[f"library_ceiling{key}"])
            for row in report[f"server_share_of_library{key}"]:
                print(f"  {system}, clients={row['clients']}: the server keeps {row['share_of_library']:.0%} of the library's "
                      f"throughput at batch {row['library_batch_size']} ({row['share_of_model_only']:.0%} of the model alone)")
    report["machine"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    report["finished_at"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    report["comparison"] = compare(report["systems"].get("bner"), report["systems"].get("hf"))
    # ONNX Runtime against the same export's SavedModel, both served by bner
    systems = report["systems"]
    report["comparison_onnx_over_tensorflow"] = runtime_ratios(systems.get("bner"), systems.get("bner-tensorflow"))
    report["comparison_int8_over_tensorflow"] = runtime_ratios(systems.get("bner-int8"), systems.get("bner-tensorflow"))
    report["comparison_int8_over_onnx"] = runtime_ratios(systems.get("bner-int8"), systems.get("bner"))
    if interrupted:
        report["interrupted"] = True
    print_table(report["systems"], report["comparison"])
    if args.output_json:
        Path(args.output_json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output_json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.output_json}")
    return 130 if interrupted else 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
