"""Helpers the benchmarks share: a free loopback port, percentiles, a process's resident memory, the result file.
The machine a result was measured on is bner's own description, :func:`bner.environment.machine_facts`."""

from __future__ import annotations

import json
import os
import socket


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float | None:
    """The ``q``-th percentile (0–100) by linear interpolation between closest ranks, numpy's default;
    every benchmark reports latencies with this one definition. None for no values."""
    ordered = sorted(values)
    if not ordered:
        return None
    position = (len(ordered) - 1) * q / 100.0
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def rss_mb(pid: int) -> float:
    """Resident memory of a process, from /proc (Linux)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def write_result(result: dict, path: str) -> None:
    """Print the result and store it as JSON."""
    print(json.dumps(result, indent=1))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    print(f"wrote {path}")
