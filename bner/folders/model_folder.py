"""The trained-model folder a run leaves behind (``<output_dir>/model``).

It holds ``model.weights.h5`` (Keras weights, backend-neutral), ``metadata.json`` and
``tokenizer.json`` (and a span classifier's compiled ``dictionary/``): everything evaluation,
prediction and export need. It is written
whole under a temporary name and renamed, with ``metadata.json`` last.
"""

from __future__ import annotations

import os
import tempfile
from typing import TYPE_CHECKING

from bner import io
from bner.data import features
from bner.model.metadata import METADATA_FILE, NETWORK_LAYOUT, TOKENIZER_FILE, TaggerMetadata, read_metadata, write_metadata

if TYPE_CHECKING:  # Keras loads only when a network is built: finding a model folder needs none
    import keras
    import tokenizers

WEIGHTS_FILE = "model.weights.h5"


def save(model: keras.Model, metadata: TaggerMetadata, tokenizer: tokenizers.Tokenizer, folder: str, matcher=None) -> None:
    """Write the folder atomically: weights, tokenizer.json, a span classifier's compiled
    dictionary (``matcher``, into the folder its metadata names), metadata.json."""
    with io.staged_directory(folder, publish_last=(METADATA_FILE,)) as staging:
        model.save_weights(os.path.join(staging, WEIGHTS_FILE))
        tokenizer.save(os.path.join(staging, TOKENIZER_FILE))
        if metadata.spans:
            matcher.save(os.path.join(staging, metadata.spans["dictionary"]))
        write_metadata(metadata, staging)


def load(folder: str) -> tuple[keras.Model, TaggerMetadata, tokenizers.Tokenizer]:
    """The saved network, rebuilt under the current backend and precision, with its metadata and tokenizer."""
    metadata = read_metadata(folder)
    return load_network(folder, metadata), metadata, features.read_tokenizer(io.join(folder, metadata.tokenizer_file), metadata.special_tokens)


def load_network(folder: str, metadata: TaggerMetadata, portable: bool = False) -> keras.Model:
    """The saved network; ``portable`` builds it with operators ONNX has (for an export's model.onnx)."""
    from bner.model.network import build_tagger

    if metadata.network_layout != NETWORK_LAYOUT:
        raise ValueError(
            f"{folder}: a trained model of an older bner, whose weights are laid out for KerasHub's encoder (network layout "
            f"{metadata.network_layout}), which bner no longer builds; its exports still serve. Train it again to evaluate or "
            "export it"
        )
    model = build_tagger(metadata.encoder, len(metadata.labels), portable=portable)
    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, WEIGHTS_FILE)
        with open(local, "wb") as f:
            f.write(io.read_bytes(io.join(folder, WEIGHTS_FILE)))
        try:
            model.load_weights(local)
        except Exception as e:  # noqa: BLE001 — h5py and Keras raise many types for a bad file
            raise ValueError(f"{io.join(folder, WEIGHTS_FILE)}: cannot load the weights ({e})") from None
    return model


def is_model_folder(path: str) -> bool:
    return io.exists(io.join(path, WEIGHTS_FILE)) and io.exists(io.join(path, METADATA_FILE))
