#!/usr/bin/env python3
"""ONNX Runtime against TensorFlow on real test sets: the same entities, and what int8 costs.

For each ``--export`` and its ``--data`` CoNLL file, every sentence is tagged through
``bner.load``'s shared tokenizer, windows, decoding and consistency by the export's SavedModel
(TensorFlow), its ``model.onnx`` (ONNX Runtime, float32) and, with ``--int8``, copies whose
model.onnx is quantised, made in a temporary folder (INT8_VARIANTS):

- ``int8``: what ``bner export --export_int8`` writes as model.int8.onnx (:mod:`bner.model.quantize`:
  every matrix product of the encoder, attention projections included, weights per output
  channel, activations per token, smoothed as calibrated on the run's training sentences), run
  as ``--runtime onnx-int8`` runs it;
- ``int8_per_call``: the same matrices quantised by ONNX Runtime's ``quantize_dynamic``
  (activations with one scale per model call), what bner wrote before;
- ``int8_all_per_tensor``: ``quantize_dynamic`` with its defaults on model.onnx as it is (every
  weight per tensor; the attention projections, Gemm nodes, stay float32).

It reports the sentences whose tags differ from TensorFlow's, entity F1 (conlleval's) of each,
and the seconds each took, one after the other in one process. With ``--int8``, float32 and the
int8 models also tag the file one sentence per model call, against 32 (the default): does a
sentence's answer depend on the sentences batched with it?

    python bench/runtime_equality.py --int8 \\
        --export runs/wnut17/export/bner/1 --data ../shared/data/wnut17/test.conll \\
        --export runs/ncbi/export/bner/1 --data ../shared/data/ncbi_disease/test.conll
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from common import write_result  # noqa: E402

INT8_VARIANTS = ("int8", "int8_per_call", "int8_all_per_tensor")


def quantised_copy(export: str, folder: str, variant: str) -> tuple[str, str]:
    """A copy of the export holding the ``variant`` int8 model, and the runtime that runs it.

    bner's own (``int8``) is made by the export's code, as ``bner export --export_int8`` makes it
    (model.int8.onnx, calibrated on the run's training sentences), but always kept. ONNX
    Runtime's variants replace model.onnx (and metadata.json its digest).
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from bner.folders.exports import with_int8
    from bner.model.metadata import read_metadata, write_metadata
    from bner.model.quantize import chosen_matmuls, prepared
    from bner.training.recipe import int8_samples

    target = os.path.join(folder, variant)
    shutil.copytree(export, target)
    metadata_path = os.path.join(target, "metadata.json")
    if variant == "int8":
        write_metadata(with_int8(read_metadata(metadata_path), target, lambda folder: {"kept": True}, int8_samples(print)), target)
        return target, "onnx-int8"
    with open(metadata_path, encoding="utf-8") as f:
        metadata = json.load(f)
    model = os.path.join(target, metadata["onnx"]["file"])
    if variant == "int8_per_call":
        rewritten = prepared(model, model + ".folded")
        onnx.save(rewritten, model + ".float32")
        quantize_dynamic(model + ".float32", model + ".int8", weight_type=QuantType.QInt8, per_channel=True, reduce_range=True,
                         op_types_to_quantize=["MatMul"], nodes_to_quantize=chosen_matmuls(rewritten.graph))
        os.remove(model + ".float32")
    else:
        quantize_dynamic(model, model + ".int8", weight_type=QuantType.QInt8)
    os.replace(model + ".int8", model)
    with open(model, "rb") as f:
        metadata["onnx"] = {**metadata["onnx"], "sha256": hashlib.sha256(f.read()).hexdigest(), "precision": variant}
    with open(metadata_path, "w", encoding="utf-8") as f:
        json.dump(metadata, f)
    return target, "onnx"


def compare(export: str, data: str, int8: bool) -> dict:
    import bner
    from bner.data import corpus

    sentences = corpus.read_conll(data)
    work = tempfile.mkdtemp(prefix="bner-runtimes-")
    try:
        ways = {"tensorflow": (export, "tensorflow"), "onnx": (export, "onnx")}
        if int8:
            ways.update({variant: quantised_copy(export, work, variant) for variant in INT8_VARIANTS})
        results, reference, predictions = {}, None, {}
        for name, (path, runtime) in ways.items():
            tagger = bner.load(path, runtime=runtime)
            tagger.evaluation(sentences[:8])  # warm-up, unmeasured
            started = time.perf_counter()
            scores, predicted = tagger.evaluation(sentences)
            seconds = time.perf_counter() - started
            reference = reference if reference is not None else predicted
            predictions[name] = predicted
            differing = sum(p != r for p, r in zip(predicted, reference))
            f1 = scores.as_dict()["f1"]
            results[name] = {"f1": round(100 * f1, 2), "sentences_differing_from_tensorflow": differing,
                             "seconds": round(seconds, 2), "sentences_per_second": round(len(sentences) / seconds, 1)}
            print(f"{os.path.basename(os.path.dirname(data))} {name:11s} F1 {100 * f1:6.2f}  differing sentences {differing:4d}"
                  f"  {len(sentences) / seconds:7.1f} sentences/s", flush=True)
        if int8:
            # Does a sentence's answer depend on the sentences batched with it? The same file tagged
            # one sentence per call.
            for name in ("onnx", *INT8_VARIANTS):
                alone = bner.load(ways[name][0], runtime=ways[name][1], batch_size=1).evaluation(sentences)[1]
                batched = predictions[name]
                results[name]["sentences_differing_batch_1_vs_32"] = sum(a != b for a, b in zip(alone, batched))
                print(f"{name}: {results[name]['sentences_differing_batch_1_vs_32']} sentences tagged differently "
                      "one per call than 32 per call", flush=True)
        for variant in INT8_VARIANTS if int8 else ():
            results[variant]["f1_change"] = round(results[variant]["f1"] - results["onnx"]["f1"], 2)
            results[variant]["size_mb"] = round(os.path.getsize(os.path.join(ways[variant][0], "model.onnx")) / 2**20, 1)
        results["fp32_size_mb"] = round(os.path.getsize(os.path.join(export, "model.onnx")) / 2**20, 1)
        return {"export": export, "data": data, "sentences": len(sentences), **results}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--export", action="append", required=True, help="an export version folder (repeat, one per --data)")
    parser.add_argument("--data", action="append", required=True, help="its CoNLL test file")
    parser.add_argument("--int8", action="store_true", help="also quantised copies of model.onnx (bner's int8 and ONNX Runtime's)")
    parser.add_argument("--output_json", default=os.path.join(HERE, "results", "runtime_equality.json"))
    args = parser.parse_args()
    if len(args.export) != len(args.data):
        parser.error("give one --data for each --export")
    from bner.environment import machine_facts

    result = {
        "benchmark": "entities of ONNX Runtime (float32, int8) against TensorFlow, same exports and test files",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_facts(),
        "load_average_before": os.getloadavg(),
        "runs": [compare(e, d, args.int8) for e, d in zip(args.export, args.data)],
    }
    write_result(result, args.output_json)


if __name__ == "__main__":
    main()
