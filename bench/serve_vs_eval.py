#!/usr/bin/env python3
"""Served entities against word-level evaluation, on the same model and test set.

Each test sentence's words are joined with single spaces into raw text and sent through
the HTTP API (the real FastAPI app, in-process backend). The returned character spans are
mapped back to words, scored against the gold tags with conlleval's rules, and compared
with ``--do_eval``'s figures for the same export. The gap shows what raw-text
segmentation costs against CoNLL's own word boundaries.

    python bench/serve_vs_eval.py --run_dir runs/wnut17 --test_file ../shared/data/wnut17/test.conll

With ``--documents`` each document (the sentences between ``-DOCSTART-`` lines) is sent as
one raw text: the server splits it into sentences itself (a model trained with
``--context_words`` gives each its neighbours as context), or, for a model trained with
``--document_windows``, tags it whole. ``--join`` says how its sentences are joined, one or
more ways in one run: ``spaces`` (single spaces), ``lines`` (a line each) and ``bare`` (single
spaces, with each sentence's final ``.``, ``!`` or ``?`` removed, from the text and from the
gold words alike). Each way is scored against ``--do_eval``'s figure and against the library's
word-level evaluation of the very words sent (``bner.load(export).evaluation``, documents given):

    python bench/serve_vs_eval.py --run_dir runs/ncbi --test_file ../shared/data/ncbi_disease/test.conll \\
        --documents --join spaces lines bare
"""

from __future__ import annotations

import argparse
import bisect
import dataclasses
import json
import os

from bner.environment import configure_environment

configure_environment()

from fastapi.testclient import TestClient  # noqa: E402

import bner  # noqa: E402
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


SENTENCE_ENDS = {".", "!", "?"}
JOINS = {"spaces": " ", "lines": "\n", "bare": " "}


def bare(sentence: corpus.Sentence) -> corpus.Sentence:
    """The sentence without its final ., ! or ? (if it has one and more words)."""
    if len(sentence.words) > 1 and sentence.words[-1] in SENTENCE_ENDS:
        return dataclasses.replace(sentence, words=sentence.words[:-1], tags=sentence.tags[:-1])
    return sentence


def served_tags(client: TestClient, units: list[list[corpus.Sentence]], separator: str, step: int) -> list[list[str]]:
    """Each unit sent as one raw text (its sentences joined by ``separator``); the served entities as
    IOB2 tags of each sentence's words."""
    texts = [separator.join(" ".join(s.words) for s in unit) for unit in units]
    predicted = []
    for i in range(0, len(texts), step):
        response = client.post("/api/ner/recognize", json={"texts": texts[i : i + step]})
        response.raise_for_status()
        for unit, result in zip(units[i : i + step], response.json()["results"]):
            # Character offsets are the same whichever one-character separator joined the sentences.
            tags = spans_to_word_tags([w for s in unit for w in s.words], result["entities"])
            for s in unit:  # back to sentences: an entity across a sentence boundary counts as conlleval would split it
                predicted.append(tags[: len(s)])
                tags = tags[len(s):]
    return predicted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run_dir", required=True, help="a bner --output_dir with export/ and eval_results.json")
    parser.add_argument("--test_file", required=True)
    parser.add_argument("--documents", action="store_true", help="send each document as one text")
    parser.add_argument("--join", nargs="+", choices=sorted(JOINS), default=["spaces"],
                        help="with --documents: how each document's sentences are joined (several: one result each)")
    parser.add_argument("--output_json", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "serve_vs_eval.json"))
    args = parser.parse_args()
    model_dir = export.latest_export(os.path.join(args.run_dir, "export", "bner"))
    test = corpus.read_conll(args.test_file)
    with open(os.path.join(args.run_dir, "eval_results.json")) as f:
        evaluated = json.load(f)
    keys = ("precision", "recall", "f1", "gold", "predicted", "correct")
    app = create_app(ServingSettings(model_dir=model_dir, max_text_chars=1_000_000, max_pieces=1_000_000, max_queued_pieces=1_000_000))
    tagger = bner.load(model_dir)
    result = {"run_dir": args.run_dir, "export": model_dir, "test_file": args.test_file, "sentences": len(test),
              "requests": "one per document" if args.documents else "64 sentences each",
              "evaluated": {k: evaluated[k] for k in keys}, "joins": {}}
    with TestClient(app) as client:
        for join in args.join if args.documents else ["spaces"]:
            gold = [bare(s) for s in test] if join == "bare" else test
            # One request unit: a sentence, or with --documents all sentences of a document.
            units = [[s] for s in gold] if not args.documents else [
                [s for s in gold if s.document == d] for d in sorted({s.document for s in gold}, key=[s.document for s in gold].index)]
            served = evaluate.score([s.tags for s in gold], served_tags(client, units, JOINS[join], 1 if args.documents else 64))
            same_words = tagger.evaluate(gold)
            result["joins"][join] = {
                "served": {k: served.as_dict()[k] for k in keys},
                "library_on_the_same_words": {k: same_words.as_dict()[k] for k in keys},
                "f1_gap_points": round(100 * (evaluated["f1"] - served.f1), 2),
                "f1_gap_to_the_same_words_points": round(100 * (same_words.f1 - served.f1), 2),
            }
            print(f"{join}: served F1 {100 * served.f1:.2f}; evaluated {100 * evaluated['f1']:.2f} (gap "
                  f"{result['joins'][join]['f1_gap_points']}), the same words in the library {100 * same_words.f1:.2f} "
                  f"(gap {result['joins'][join]['f1_gap_to_the_same_words_points']})", flush=True)
    os.makedirs(os.path.dirname(args.output_json), exist_ok=True)
    with open(args.output_json, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {args.output_json}")


if __name__ == "__main__":
    main()
