"""The versioned SavedModel that TensorFlow Serving and bner's server load.

Layout: ``<export_dir>/<model_name>/<version>/`` holding ``saved_model.pb``,
``variables/``, ``metadata.json``, ``tokenizer.json`` and the model card ``README.md``. The version folder is built
under a temporary name and renamed when complete (TF Serving ignores non-numeric
folder names, so it never loads a half-written version).

The serving signature ``serving_default`` takes int32 ``input_ids``, ``attention_mask``
and ``token_type_ids`` of shape ``[batch, length]`` (any batch, any length up to the
encoder's maximum) and returns per-piece ``label_ids`` (int32), ``scores`` (float32,
the probability of the chosen label) and ``logits``.

Beside it, ``model.onnx`` computes the same ``logits`` from the same three inputs, for ONNX
Runtime (bner's light install serves it without TensorFlow). It is converted by tf2onnx from
the same network built with operators ONNX has (erf-based GELU: TensorFlow's uses erfc, which
ONNX lacks) and LayerNorms in the form ONNX Runtime fuses; ``metadata.json`` names it with its
opset and SHA-256.

On request (``int8_check``), ``model.int8.onnx`` too: an int8 copy of model.onnx
(:mod:`bner.model.quantize`), faster on CPUs but not exact. It is kept only if the check,
which tags the run's dev and test files with both, finds its F1 within budget; metadata.json
and the model card say what the check measured either way.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from collections.abc import Callable

from bner import io
from bner.dictionary.matcher import copy_compiled
from bner.errors import first_line
from bner.folders import model_folder
from bner.folders.model_card import CARD_FILE
from bner.folders.model_card import render as render_card
from bner.model.metadata import INPUTS, METADATA_FILE, SIGNATURE, TOKENIZER_FILE, read_metadata, write_metadata
from bner.model.quantize import QUANTIZATION

ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
ONNX_OPSET = 17  # ONNX Runtime 1.14 and later run it


def is_export(folder: str) -> bool:
    """A complete export version: its SavedModel and its metadata.json (published last) are there."""
    return io.exists(io.join(folder, "saved_model.pb")) and io.exists(io.join(folder, METADATA_FILE))


def versions(model_base: str) -> list[int]:
    """Complete versions under ``<export_dir>/<model_name>``.

    Temporary names are not numbers, and a version still being copied into an object
    store has no ``metadata.json`` yet (it is copied last).
    """
    return [n for n in _numbered(model_base) if io.exists(io.join(model_base, str(n), METADATA_FILE))]


def _numbered(model_base: str) -> list[int]:
    if not io.exists(model_base) or (io.is_local(model_base) and not os.path.isdir(model_base)):
        return []
    return sorted(int(n) for n in io.listdir(model_base) if re.fullmatch(r"\d+", n))


def next_version(model_base: str) -> int:
    """One above every numbered folder, complete or still being written."""
    return max(_numbered(model_base), default=0) + 1


def model_digest(model_dir: str) -> str:
    """SHA-256 of a trained-model folder's weights: the same digest means the same model."""
    return hashlib.sha256(io.read_bytes(io.join(model_dir, model_folder.WEIGHTS_FILE))).hexdigest()


def existing_export(model_dir: str, export_dir: str, model_name: str, int8_budget: float | None = None) -> str | None:
    """The latest version already exported from exactly this model, if there is one (and it has its ONNX model:
    an export written before bner wrote model.onnx is exported again). With ``int8_budget`` (an int8 model
    asked for), only one holding an int8 model made as bner makes it now, whose measured F1 changes are all
    within that budget."""
    found = versions(io.join(export_dir, model_name))
    if not found:
        return None
    latest = io.join(export_dir, model_name, str(found[-1]))
    try:
        metadata = read_metadata(latest)
    except ValueError:
        return None
    exported = metadata.training.get("export", {}).get("model_sha256")
    if exported != model_digest(model_dir) or not metadata.onnx:
        return None
    if int8_budget is None:
        return latest
    measured = (metadata.onnx_int8.get("check") or {}).get("splits") or {}
    within = bool(metadata.onnx_int8 and measured) and all(m.get("f1_change", -1e9) >= -int8_budget for m in measured.values())
    within = within and metadata.onnx_int8.get("quantization") == QUANTIZATION  # an int8 model made as bner makes it now
    return latest if within else None


def export_tagger(model_dir: str, export_dir: str, model_name: str, version: int | None = None,
                  int8_check: Callable[[str], dict] | None = None,
                  int8_samples: Callable[[str], tuple[list[dict], int]] | None = None) -> str:
    """Export the tagger saved in ``model_dir``; returns the version folder's path.

    With ``int8_check``, an int8 copy of model.onnx is written too, and ``int8_check(folder)``
    decides whether it stays: given the version folder (complete, not yet published), it
    returns what it measured, with ``kept`` true or false. ``int8_samples(folder)`` gives the
    model inputs its smoothing is calibrated on (none: not smoothed) and how many sentences they hold.
    """
    import keras
    import tensorflow as tf

    if keras.backend.backend() != "tensorflow":
        raise RuntimeError("exporting a SavedModel needs KERAS_BACKEND=tensorflow (weights trained under JAX load there)")
    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy("float32")  # exports compute in float32 on any serving hardware
    try:
        model, metadata, tokenizer = model_folder.load(model_dir)
    finally:
        keras.mixed_precision.set_dtype_policy(previous)
    module = serving_module(model)
    base = io.join(export_dir, model_name)
    version = version or next_version(base)
    final = io.join(base, str(version))
    export_facts = {"model_name": model_name, "version": version, "signature": SIGNATURE, "inputs": list(INPUTS),
                    "model_sha256": model_digest(model_dir)}
    exported = dataclasses.replace(metadata, training={**metadata.training, "export": export_facts})
    # metadata.json is published last: readers count a version only once it is there.
    with io.staged_directory(final, publish_last=("saved_model.pb", METADATA_FILE)) as staging:
        tf.saved_model.save(module, staging, signatures={SIGNATURE: module.serve})
        exported = dataclasses.replace(exported, onnx=write_onnx(model_dir, metadata, staging))
        tokenizer.save(os.path.join(staging, TOKENIZER_FILE))
        if metadata.spans:
            copy_compiled(io.within(model_dir, metadata.spans["dictionary"]), os.path.join(staging, metadata.spans["dictionary"]))
        if int8_check is not None:
            exported = with_int8(exported, staging, int8_check, int8_samples)
        write_metadata(exported, staging)
        io.write_text(os.path.join(staging, CARD_FILE), render_card(exported, final))
    return final


def write_onnx(model_dir: str, metadata, folder: str) -> dict:
    """Write ``model.onnx`` (float32 logits) into ``folder``; what metadata.json says of it."""
    import keras
    import tensorflow as tf
    import tf2onnx

    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy("float32")
    try:
        network = model_folder.load_network(model_dir, metadata, portable=True)
    finally:
        keras.mixed_precision.set_dtype_policy(previous)

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32, name=n) for n in INPUTS])
    def logits(input_ids, attention_mask, token_type_ids):
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        return {"logits": network(inputs, training=False)}

    proto, _ = tf2onnx.convert.from_function(logits, input_signature=logits.input_signature, opset=ONNX_OPSET)
    restore_means(proto.graph)
    data = proto.SerializeToString()
    with open(os.path.join(folder, ONNX_FILE), "wb") as f:
        f.write(data)
    return {"file": ONNX_FILE, "opset": ONNX_OPSET, "sha256": hashlib.sha256(data).hexdigest(), "inputs": list(INPUTS),
            "outputs": ["logits"], "precision": "float32"}


def with_int8(metadata, folder: str, check: Callable[[str], dict], samples: Callable[[str], tuple[list[dict], int]] | None = None):
    """``metadata`` with ``model.int8.onnx`` written into ``folder`` beside model.onnx, if ``check`` keeps it.

    ``samples(folder)`` gives the model inputs the int8 model's smoothing is calibrated on (and how
    many sentences they hold). What the check found goes into the export's facts
    (``training.export.int8``) either way, and into ``onnx_int8`` when the file stays.
    """
    from bner.model.quantize import SMOOTHING, quantize

    path = os.path.join(folder, INT8_FILE)
    facts = {**metadata.onnx, "file": INT8_FILE, "precision": "int8", "quantization": QUANTIZATION}
    try:
        write_metadata(metadata, folder)  # the float32 export, loadable as bner.load reads it, gives the samples
        why = ""
        try:
            batches, sentences = samples(folder) if samples is not None else ([], 0)
        except Exception as e:  # noqa: BLE001 — calibration is optional: without it, no smoothing
            batches, sentences, why = [], 0, f"its training sentences could not be tagged ({first_line(e)})"
        done = quantize(os.path.join(folder, metadata.onnx["file"]), path, batches)
        facts["sha256"] = io.file_sha256(path)
        facts["smoothing"] = {"alpha": SMOOTHING, "inputs_smoothed": done["inputs_smoothed"], "sample_sentences": sentences,
                              **({"not_calibrated": why} if why else {})}
        candidate = dataclasses.replace(metadata, onnx_int8=facts)
        write_metadata(candidate, folder)  # the check loads the folder as bner.load does
        verdict = check(folder)
    except Exception as e:  # noqa: BLE001 — any failure of the optional int8 model leaves the float32 export whole
        verdict = {"kept": False, "reason": f"it could not be made or run ({first_line(e)})"}
    export = {**metadata.training.get("export", {}), "int8": verdict}
    training = {**metadata.training, "export": export}
    if verdict.get("kept"):
        return dataclasses.replace(candidate, onnx_int8={**facts, "check": verdict}, training=training)
    if os.path.exists(path):
        os.remove(path)
    return dataclasses.replace(metadata, onnx_int8={}, training=training)


def restore_means(graph) -> None:
    """Write tf2onnx's GlobalAveragePool nodes back as the means over the last axis they were.

    tf2onnx turns a mean over axis 2 of a ``[batch, length, hidden]`` tensor into GlobalAveragePool
    (the same values); ONNX Runtime fuses a LayerNorm only where it finds ReduceMean. Every mean in
    bner's network is a LayerNorm's, over the last axis, so each such node becomes that again.
    """
    from onnx import helper

    for node in graph.node:
        if node.op_type == "GlobalAveragePool" and node.domain == "":
            node.op_type = "ReduceMean"
            node.attribute.extend([helper.make_attribute("axes", [-1]), helper.make_attribute("keepdims", 1)])


def serving_module(model):
    """A plain ``tf.Module`` holding only the model's variables: half the size of Keras' own export."""
    import tensorflow as tf

    class Serving(tf.Module):
        def __init__(self):
            super().__init__()
            self.weights = [w.value if hasattr(w, "value") else w for w in model.weights]

        @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32, name=n) for n in INPUTS])
        def serve(self, input_ids, attention_mask, token_type_ids):
            logits = model(
                {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids},
                training=False,
            )
            probabilities = tf.nn.softmax(logits, axis=-1)
            return {
                "label_ids": tf.argmax(logits, axis=-1, output_type=tf.int32),
                "scores": tf.reduce_max(probabilities, axis=-1),
                "logits": logits,
            }

    return Serving()


def latest_export(model_base: str) -> str:
    """The highest-numbered complete version under ``<export_dir>/<model_name>``."""
    found = versions(model_base)
    if not found:
        raise FileNotFoundError(f"{model_base}: no exported version found")
    return io.join(model_base, str(found[-1]))
