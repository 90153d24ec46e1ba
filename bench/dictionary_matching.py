#!/usr/bin/env python3
"""Dictionary matching at scale: compile time and memory for a million names, load time, and
matching throughput in MB/s of raw text. Compile memory is the growth of this process (what compiling needs at its peak); load time and memory are a fresh process loading the saved dictionary, as a server does.

The names: a real vocabulary (``--dictionary``, e.g. the MeSH disease names) topped up to
``--names`` with made-up names of one to four pseudo-words (so most are distinct keys, the
hard case for memory). The text: a CoNLL file's sentences joined into raw text, one document
a line (``--text``, e.g. NCBI-disease test), repeated to at least ``--text_mb`` MB. Matching
is timed twice: from raw text (segmentation into words included, what ``bner.load(...)(text)``
does) and from words already split (a CoNLL file).

    python bench/dictionary_matching.py --dictionary ../shared/data/mesh_diseases/dictionary.tsv \
        --text ../shared/data/ncbi_disease/test.conll --output_json bench/results/dictionary_matching.json
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import random
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
from common import rss_mb, write_result  # noqa: E402

from bner.data import corpus  # noqa: E402
from bner.dictionary import names as dictionary_names  # noqa: E402
from bner.dictionary.matcher import Matcher  # noqa: E402

# A saved dictionary loaded in a fresh process, as a server loads it: its time and the memory it holds.
LOAD = """
import json, os, sys, time
sys.path.insert(0, "bench")
from common import rss_mb
from bner.dictionary.matcher import Matcher
before = rss_mb(os.getpid())
started = time.perf_counter()
matcher = Matcher.load(sys.argv[1])
print(json.dumps({"load_s": time.perf_counter() - started, "loaded_rss_mb": rss_mb(os.getpid()) - before}))
"""


def made_up_names(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    syllables = [a + b for a in "bcdfghklmnprstvz" for b in "aeiou"] + ["ine", "ase", "oma", "itis", "osis"]
    pool = {"".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))) for _ in range(50_000)}
    words = sorted(pool)
    out: set[str] = set()
    while len(out) < count:
        out.add(" ".join(rng.choice(words) for _ in range(rng.choice((1, 2, 2, 3, 3, 4)))))
    return sorted(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dictionary", help="a real dictionary TSV to start from")
    parser.add_argument("--text", required=True, help="a CoNLL file whose documents become the raw text")
    parser.add_argument("--names", type=int, default=1_000_000)
    parser.add_argument("--text_mb", type=float, default=4.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--output_json", default="bench/results/dictionary_matching.json")
    args = parser.parse_args()

    real = list(dictionary_names.read_names(args.dictionary)) if args.dictionary else []
    extra = made_up_names(max(0, args.names - len(real)), args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        tsv = os.path.join(tmp, "names.tsv")
        dictionary_names.write_names(real + [dictionary_names.Name(n, "Made", f"X:{i}") for i, n in enumerate(extra)], tsv)
        file_mb = os.path.getsize(tsv) / 1e6
        del real, extra
        gc.collect()
        before = rss_mb(os.getpid())
        started = time.perf_counter()
        matcher = Matcher.compile(dictionary_names.read_names(tsv), source=tsv)
        compile_s = time.perf_counter() - started
        gc.collect()
        compiled_mb = rss_mb(os.getpid()) - before
        started = time.perf_counter()
        matcher.save(os.path.join(tmp, "compiled"))
        save_s = time.perf_counter() - started
        saved_mb = sum(os.path.getsize(os.path.join(tmp, "compiled", f)) for f in os.listdir(os.path.join(tmp, "compiled"))) / 1e6
        del matcher
        loaded = json.loads(subprocess.run([sys.executable, "-c", LOAD, os.path.join(tmp, "compiled")], check=True,
                                           capture_output=True, text=True, cwd=os.path.dirname(HERE)).stdout)
        matcher = Matcher.load(os.path.join(tmp, "compiled"))

    sentences = corpus.read_conll(args.text)
    documents: dict[int, list[str]] = {}
    for s in sentences:
        documents.setdefault(s.document, []).append(" ".join(s.words))
    texts = [" ".join(d) for d in documents.values()]
    one_pass = sum(len(t.encode("utf-8")) for t in texts)
    repeats = max(1, round(args.text_mb * 1e6 / one_pass))
    texts = texts * repeats
    megabytes = one_pass * repeats / 1e6

    started = time.perf_counter()
    matches = sum(len(matcher.match_text(t)[1]) for t in texts)
    text_s = time.perf_counter() - started
    word_lists = [t.split(" ") for t in texts]
    started = time.perf_counter()
    for words in word_lists:
        matcher.match_words(words)
    words_s = time.perf_counter() - started

    from importlib.metadata import version

    result = {
        "date": datetime.date.today().isoformat(),
        "machine": os.uname().machine,
        "cpu": _cpu_model(),
        "ahocorasick_rs": version("ahocorasick-rs"),
        "names": matcher.names,
        "keys": len(matcher),
        "dictionary_file_mb": round(file_mb, 1),
        "compile_s": round(compile_s, 2),
        "compile_rss_mb": round(compiled_mb, 1),
        "save_s": round(save_s, 2),
        "saved_mb": round(saved_mb, 1),
        "load_s": round(loaded["load_s"], 2),
        "loaded_rss_mb": round(loaded["loaded_rss_mb"], 1),
        "text": args.text,
        "text_mb": round(megabytes, 2),
        "matches": matches,
        "raw_text_mb_per_s": round(megabytes / text_s, 2),
        "words_mb_per_s": round(megabytes / words_s, 2),
    }
    write_result(result, args.output_json)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        return ""


if __name__ == "__main__":
    main()
