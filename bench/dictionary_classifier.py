#!/usr/bin/env python3
"""Dictionary matches checked by a span classifier, against the dictionary alone, on a corpus's
dev and test files (conlleval's entity-level rules), over seeds and both masking styles.

For each masking style and seed, one classifier is trained with ``bner.train`` on the
candidates the training dictionary (``--train_dictionary``) matches in train.conll. Each is
then scored with every dictionary of ``--dictionary`` (the classifier judges a candidate from
its sentence, whichever dictionary found it), beside that dictionary alone. It also reports
the classifier's throughput in candidates per second on test, and how much of the dictionary
alone's recall it keeps.

The classifier accepts a match above a threshold of probability (0.5 by default, its
arg-max). For each dictionary the threshold is also chosen on dev: the highest of
``--thresholds`` at which the classifier keeps ``--keep_recall`` of the dictionary alone's dev
recall, then applied to test (``at_chosen_threshold``), beside the whole test curve.

    python bench/dictionary_classifier.py --data_dir ../shared/data/ncbi_disease \
        --pretrained_model .cache/minilm/model --harvest \
        --dictionary mesh=../shared/data/mesh_diseases/dictionary.tsv \
        --train_dictionary union --seeds 1 2 3 --runs_dir runs/dictionary_classifier_ncbi_disease \
        --results_dir bench/results/dictionary_classifier_ncbi_disease
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
from common import write_result  # noqa: E402

import bner  # noqa: E402
from bner.data import corpus  # noqa: E402
from bner.dictionary import names as dictionary_names  # noqa: E402
from bner.dictionary.matcher import Matcher  # noqa: E402
from bner.inference.dictionary_tagger import DictionaryTagger  # noqa: E402
from bner.inference.evaluate import score  # noqa: E402
from bner.inference.tagger import run_steps  # noqa: E402


def scored(tagger, sentences) -> dict:
    counts = tagger.evaluate(sentences).overall
    return {"precision": round(100 * counts.precision, 2), "recall": round(100 * counts.recall, 2), "f1": round(100 * counts.f1, 2),
            "predicted": counts.predicted, "correct": counts.correct, "gold": counts.gold}


def swept(tagger, sentences, thresholds) -> dict:
    """Scores at each threshold, the classifier run once: its decisions are remade from the same probabilities."""
    words = [s.words for s in sentences]
    checked = run_steps(tagger.checked_matches_in_steps(words))
    out = {}
    for threshold in thresholds:
        predicted = [corpus.convert_tags(t.tags, tagger.data_scheme) for t in tagger.decided(words, checked, threshold)]
        counts = score([s.tags for s in sentences], predicted).overall
        out[threshold] = {"precision": round(100 * counts.precision, 2), "recall": round(100 * counts.recall, 2),
                          "f1": round(100 * counts.f1, 2), "predicted": counts.predicted, "correct": counts.correct, "gold": counts.gold}
    return out


def chosen_threshold(dev: dict, dictionary_recall: float, keep: float) -> float:
    """The highest threshold whose dev recall is at least ``keep`` of the dictionary alone's (the lowest if none is)."""
    keeping = [t for t, s in dev.items() if s["recall"] >= keep * dictionary_recall]
    return max(keeping) if keeping else min(dev)


def mean(values) -> float:
    return round(statistics.fmean(values), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--pretrained_model", required=True)
    parser.add_argument("--dictionary", action="append", default=[], metavar="NAME=FILE")
    parser.add_argument("--harvest", action="store_true", help="add the mentions of train and dev (with plurals) as 'harvested', "
                                                                "and with --dictionary the union of all as 'union'")
    parser.add_argument("--train_dictionary", required=True, help="which dictionary's candidates the classifier trains on")
    parser.add_argument("--maskings", nargs="+", default=["replace", "markers"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--thresholds", nargs="+", type=float,
                        default=[0.5, 0.45, 0.4, 0.35, 0.3, 0.25, 0.2, 0.15, 0.1, 0.05, 0.02, 0.01])
    parser.add_argument("--keep_recall", type=float, default=0.95, help="the share of the dictionary's dev recall a chosen threshold keeps")
    parser.add_argument("--runs_dir", required=True, help="where the runs (models) and the harvested dictionary go")
    parser.add_argument("--results_dir", required=True, help="where summary.json goes")
    args = parser.parse_args()

    os.makedirs(args.runs_dir, exist_ok=True)
    splits = {name: corpus.read_conll(os.path.join(args.data_dir, f"{name}.conll")) for name in ("train", "dev", "test")}
    files: dict[str, list[str]] = {}
    for given in args.dictionary:
        name, _, path = given.partition("=")
        files[name] = [path]
    plurals = {name: False for name in files}
    if args.harvest:
        harvested = os.path.join(args.runs_dir, "harvested.tsv")
        dictionary_names.write_names(dictionary_names.harvest(splits["train"] + splits["dev"]), harvested)
        files["harvested"], plurals["harvested"] = [harvested], True
        if args.dictionary:
            files["union"], plurals["union"] = [p for paths in list(files.values()) for p in paths], True
    matchers = {name: Matcher.from_files(paths, plurals=plurals[name]) for name, paths in files.items()}
    result = {"date": datetime.date.today().isoformat(), "data_dir": args.data_dir, "pretrained_model": args.pretrained_model,
              "train_dictionary": args.train_dictionary, "epochs": args.epochs, "precision": args.precision,
              "dictionaries": {name: {"files": paths, "plurals": plurals[name], "names": matchers[name].names} for name, paths in files.items()},
              "alone": {name: {split: scored(DictionaryTagger(m), splits[split]) for split in ("dev", "test")} for name, m in matchers.items()},
              "runs": []}
    for masking in args.maskings:
        for seed in args.seeds:
            out = os.path.join(args.runs_dir, f"{masking}-seed{seed}")
            config = bner.TrainConfig.from_settings(
                data_dir=args.data_dir, pretrained_model=args.pretrained_model, output_dir=out, num_train_epochs=args.epochs,
                seed=seed, precision=args.precision, dictionary=",".join(files[args.train_dictionary]),
                dictionary_plurals=plurals[args.train_dictionary], masking=masking, export=False, progress=False)
            trained = bner.train(config)
            tagger = bner.load(trained.model_dir)
            run = {"masking": masking, "seed": seed, "output_dir": out, "steps": trained.steps, "train_seconds": round(trained.train_seconds, 1),
                   "scores": {}}
            for name, matcher in matchers.items():
                tagger.matcher = matcher  # the classifier judges whatever candidates a dictionary finds
                run["scores"][name] = {split: scored(tagger, splits[split]) for split in ("dev", "test")}
                curves = {split: swept(tagger, splits[split], args.thresholds) for split in ("dev", "test")}
                chosen = chosen_threshold(curves["dev"], result["alone"][name]["dev"]["recall"], args.keep_recall)
                run["scores"][name]["at_chosen_threshold"] = {"threshold": chosen, "dev": curves["dev"][chosen], "test": curves["test"][chosen]}
                run["scores"][name]["test_by_threshold"] = {str(t): curves["test"][t] for t in args.thresholds}
            tagger.matcher = matchers[args.train_dictionary]
            candidates = sum(len(tagger.matcher.match_words(s.words)) for s in splits["test"])
            started = time.perf_counter()
            tagger.evaluate(splits["test"])
            run["candidates_per_second"] = round(candidates / (time.perf_counter() - started), 1)
            result["runs"].append(run)
            print(json.dumps({k: v for k, v in run.items() if k != "scores"}), {n: s["test"]["f1"] for n, s in run["scores"].items()},
                  file=sys.stderr)
    summary = {}
    for masking in args.maskings:
        runs = [r for r in result["runs"] if r["masking"] == masking]
        for name in matchers:
            alone = result["alone"][name]["test"]
            test = [r["scores"][name]["test"] for r in runs]
            summary[f"{masking}/{name}"] = {
                "test_precision": mean(t["precision"] for t in test), "test_recall": mean(t["recall"] for t in test),
                "test_f1": mean(t["f1"] for t in test), "dev_f1": mean(r["scores"][name]["dev"]["f1"] for r in runs),
                "precision_gain_over_dictionary": round(mean(t["precision"] for t in test) - alone["precision"], 2),
                "recall_kept": round(mean(t["recall"] for t in test) / alone["recall"], 4) if alone["recall"] else None,
                "candidates_per_second": mean(r["candidates_per_second"] for r in runs),
            }
            at_chosen = [r["scores"][name]["at_chosen_threshold"] for r in runs]
            summary[f"{masking}/{name}/chosen_threshold"] = {
                "thresholds": [c["threshold"] for c in at_chosen],
                "test_precision": mean(c["test"]["precision"] for c in at_chosen), "test_recall": mean(c["test"]["recall"] for c in at_chosen),
                "test_f1": mean(c["test"]["f1"] for c in at_chosen),
                "precision_gain_over_dictionary": round(mean(c["test"]["precision"] for c in at_chosen) - alone["precision"], 2),
                "recall_kept": round(mean(c["test"]["recall"] for c in at_chosen) / alone["recall"], 4) if alone["recall"] else None,
            }
    result["summary"] = summary
    write_result(result, os.path.join(args.results_dir, "summary.json"))


if __name__ == "__main__":
    main()
