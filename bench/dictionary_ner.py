#!/usr/bin/env python3
"""Dictionary NER alone, scored on a corpus's dev and test files with conlleval's rules.

Each dictionary is compiled (case-insensitive) and tags dev.conll and test.conll through
``bner.load(compiled)``, the path ``bner evaluate`` takes; overlaps resolve longest first.
Besides precision, recall and F1, it reports the candidates: every match before overlaps are
resolved, how many there are, and how many gold mentions one of them covers exactly with the
gold type (the most a classifier that only accepts or rejects candidates could recall).

Dictionaries: ``--dictionary NAME=FILE`` (any number), ``--harvest`` (the mentions of
train.conll and dev.conll, with English plurals), and with both, their union.

    python bench/dictionary_ner.py --data_dir ../shared/data/ncbi_disease \
        --dictionary mesh=../shared/data/mesh_diseases/dictionary.tsv --harvest \
        --output_json bench/results/dictionary_ner_ncbi_disease.json
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
from common import write_result  # noqa: E402

import bner  # noqa: E402
from bner.data import corpus  # noqa: E402
from bner.dictionary import names as dictionary_names  # noqa: E402
from bner.dictionary.matcher import Matcher  # noqa: E402


def candidate_counts(matcher: Matcher, sentences) -> dict:
    """Candidates (all matches) and the gold mentions one of them covers exactly, with the gold type among its types."""
    candidates = covered = gold = 0
    for s in sentences:
        matches = matcher.match_words(s.words)
        candidates += len(matches)
        spans = {(m.start, m.end): {t for t, _ in matcher.entries(m.key)} for m in matches}
        for span in corpus.entity_spans(s.tags):
            gold += 1
            covered += span.type in spans.get((span.start, span.end), ())
    return {"candidates": candidates, "gold": gold, "gold_covered": covered,
            "candidate_recall": round(covered / gold, 4) if gold else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", required=True, help="a folder with train.conll, dev.conll and test.conll")
    parser.add_argument("--dictionary", action="append", default=[], metavar="NAME=FILE", help="a dictionary TSV to score")
    parser.add_argument("--harvest", action="store_true", help="also score the mentions of train and dev (with plurals)")
    parser.add_argument("--output_json", required=True)
    args = parser.parse_args()

    splits = {name: corpus.read_conll(os.path.join(args.data_dir, f"{name}.conll")) for name in ("train", "dev", "test")}
    result = {"date": datetime.date.today().isoformat(), "data_dir": args.data_dir, "fold_case": True,
              "overlaps": "longest first", "dictionaries": {}}
    with tempfile.TemporaryDirectory() as tmp:
        sources: dict[str, tuple[list[str], bool]] = {}
        for given in args.dictionary:
            name, _, path = given.partition("=")
            sources[name] = ([path], False)
        if args.harvest:
            harvested = os.path.join(tmp, "harvested.tsv")
            dictionary_names.write_names(dictionary_names.harvest(splits["train"] + splits["dev"]), harvested)
            sources["harvested"] = ([harvested], True)
            if args.dictionary:
                sources["union"] = ([p for paths, _ in sources.values() for p in paths], True)
        for name, (paths, plurals) in sources.items():
            started = time.perf_counter()
            matcher = Matcher.from_files(paths, plurals=plurals)
            compile_s = time.perf_counter() - started
            folder = os.path.join(tmp, name)
            matcher.save(folder)
            tagger = bner.load(folder)
            entry = {"files": [p if p.startswith("..") or not p.startswith(tmp) else "harvested from train+dev" for p in paths],
                     "plurals": plurals, "names": matcher.names, "keys": len(matcher), "compile_s": round(compile_s, 2)}
            for split in ("dev", "test"):
                scores = tagger.evaluate(splits[split]).overall
                entry[split] = {"precision": round(100 * scores.precision, 2), "recall": round(100 * scores.recall, 2),
                                "f1": round(100 * scores.f1, 2), **candidate_counts(matcher, splits[split])}
            result["dictionaries"][name] = entry
            print(f"{name}: test P/R/F1 {entry['test']['precision']}/{entry['test']['recall']}/{entry['test']['f1']}, "
                  f"candidates cover {100 * entry['test']['candidate_recall']:.1f}% of gold", file=sys.stderr)
    write_result(result, args.output_json)


if __name__ == "__main__":
    main()
