"""Find the model a path names: an export version, a folder of versions, a trained-model folder,
a run folder holding either, or an export's ``metadata.json``; local or ``gs://``.

Training, :func:`bner.load`, the server, Beam and the command lines all find models here.
"""

from __future__ import annotations

import os

from bner import io
from bner.dictionary.matcher import SETTINGS_FILE as DICTIONARY_SETTINGS
from bner.folders import exports, model_folder, run_folder

EXPECTED = ("expected an export version with saved_model.pb and metadata.json, a folder of numbered versions, "
            "a trained-model folder with model.weights.h5, a run folder holding one of those, "
            "or a compiled dictionary (bner dictionary compile)")


def run_of(path: str) -> str:
    """The run folder ``path`` belongs to: the run itself, its ``model`` folder, or one of its export versions."""
    path = str(path).rstrip("/") or "/"
    if model_folder.is_model_folder(run_folder.model_dir(path)):
        return path
    candidates = []
    if model_folder.is_model_folder(path):
        candidates.append(os.path.dirname(path) if io.is_local(path) else path.rsplit("/", 1)[0])
    kind, folder = ("", "")
    try:
        kind, folder = locate(path)
    except FileNotFoundError:
        pass
    if kind == "export":  # <run>/export/<model_name>/<version>
        up = folder
        for _ in range(3):
            up = os.path.dirname(up) if io.is_local(up) else up.rsplit("/", 1)[0]
        candidates.append(up)
    for candidate in candidates:
        if model_folder.is_model_folder(run_folder.model_dir(candidate)):
            return candidate
    raise FileNotFoundError(f"{path}: not a run folder (one holding model/ and run.json), nor a trained model or export "
                            "inside one; pass the run's --output_dir")


def locate(path: str) -> tuple[str, str]:
    """``("export", version folder)``, ``("model", trained-model folder)`` or ``("dictionary",
    compiled dictionary folder)`` for ``path``.

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
    if io.exists(io.join(path, DICTIONARY_SETTINGS)):
        return "dictionary", path
    if exports.versions(path):
        return "export", exports.latest_export(path)
    # A run folder's export folder, or the export folder itself (<export_dir>: its model names hold the versions).
    for export_dir in (io.join(path, run_folder.EXPORTS), path):
        if io.exists(export_dir) and (not io.is_local(export_dir) or os.path.isdir(export_dir)):
            for name in io.listdir(export_dir):
                if exports.versions(io.join(export_dir, name)):
                    return "export", exports.latest_export(io.join(export_dir, name))
    if model_folder.is_model_folder(run_folder.model_dir(path)):
        return "model", run_folder.model_dir(path)
    if not io.exists(path):
        raise FileNotFoundError(f"{path}: no such file or folder")
    raise FileNotFoundError(f"{path}: not a bner model ({EXPECTED})")
