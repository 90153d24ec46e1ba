#!/usr/bin/env python3
"""What document context and valid-sequence decoding buy, each alone and together, against the recipe.

For each seed, on a corpus with ``-DOCSTART-`` documents (NCBI-disease by default):

1. ``bench/wnut17.py`` runs Hugging Face's recipe (sentences alone) and bner with
   ``--context_words`` side by side, same epochs, learning rate, batch size, maximum length
   and seed;
2. ``bench/wnut17.py --skip_hf`` trains bner without context on the same settings;
3. both bner models are scored on dev and test twice, each word's arg-max label and the most
   probable valid sequence (``bner.load(..., decoding=...)``), so the four cells are
   bner as it was (no context, arg-max), decoding alone, context alone, and both.

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

VARIANTS = {  # cell: (model, decoding)
    "plain": ("plain", "argmax"),
    "decoding_only": ("plain", "constrained"),
    "context_only": ("context", "argmax"),
    "context_and_decoding": ("context", "constrained"),
}


def train(args, seed: int, context: bool, work: str) -> dict:
    """One ``bench/wnut17.py`` run: with context it also runs the recipe; the bner run folder is kept in ``work``."""
    name = "context" if context else "plain"
    out_json = os.path.join(work, f"{name}.json")
    command = [
        sys.executable, os.path.join(HERE, "wnut17.py"), f"--data_dir={args.data_dir}", f"--model_dir={args.model_dir}",
        f"--epochs={args.epochs}", f"--seed={seed}", f"--max_length={args.max_length}", f"--output_json={out_json}",
        f"--keep_output={os.path.join(work, name)}", f"--hf_python={args.hf_python}",
    ]
    command += [f"--bner_flag=--context_words={args.context_words}"] if context else ["--skip_hf"]
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True)
    with open(out_json, encoding="utf-8") as f:
        return json.load(f)


def score(run_dir: str, data_dir: str) -> dict:
    """Dev and test F1 (percent) of a trained run folder under both decodings."""
    import bner
    from bner import corpus

    scores = {}
    for split in ("dev", "test"):
        sentences = corpus.read_conll(os.path.join(data_dir, f"{split}.conll"))
        for decoding in ("argmax", "constrained"):
            result, _ = bner.load(run_dir, batch_size=32, decoding=decoding).evaluation(sentences)
            scores[f"{split}_{decoding}"] = 100 * result.f1
    return scores


def run_seed(args, seed: int) -> dict:
    work = os.path.join(args.work_dir, f"seed{seed}")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    with_context = train(args, seed, True, work)
    plain = train(args, seed, False, work)
    scores = {"plain": score(os.path.join(work, "plain"), args.data_dir),
              "context": score(os.path.join(work, "context"), args.data_dir)}
    hf = with_context["huggingface"]
    result = {
        "data": os.path.basename(os.path.normpath(args.data_dir)),
        "seed": seed,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": with_context["machine"],
        "settings": {"epochs": args.epochs, "max_length": args.max_length, "context_words": args.context_words,
                     "learning_rate": with_context["settings"]["learning_rate"],
                     "batch_size": with_context["settings"]["batch_size"]},
        "huggingface": {"dev_f1": 100 * hf["dev"]["f1"], "test_f1": 100 * hf["test"]["f1"], "train_seconds": hf["train_seconds"]},
        "train_seconds": {"huggingface": hf["train_seconds"], "bner_context": with_context["bner"]["train_seconds"],
                          "bner_plain": plain["bner"]["train_seconds"]},
        "real_pieces_per_epoch": {"bner_context": with_context["bner"]["real_pieces_per_epoch"],
                                  "bner_plain": plain["bner"]["real_pieces_per_epoch"]},
    }
    for cell, (model, decoding) in VARIANTS.items():
        result[cell] = {f"{split}_f1": scores[model][f"{split}_{decoding}"] for split in ("dev", "test")}
    if not args.keep_models:
        shutil.rmtree(work, ignore_errors=True)
    return result


def summarize(runs: list[dict]) -> dict:
    summary = {"data": runs[0]["data"], "seeds": [r["seed"] for r in runs], "settings": runs[0]["settings"]}
    summary["huggingface"] = {f"{s}_f1_mean": statistics.fmean(r["huggingface"][f"{s}_f1"] for r in runs) for s in ("dev", "test")}
    for cell in VARIANTS:
        summary[cell] = {}
        for split in ("dev", "test"):
            summary[cell][f"{split}_f1_mean"] = statistics.fmean(r[cell][f"{split}_f1"] for r in runs)
            summary[cell][f"{split}_minus_huggingface"] = interval([r[cell][f"{split}_f1"] - r["huggingface"][f"{split}_f1"] for r in runs])
            summary[cell][f"{split}_minus_plain"] = interval([r[cell][f"{split}_f1"] - r["plain"][f"{split}_f1"] for r in runs])
    # What context adds on top of decoding (bner's default decoding): the figure a default for
    # --context_words is chosen from, on dev.
    summary["context_given_decoding"] = {
        f"{split}_difference": interval([r["context_and_decoding"][f"{split}_f1"] - r["decoding_only"][f"{split}_f1"] for r in runs])
        for split in ("dev", "test")
    }
    seconds = {k: statistics.fmean(r["train_seconds"][k] for r in runs) for k in runs[0]["train_seconds"]}
    pieces = {k: statistics.fmean(r["real_pieces_per_epoch"][k] for r in runs) for k in runs[0]["real_pieces_per_epoch"]}
    summary["train_seconds_mean"] = seconds
    summary["context_over_plain_train_time"] = seconds["bner_context"] / seconds["bner_plain"]
    summary["context_over_plain_pieces"] = pieces["bner_context"] / pieces["bner_plain"]
    summary["context_over_huggingface_train_time"] = seconds["bner_context"] / seconds["huggingface"]
    return summary


def markdown(runs: list[dict], summary: dict) -> str:
    cells = ("huggingface", *VARIANTS)
    lines = ["| seed | " + " | ".join(f"{c} dev / test" for c in cells) + " | train s (HF / plain / context) |",
             "|---|" + "---|" * (len(cells) + 1)]
    for r in runs:
        t = r["train_seconds"]
        lines.append(f"| {r['seed']} | " + " | ".join(f"{r[c]['dev_f1']:.2f} / {r[c]['test_f1']:.2f}" for c in cells)
                     + f" | {t['huggingface']:.0f} / {t['bner_plain']:.0f} / {t['bner_context']:.0f} |")
    means = summary["train_seconds_mean"]
    lines.append("| **mean** | " + " | ".join(f"**{summary[c]['dev_f1_mean']:.2f} / {summary[c]['test_f1_mean']:.2f}**" for c in cells)
                 + f" | {means['huggingface']:.0f} / {means['bner_plain']:.0f} / {means['bner_context']:.0f} |")
    lines.append("")

    def show(i: dict) -> str:
        return f"{i['mean']:+.2f}" + (f" ({i['low']:+.2f} to {i['high']:+.2f})" if "low" in i else "")

    lines += ["| bner variant | dev − HF | test − HF | dev − plain bner | test − plain bner |", "|---|---|---|---|---|"]
    for cell in VARIANTS:
        s = summary[cell]
        lines.append(f"| {cell.replace('_', ' ')} | {show(s['dev_minus_huggingface'])} | {show(s['test_minus_huggingface'])} "
                     f"| {show(s['dev_minus_plain'])} | {show(s['test_minus_plain'])} |")
    given = summary["context_given_decoding"]
    lines.append("")
    lines.append(f"Context on top of decoding (context and decoding − decoding only): dev {show(given['dev_difference'])}, "
                 f"test {show(given['test_difference'])}.")
    lines.append(f"Differences paired by seed, 95 % t-intervals over {len(runs)} seeds. Training with "
                 f"{summary['settings']['context_words']} context words took {summary['context_over_plain_train_time']:.2f}× "
                 f"the time without ({summary['context_over_plain_pieces']:.2f}× the real pieces per epoch) and "
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
    parser.add_argument("--context_words", type=int, default=64)
    parser.add_argument("--results_dir", default=os.path.join(HERE, "results", "document_context"))
    parser.add_argument("--work_dir", default=os.path.join(ROOT, "runs", "document_context"),
                        help="where each seed's bner run folders are kept while they are scored")
    parser.add_argument("--keep_models", action="store_true", help="keep the run folders (e.g. for bench/serve_vs_eval.py)")
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
