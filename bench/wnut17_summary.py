#!/usr/bin/env python3
"""bner against Hugging Face's recipe on WNUT-17 over many seeds: a table and the mean difference.

One ``bench/wnut17.py`` run is one seed of each system. On a short fine-tune of a small
corpus a seed's random draws (the classification head's initial weights, dropout masks)
move entity F1 by several points, so one seed says little; this script pools the
per-seed results ``bench/results/wnut17_e<epochs>_seed<N>.json`` that hold both
systems, prints them as a Markdown table with means and standard deviations, and the
difference of the means with a 95% interval (normal approximation). The systems' draws
are independent unless the runs were made with ``bench/wnut17.py --paired`` (HF trained from
bner's initial head on bner's batches): then the interval comes from the seed-by-seed
differences. The training-time ratio uses only the seeds
whose two systems ran back to back (not ``--reuse_hf``). The summary goes to
``bench/results/wnut17_e<epochs>_summary.json``.

    for s in 1 2 3; do python bench/wnut17.py --epochs 3 --seed $s --output_json bench/results/wnut17_e3_seed$s.json; done
    python bench/wnut17_summary.py --epochs 3
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import re
import statistics

HERE = os.path.dirname(os.path.abspath(__file__))
SYSTEMS = ("bner", "huggingface")


def collect(results_dir: str, epochs: str) -> list[dict]:
    """One row per seed file that ran both systems, in seed order."""
    pattern = re.compile(rf"wnut17_e{re.escape(epochs)}_seed(\d+)\.json$")
    rows = []
    for path in glob.glob(os.path.join(results_dir, f"wnut17_e{epochs}_seed*.json")):
        match = pattern.search(os.path.basename(path))
        if not match:
            continue
        with open(path, encoding="utf-8") as f:
            run = json.load(f)
        if not all(system in run for system in SYSTEMS):
            continue
        # With --reuse_hf the HF half (and its time) comes from an earlier run, under
        # whatever load the machine had then: F1 still pairs, training time does not.
        row = {
            "seed": int(match.group(1)),
            "file": os.path.basename(path),
            "timed_together": "reused_from_run_of" not in run["huggingface"],
            "paired": bool(run.get("settings", {}).get("paired")),
        }
        for system in SYSTEMS:
            row[system] = {
                "dev_f1": 100 * run[system]["dev"]["f1"],
                "test_f1": 100 * run[system]["test"]["f1"],
                "train_seconds": run[system]["train_seconds"],
            }
        rows.append(row)
    return sorted(rows, key=lambda r: r["seed"])


def describe(values: list[float]) -> dict:
    sd = statistics.stdev(values) if len(values) > 1 else float("nan")
    return {"mean": statistics.fmean(values), "sd": sd, "standard_error": sd / math.sqrt(len(values))}


def summarize(rows: list[dict]) -> dict:
    paired = {r["paired"] for r in rows}
    if len(paired) > 1:
        raise SystemExit("some seeds ran --paired and some did not: summarize them apart (--results_dir)")
    paired = paired.pop()
    summary = {"seeds": [r["seed"] for r in rows], "runs_per_system": len(rows), "paired": paired}
    for measure in ("dev_f1", "test_f1", "train_seconds"):
        stats = {system: describe([r[system][measure] for r in rows]) for system in SYSTEMS}
        difference = stats["bner"]["mean"] - stats["huggingface"]["mean"]
        if paired:
            error = describe([r["bner"][measure] - r["huggingface"][measure] for r in rows])["standard_error"]
        else:
            error = math.hypot(stats["bner"]["standard_error"], stats["huggingface"]["standard_error"])
        summary[measure] = {
            **stats,
            "bner_minus_huggingface": difference,
            "interval_95": [difference - 1.96 * error, difference + 1.96 * error],
        }
    # Paired runs replay bner's batches in HF (no group_by_length): not the speed setting.
    together = [] if paired else [r for r in rows if r["timed_together"]]
    summary["timed_together_seeds"] = [r["seed"] for r in together]
    timed = together or rows
    summary["wall_time_ratio_bner_over_hf"] = None if paired else statistics.fmean(
        r["bner"]["train_seconds"] for r in timed
    ) / statistics.fmean(r["huggingface"]["train_seconds"] for r in timed)
    return summary


def markdown(rows: list[dict], summary: dict) -> str:
    lines = [
        "| seed | bner dev F1 | HF dev F1 | bner test F1 | HF test F1 | bner s | HF s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        b, h = r["bner"], r["huggingface"]
        lines.append(
            f"| {r['seed']} | {b['dev_f1']:.2f} | {h['dev_f1']:.2f} | {b['test_f1']:.2f} | {h['test_f1']:.2f} "
            f"| {b['train_seconds']:.0f} | {h['train_seconds']:.0f}{'' if r['timed_together'] else '*'} |"
        )

    def cell(measure: str, system: str, key: str, digits: int) -> str:
        return f"{summary[measure][system][key]:.{digits}f}"

    for key, label in (("mean", "**mean**"), ("sd", "sd")):
        cells = [cell(m, s, key, 0 if m == "train_seconds" else 2) for m in ("dev_f1", "test_f1", "train_seconds") for s in SYSTEMS]
        if key == "mean":
            cells = [f"**{c}**" for c in cells]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("")
    if not all(r["timed_together"] for r in rows):
        lines.append("\\* HF half reused from an earlier run (`--reuse_hf`): its time is not paired with bner's.\n")
    for measure in ("dev_f1", "test_f1"):
        low, high = summary[measure]["interval_95"]
        lines.append(
            f"{measure.replace('_f1', '')} F1, bner − HF: {summary[measure]['bner_minus_huggingface']:+.2f} "
            f"(95% interval {low:+.2f} to {high:+.2f}, {summary['runs_per_system']} seeds each"
            + (", paired: same initial head and batches)" if summary["paired"] else ")")
        )
    if summary["paired"]:
        lines.append("training time: not compared (paired runs replay bner's batches; speed runs are unpaired)")
        return "\n".join(lines)
    together = len(summary["timed_together_seeds"])
    lines.append(
        f"training time, bner / HF: {summary['wall_time_ratio_bner_over_hf']:.2f} "
        + (f"(means over the {together} seeds whose two systems ran back to back)" if together else "(HF's times all from earlier runs)")
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", default="3", help="as in the result file names: wnut17_e<epochs>_seed<N>.json")
    parser.add_argument("--results_dir", default=os.path.join(HERE, "results"))
    args = parser.parse_args()
    rows = collect(args.results_dir, args.epochs)
    if len(rows) < 2:
        raise SystemExit(f"{args.results_dir}: fewer than two wnut17_e{args.epochs}_seed<N>.json files with both systems")
    summary = summarize(rows)
    print(markdown(rows, summary))
    path = os.path.join(args.results_dir, f"wnut17_e{args.epochs}_summary.json")
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump({"rows": rows, "summary": summary}, f, indent=2)
    os.replace(path + ".tmp", path)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
