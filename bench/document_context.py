#!/usr/bin/env python3
"""What document context, valid-sequence decoding and document consistency buy, against the recipe.

For each seed, on a corpus with ``-DOCSTART-`` documents (NCBI-disease by default):

1. ``bench/wnut17.py`` runs Hugging Face's recipe (sentences alone) and bner with
   ``--context_words`` side by side, same epochs, learning rate, batch size, maximum length
   and seed;
2. ``bench/wnut17.py --skip_hf`` trains bner without context on the same settings
   (with ``--context_words 0`` this is the only run, and the recipe runs beside it);
3. each bner model is scored on dev and test three ways: each word's arg-max label, the most
   probable valid sequence, and that sequence made consistent within each document
   (``bner.load(..., decoding=..., consistent=...)``). The cells are bner as it was (no
   context, arg-max), decoding alone, decoding with consistency (bner's default), and the
   same three with context.

With ``--document_windows`` the second bner model is trained on packed document windows
(``--document_windows=true``) instead of with context words, and tagged as it was trained (each
document whole); its cells are named ``documents_*``. With ``--baseline_results DIR`` the recipe's
and plain bner's figures of each seed are read from an earlier run's ``DIR/seed<N>.json`` (same
data and settings) instead of being trained again, and only the new model is trained.

The differences are paired by seed (the same seed's runs) and given with 95 % t-intervals;
training time with and without context comes from the same seed's runs, one after the other.
Per-seed results: ``<results_dir>/seed<N>.json`` (a seed already there is not rerun, so
seeds can be added later); the summary: ``<results_dir>/summary.json`` and ``summary.md``.

    python bench/document_context.py --seeds 1 2 3 4 5
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)

from decoding import interval  # noqa: E402

VARIANTS = {  # cell: (model, decoding, consistent)
    "plain": ("plain", "argmax", False),
    "decoding_only": ("plain", "constrained", False),
    "decoding_and_consistency": ("plain", "constrained", True),
    "context_only": ("context", "argmax", False),
    "context_and_decoding": ("context", "constrained", False),
    "context_decoding_and_consistency": ("context", "constrained", True),
}
SCORINGS = (("argmax", False), ("constrained", False), ("constrained", True))


def train(args, seed: int, context: bool, work: str, recipe: bool) -> dict:
    """One ``bench/wnut17.py`` run, with the recipe beside it if ``recipe``; the bner run folder is kept in ``work``."""
    name = "context" if context else "plain"
    out_json = os.path.join(work, f"{name}.json")
    if args.reuse_runs and os.path.exists(out_json) and os.path.isdir(os.path.join(work, name)):
        with open(out_json, encoding="utf-8") as f:
            return json.load(f)
    command = [
        sys.executable, os.path.join(HERE, "wnut17.py"), f"--data_dir={args.data_dir}", f"--model_dir={args.model_dir}",
        f"--epochs={args.epochs}", f"--seed={seed}", f"--max_length={args.max_length}", f"--output_json={out_json}",
        f"--keep_output={os.path.join(work, name)}", f"--hf_python={args.hf_python}", f"--bner_precision={args.precision}",
        f"--hf_precision={'bf16' if args.precision == 'mixed_bfloat16' else args.precision}",
    ]
    if context:
        command += ["--bner_flag=--document_windows=true"] if args.document_windows else [f"--bner_flag=--context_words={args.context_words}"]
        command += [f"--bner_flag={flag}" for flag in args.second_model_flag]
    command += [] if recipe else ["--skip_hf"]
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True)
    with open(out_json, encoding="utf-8") as f:
        return json.load(f)


def score(run_dir: str, data_dir: str) -> dict:
    """Dev and test F1 (percent) of a trained run folder under each of ``SCORINGS``."""
    import bner
    from bner.data import corpus

    scores = {}
    for split in ("dev", "test"):
        sentences = corpus.read_conll(os.path.join(data_dir, f"{split}.conll"))
        for decoding, consistent in SCORINGS:
            result, _ = bner.load(run_dir, batch_size=32, decoding=decoding, consistent=consistent).evaluation(sentences)
            scores[scoring(split, decoding, consistent)] = 100 * result.f1
    return scores


def scoring(split: str, decoding: str, consistent: bool) -> str:
    return f"{split}_{decoding}" + ("_consistent" if consistent else "")


def run_seed(args, seed: int) -> dict:
    work = os.path.join(args.work_dir, f"seed{seed}")
    if not args.reuse_runs:
        shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work, exist_ok=True)
    runs = {}
    second = args.context_words or args.document_windows
    baseline = None
    if args.baseline_results:
        with open(os.path.join(args.baseline_results, f"seed{seed}.json"), encoding="utf-8") as f:
            baseline = json.load(f)
    if second:
        runs["context"] = train(args, seed, True, work, recipe=baseline is None)
    if baseline is None:
        runs["plain"] = train(args, seed, False, work, recipe=not second)
    beside = runs.get("context", runs.get("plain"))  # the run the recipe ran beside
    scores = {name: score(os.path.join(work, name), args.data_dir) for name in runs}
    if baseline is not None:
        return with_baseline(args, seed, runs["context"], scores["context"], baseline, work)
    hf = beside["huggingface"]
    result = {
        "data": os.path.basename(os.path.normpath(args.data_dir)),
        "seed": seed,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": beside["machine"],
        "settings": {"epochs": args.epochs, "max_length": args.max_length, "context_words": args.context_words,
                     **({"document_windows": True, "second_model_flags": args.second_model_flag} if args.document_windows else {}),
                     "learning_rate": beside["settings"]["learning_rate"],
                     "batch_size": beside["settings"]["batch_size"]},
        "huggingface": {"dev_f1": 100 * hf["dev"]["f1"], "test_f1": 100 * hf["test"]["f1"], "train_seconds": hf["train_seconds"]},
        "train_seconds": {"huggingface": hf["train_seconds"], **{f"bner_{n}": r["bner"]["train_seconds"] for n, r in runs.items()}},
        "real_pieces_per_epoch": {f"bner_{n}": r["bner"]["real_pieces_per_epoch"] for n, r in runs.items()},
    }
    for cell, (model, decoding, consistent) in VARIANTS.items():
        if model in scores:
            result[cell] = {f"{split}_f1": scores[model][scoring(split, decoding, consistent)] for split in ("dev", "test")}
    if not args.keep_models:
        shutil.rmtree(work, ignore_errors=True)
    return result


def with_baseline(args, seed: int, run: dict, scores: dict, baseline: dict, work: str) -> dict:
    """A seed's result: the new model's cells beside the recipe's and plain bner's from ``baseline``."""
    settings = {**baseline["settings"], "document_windows": args.document_windows,
                "context_words": 0 if args.document_windows else args.context_words,
                "second_model_flags": args.second_model_flag}
    if (run["settings"]["learning_rate"], run["settings"]["batch_size"], args.epochs, args.max_length) != (
            baseline["settings"]["learning_rate"], baseline["settings"]["batch_size"], baseline["settings"]["epochs"],
            baseline["settings"]["max_length"]):
        sys.exit(f"{args.baseline_results}: seed {seed} was run with other settings ({baseline['settings']})")
    result = {**{k: baseline[k] for k in ("data", "seed", "huggingface", *[c for c in VARIANTS if not c.startswith("context")])
                 if k in baseline},
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "machine": run["machine"], "settings": settings, "baseline_from": os.path.abspath(args.baseline_results),
              "baseline_machine": baseline["machine"], "baseline_date": baseline["date"],
              "train_seconds": {**baseline["train_seconds"], "bner_context": run["bner"]["train_seconds"]},
              "real_pieces_per_epoch": {**baseline["real_pieces_per_epoch"], "bner_context": run["bner"]["real_pieces_per_epoch"]}}
    for cell, (model, decoding, consistent) in VARIANTS.items():
        if model == "context":
            result[cell] = {f"{split}_f1": scores[scoring(split, decoding, consistent)] for split in ("dev", "test")}
    if not args.keep_models:
        shutil.rmtree(work, ignore_errors=True)
    return result


def cells(runs: list[dict]) -> list[str]:
    """The variants every run has (runs without context, or from before consistency, have fewer)."""
    return [cell for cell in VARIANTS if all(cell in r for r in runs)]


def differences(runs: list[dict], cell: str, base: str) -> dict:
    return {f"{split}_difference": interval([r[cell][f"{split}_f1"] - r[base][f"{split}_f1"] for r in runs]) for split in ("dev", "test")}


def summarize(runs: list[dict]) -> dict:
    summary = {"data": runs[0]["data"], "seeds": [r["seed"] for r in runs], "settings": runs[0]["settings"]}
    summary["huggingface"] = {f"{s}_f1_mean": statistics.fmean(r["huggingface"][f"{s}_f1"] for r in runs) for s in ("dev", "test")}
    present = cells(runs)
    for cell in present:
        summary[cell] = {}
        for split in ("dev", "test"):
            summary[cell][f"{split}_f1_mean"] = statistics.fmean(r[cell][f"{split}_f1"] for r in runs)
            summary[cell][f"{split}_minus_huggingface"] = interval([r[cell][f"{split}_f1"] - r["huggingface"][f"{split}_f1"] for r in runs])
            summary[cell][f"{split}_minus_plain"] = interval([r[cell][f"{split}_f1"] - r["plain"][f"{split}_f1"] for r in runs])
    # What context adds on top of decoding (bner's default decoding): the figure a default for
    # --context_words is chosen from, on dev; and what consistency adds on top of decoding.
    if "context_and_decoding" in present:
        summary["context_given_decoding"] = differences(runs, "context_and_decoding", "decoding_only")
    if "decoding_and_consistency" in present:
        summary["consistency_given_decoding"] = differences(runs, "decoding_and_consistency", "decoding_only")
    seconds = {k: statistics.fmean(r["train_seconds"][k] for r in runs) for k in runs[0]["train_seconds"]}
    pieces = {k: statistics.fmean(r["real_pieces_per_epoch"][k] for r in runs) for k in runs[0]["real_pieces_per_epoch"]}
    summary["train_seconds_mean"] = seconds
    summary["plain_over_huggingface_train_time"] = seconds["bner_plain"] / seconds["huggingface"]
    if "bner_context" in seconds:
        summary["context_over_plain_train_time"] = seconds["bner_context"] / seconds["bner_plain"]
        summary["context_over_plain_pieces"] = pieces["bner_context"] / pieces["bner_plain"]
        summary["context_over_huggingface_train_time"] = seconds["bner_context"] / seconds["huggingface"]
    return summary


def markdown(runs: list[dict], summary: dict) -> str:
    present = cells(runs)
    second = "documents" if summary["settings"].get("document_windows") else "context"

    def name(cell: str) -> str:
        return cell.replace("context", second)

    columns = ("huggingface", *present)
    timed = [k for k in ("huggingface", "bner_plain", "bner_context") if k in runs[0]["train_seconds"]]
    timed_names = " / ".join({"huggingface": "HF", "bner_plain": "plain", "bner_context": second}[k] for k in timed)
    lines = ["| seed | " + " | ".join(f"{name(c)} dev / test" for c in columns) + f" | train s ({timed_names}) |",
             "|---|" + "---|" * (len(columns) + 1)]
    for r in runs:
        t = r["train_seconds"]
        lines.append(f"| {r['seed']} | " + " | ".join(f"{r[c]['dev_f1']:.2f} / {r[c]['test_f1']:.2f}" for c in columns)
                     + " | " + " / ".join(f"{t[k]:.0f}" for k in timed) + " |")
    means = summary["train_seconds_mean"]
    lines.append("| **mean** | " + " | ".join(f"**{summary[c]['dev_f1_mean']:.2f} / {summary[c]['test_f1_mean']:.2f}**" for c in columns)
                 + " | " + " / ".join(f"{means[k]:.0f}" for k in timed) + " |")
    lines.append("")

    def show(i: dict) -> str:
        return f"{i['mean']:+.2f}" + (f" ({i['low']:+.2f} to {i['high']:+.2f})" if "low" in i else "")

    lines += ["| bner variant | dev − HF | test − HF | dev − plain bner | test − plain bner |", "|---|---|---|---|---|"]
    for cell in present:
        s = summary[cell]
        lines.append(f"| {name(cell).replace('_', ' ')} | {show(s['dev_minus_huggingface'])} | {show(s['test_minus_huggingface'])} "
                     f"| {show(s['dev_minus_plain'])} | {show(s['test_minus_plain'])} |")
    lines.append("")
    for key, what in (("context_given_decoding", name("context on top of decoding (context and decoding − decoding only)").capitalize()),
                      ("consistency_given_decoding", "Consistency on top of decoding (decoding and consistency − decoding only)")):
        if key in summary:
            lines.append(f"{what}: dev {show(summary[key]['dev_difference'])}, test {show(summary[key]['test_difference'])}.")
    lines.append(f"Differences paired by seed, 95 % t-intervals over {len(runs)} seeds.")
    if "context_over_plain_train_time" in summary:
        trained = "on document windows" if second == "documents" else f"with {summary['settings']['context_words']} context words"
        lines[-1] += (f" Training {trained} took "
                      f"{summary['context_over_plain_train_time']:.2f}× the time without "
                      f"({summary['context_over_plain_pieces']:.2f}× the real pieces per epoch) and "
                      f"{summary['context_over_huggingface_train_time']:.2f}× the recipe's.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", default=os.path.join(ROOT, "..", "shared", "data", "ncbi_disease"))
    parser.add_argument("--model_dir", default=os.path.join(ROOT, ".cache", "minilm", "model"))
    parser.add_argument("--hf_python", default=os.path.join(ROOT, ".cache", "hfvenv", "bin", "python"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--max_length", type=int, default=128, help="both systems' maximum input length")
    parser.add_argument("--context_words", type=int, default=64, help="0: no context model; the recipe runs beside the plain one")
    parser.add_argument("--precision", default="auto", choices=["auto", "float32", "mixed_bfloat16"],
                        help="both systems' precision (auto: bfloat16 where the CPU has it); pair --baseline_results "
                             "with the precision they were run at")
    parser.add_argument("--document_windows", action="store_true",
                        help="train the second bner model on packed document windows instead of with --context_words")
    parser.add_argument("--second_model_flag", action="append", default=[],
                        help="a further bner flag for the second model only, e.g. --max_seq_length=256 (repeat for more)")
    parser.add_argument("--baseline_results", help="read each seed's recipe and plain-bner figures from this folder of an "
                        "earlier run (same data and settings) instead of training them again")
    parser.add_argument("--results_dir", default=os.path.join(HERE, "results", "document_context"))
    parser.add_argument("--work_dir", default=os.path.join(ROOT, "runs", "document_context"),
                        help="where each seed's bner run folders are kept while they are scored")
    parser.add_argument("--keep_models", action="store_true", help="keep the run folders (e.g. for bench/serve_vs_eval.py)")
    parser.add_argument("--reuse_runs", action="store_true",
                        help="score the runs kept in --work_dir (--keep_models) again instead of training; remove a "
                             "seed's JSON from --results_dir to have it rescored")
    args = parser.parse_args()
    os.makedirs(args.results_dir, exist_ok=True)
    runs = []
    for seed in args.seeds:
        path = os.path.join(args.results_dir, f"seed{seed}.json")
        if not os.path.exists(path):
            result = run_seed(args, seed)
            with open(path + ".tmp", "w", encoding="utf-8") as f:
                json.dump(result, f, indent=1)
            os.replace(path + ".tmp", path)
        with open(path, encoding="utf-8") as f:
            runs.append(json.load(f))
        if any(r["settings"] != runs[0]["settings"] for r in runs):
            sys.exit(f"{path}: made with other settings than the seeds before it; use another --results_dir")
    summary = summarize(runs)
    text = markdown(runs, summary)
    for name, content in (("summary.json", json.dumps(summary, indent=1)), ("summary.md", text + "\n")):
        with open(os.path.join(args.results_dir, name + ".tmp"), "w", encoding="utf-8") as f:
            f.write(content)
        os.replace(os.path.join(args.results_dir, name + ".tmp"), os.path.join(args.results_dir, name))
    print(text)


if __name__ == "__main__":
    main()
