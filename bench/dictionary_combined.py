#!/usr/bin/env python3
"""A token tagger alone and combined with a dictionary model (union, confirm), on dev and test
(conlleval's entity-level rules), over seeds.

For each seed a token tagger is trained with ``bner.train`` at bner's defaults (or an existing
run under ``--runs_dir`` is reused), and paired with the dictionary model of the same seed
from ``--classifier_runs`` (``bench/dictionary_classifier.py``'s run folders, ``{seed}`` in the
pattern), which tags with ``--dictionary`` (the classifier judges whichever dictionary's matches).

    python bench/dictionary_combined.py --data_dir ../shared/data/ncbi_disease --pretrained_model .cache/minilm/model \
        --classifier_runs 'runs/dictionary_classifier_ncbi_disease/replace-seed{seed}' \
        --dictionary runs/dictionary_classifier_ncbi_disease/harvested.tsv,../shared/data/mesh_diseases/dictionary.tsv \
        --plurals --seeds 1 2 3 --runs_dir runs/dictionary_combined_ncbi_disease --results_dir bench/results/dictionary_combined_ncbi_disease
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
from common import write_result  # noqa: E402

import bner  # noqa: E402
from bner.data import corpus  # noqa: E402
from bner.dictionary.matcher import Matcher  # noqa: E402
from bner.inference.combined import CombinedTagger  # noqa: E402


def scored(tagger, sentences) -> dict:
    counts = tagger.evaluate(sentences).overall
    return {"precision": round(100 * counts.precision, 2), "recall": round(100 * counts.recall, 2), "f1": round(100 * counts.f1, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--pretrained_model", required=True)
    parser.add_argument("--classifier_runs", required=True, help="a dictionary model's run folder, {seed} for the seed")
    parser.add_argument("--dictionary", required=True, help="dictionary file(s), comma-separated, the dictionary model tags with")
    parser.add_argument("--plurals", action="store_true")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--runs_dir", required=True, help="where the taggers' runs go (an existing finished run is reused)")
    parser.add_argument("--results_dir", required=True, help="where summary.json goes")
    args = parser.parse_args()

    splits = {name: corpus.read_conll(os.path.join(args.data_dir, f"{name}.conll")) for name in ("dev", "test")}
    matcher = Matcher.from_files([p for p in args.dictionary.split(",") if p], plurals=args.plurals)
    runs = []
    for seed in args.seeds:
        out = os.path.join(args.runs_dir, f"tagger-seed{seed}")
        trained = bner.train(bner.TrainConfig.from_settings(
            data_dir=args.data_dir, pretrained_model=args.pretrained_model, output_dir=out, num_train_epochs=args.epochs,
            seed=seed, export=False, progress=False))
        tagger = bner.load(trained.model_dir)
        checker = bner.load(args.classifier_runs.format(seed=seed))
        checker.matcher = matcher
        run = {"seed": seed, "tagger": out, "classifier": args.classifier_runs.format(seed=seed), "scores": {}}
        for name, model in (("tagger", tagger), ("dictionary+classifier", checker), ("union", CombinedTagger(tagger, checker, "union")),
                            ("confirm", CombinedTagger(tagger, checker, "confirm"))):
            run["scores"][name] = {split: scored(model, sentences) for split, sentences in splits.items()}
        print(seed, {k: v["test"]["f1"] for k, v in run["scores"].items()}, file=sys.stderr)
        runs.append(run)
    summary = {name: {f"{split}_{m}": round(statistics.fmean(r["scores"][name][split][m] for r in runs), 2)
                      for split in ("dev", "test") for m in ("precision", "recall", "f1")}
               for name in runs[0]["scores"]}
    write_result({"date": datetime.date.today().isoformat(), "data_dir": args.data_dir, "dictionary": args.dictionary,
                  "plurals": args.plurals, "epochs": args.epochs, "runs": runs, "summary": summary},
                 os.path.join(args.results_dir, "summary.json"))


if __name__ == "__main__":
    main()
