#!/usr/bin/env python3
"""Served entities against word-level evaluation, on the same model and test set.

Each test sentence's words are joined with single spaces into raw text and sent through
the HTTP API (the real FastAPI app, in-process backend). The returned character spans are
mapped back to words, scored against the gold tags with conlleval's rules, and compared
with ``--do_eval``'s figures for the same export. The gap shows what raw-text
segmentation costs against CoNLL's own word boundaries.

    python bench/serve_vs_eval.py --run_dir runs/wnut17 --test_file ../shared/data/wnut17/test.conll

With ``--documents`` each document (the sentences between ``-DOCSTART-`` lines) is sent as
one raw text, its sentences joined by single spaces: the server splits it into sentences
itself and, for a model trained with ``--context_words``, gives each its neighbours as
context. This measures train/serve consistency where context matters (NCBI-disease):

    python bench/serve_vs_eval.py --run_dir runs/ncbi --test_file ../shared/data/ncbi_disease/test.conll --documents
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import sys

from bner.environment import configure_environment

configure_environment()

from fastapi.testclient import TestClient  # noqa: E402

from bner.data import corpus  # noqa: E402
from bner.folders import exports as export  # noqa: E402
from bner.inference import evaluate  # noqa: E402
from bner.serving.app import create_app  # noqa: E402
from bner.serving.settings import ServingSettings  # noqa: E402


def spans_to_word_tags(words: list[str], entities: list[dict]) -> list[str]:
    """Entities given as character spans of ``" ".join(words)`` → IOB2 tags over ``words``."""
    starts, position = [], 0
    for word in words:
        starts.append(position)
        position += len(word) + 1
    spans = []
    for e in entities:
        first = bisect.bisect_right(starts, e["start"]) - 1
        last = bisect.bisect_right(starts, e["end"] - 1) - 1
        spans.append(corpus.Span(e["type"], first, last + 1))
    # Overlaps cannot occur (served entities are disjoint); entities inside one word merge.
    merged: list[corpus.Span] = []
    for span in sorted(spans, key=lambda s: s.start):
        if merged and span.start < merged[-1].end:
            continue
        merged.append(span)
    return corpus.spans_to_tags(merged, len(words), "IOB2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run_dir", required=True, help="a bner --output_dir with export/ and eval_results.json")
    parser.add_argument("--test_file", required=True)
    parser.add_argument("--documents", action="store_true", help="send each document as one text (context models split it)")
    parser.add_argument("--output_json", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "serve_vs_eval.json"))
    args = parser.parse_args()
    model_dir = export.latest_export(os.path.join(args.run_dir, "export", "bner"))
    gold = corpus.read_conll(args.test_file)
    # One request unit: a sentence, or with --documents all sentences of a document.
    units = [[s] for s in gold] if not args.documents else [
        [s for s in gold if s.document == d] for d in sorted({s.document for s in gold}, key=[s.document for s in gold].index)]
    texts = [" ".join(w for s in unit for w in s.words) for unit in units]
    app = create_app(ServingSettings(model_dir=model_dir, max_text_chars=1_000_000, max_pieces=1_000_000))
    predicted = []
    step = 1 if args.documents else 64
    with TestClient(app) as client:
        for i in range(0, len(texts), step):
            response = client.post("/api/ner/recognize", json={"texts": texts[i : i + step]})
            response.raise_for_status()
            for unit, result in zip(units[i : i + step], response.json()["results"]):
                tags = spans_to_word_tags([w for s in unit for w in s.words], result["entities"])
                for s in unit:  # back to sentences: an entity across a sentence boundary counts as conlleval would split it
                    predicted.append(tags[: len(s)])
                    tags = tags[len(s):]
    served = evaluate.score([s.tags for s in gold], predicted)
    with open(os.path.join(args.run_dir, "eval_results.json")) as f:
        evaluated = json.load(f)
    result = {
        "run_dir": args.run_dir,
        "export": model_dir,
        "test_file": args.test_file,
        "sentences": len(gold),
        "requests": "one per document" if args.documents else "64 sentences each",
        "served": {k: served.as_dict()[k] for k in ("precision", "recall", "f1", "gold", "predicted", "correct")},
        "evaluated": {k: evaluated[k] for k in ("precision", "recall", "f1", "gold", "predicted", "correct")},
        "f1_gap_points": round(100 * (evaluated["f1"] - served.f1), 2),
    }
    os.makedirs(os.path.dirname(args.output_json), exist_ok=True)
    with open(args.output_json, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))
    print(f"served F1 {100 * served.f1:.2f} vs evaluated {100 * evaluated['f1']:.2f}: gap {result['f1_gap_points']} points")
    sys.exit(0)


if __name__ == "__main__":
    main()
