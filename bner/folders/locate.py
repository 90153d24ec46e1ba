"""Find the model a path names: an export version, a folder of versions, a trained-model folder,
a run folder holding either, or an export's ``metadata.json``; local or ``gs://``.

Training, :func:`bner.load`, the server, Beam and the command lines all find models here.
"""

from __future__ import annotations

import os

from bner import io
from bner.folders import exports, model_folder, run_folder

EXPECTED = ("expected an export version with saved_model.pb and metadata.json, a folder of numbered versions, "
            "a trained-model folder with model.weights.h5, or a run folder holding one of those")


def locate(path: str) -> tuple[str, str]:
    """``("export", version folder)`` or ``("model", trained-model folder)`` for ``path``.

    A run folder gives its latest export if it has one, else its trained model.
    """
    path = str(path).rstrip("/") or "/"
    if path.endswith(".json"):  # an export's metadata.json (METADATA_FILE), as the original client took it
        return "export", os.path.dirname(path)
    if io.is_local(path) and os.path.isfile(path):
        raise FileNotFoundError(f"{path}: a file, not a bner model ({EXPECTED})")
    if exports.is_export(path):
        return "export", path
    if model_folder.is_model_folder(path):
        return "model", path
    if exports.versions(path):
        return "export", exports.latest_export(path)
    run_exports = io.join(path, run_folder.EXPORTS)
    if io.exists(run_exports):
        for name in io.listdir(run_exports):
            if exports.versions(io.join(run_exports, name)):
                return "export", exports.latest_export(io.join(run_exports, name))
    if model_folder.is_model_folder(run_folder.model_dir(path)):
        return "model", run_folder.model_dir(path)
    if not io.exists(path):
        raise FileNotFoundError(f"{path}: no such file or folder")
    raise FileNotFoundError(f"{path}: not a bner model ({EXPECTED})")
