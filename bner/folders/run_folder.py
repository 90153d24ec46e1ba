"""The run folder (``--output_dir``): what a training run writes, and whether a folder holds this run.

    run.json            the config (replayable), versions, labels, data digests, status, results
    checkpoints/        resumable training state (removed when the run finishes, unless kept)
    model/              the trained-model folder (:mod:`bner.folders.model_folder`)
    export/<name>/<n>/  export versions (:mod:`bner.folders.exports`)
    logs/               TensorBoard logs
    eval_results.*, dev_results.*, test_results.tsv, confusion.json, *.png   scores and pictures

A run may resume in its folder, or be found finished there, only when every setting that
determines the result and every data file are what they were (:func:`check_output_dir`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
from importlib import metadata as package_metadata

from bner import io
from bner.config import ConfigError, TrainConfig, path_list
from bner.data import corpus
from bner.model.metadata import NETWORK_LAYOUT

RUN_RECORD = "run.json"
CHECKPOINTS = "checkpoints"
MODEL = "model"
EXPORTS = "export"
DICTIONARY = "dictionary"  # the --dictionary files, among a run's data files
SPAN_EXAMPLES = "span_examples"  # and the --span_examples files
RESULTS_NAMES = {"dev": "dev_results", "test": "eval_results"}  # a run's own scores, by split: <name>.txt and .json
LEARNING_CURVE, PER_TYPE_F1, CONFUSION = PICTURES = ("learning_curve.png", "per_type_f1.png", "confusion.png")


def model_dir(out: str) -> str:
    """Where a run keeps its trained model."""
    return io.join(out, MODEL)


def export_dir(out: str, given: str | None = None) -> str:
    """Where a run's exports go: ``given`` (``--export_dir``), else ``<out>/export``."""
    return given or io.join(out, EXPORTS)


def check_output_paths(folders: dict[str, str | None]) -> None:
    """Each local folder to write (by flag name) can be made: the nearest existing part of its path is a
    folder (a file there would fail only after start-up)."""
    for flag, folder in folders.items():
        if folder and io.is_local(folder):
            existing = os.path.abspath(folder)
            while not os.path.exists(existing):
                existing = os.path.dirname(existing)
            if not os.path.isdir(existing):
                raise ConfigError(f"--{flag}={folder}: {existing} is a file, not a folder")


class OutputDirError(ConfigError):
    """The output folder holds another run."""


def remove_checkpoints(out: str, say) -> None:
    """A finished run needs its trained model and export, not the optimizer state to resume it."""
    before = io.folder_size(out)
    io.remove(io.join(out, CHECKPOINTS))
    after = io.folder_size(out)
    if before is not None and after is not None and before > after:
        say(f"removed the resumable checkpoints ({(before - after) / 1e6:.0f} MB; run folder now {after / 1e6:.0f} MB; "
            "--keep_checkpoints keeps them)")


def file_digests(data_dir: str, dictionary: str | None = None, span_examples: str | None = None) -> dict[str, str]:
    """SHA-256 of each of train/dev/test.conll that exists, of the ``--dictionary`` files (together)
    and of the ``--span_examples`` files (together)."""
    digests = {}
    for name in ("train", "dev", "test"):
        path = io.join(data_dir, f"{name}.conll")
        if io.exists(path):
            digests[name] = hashlib.sha256(io.read_bytes(path)).hexdigest()
    for name, setting in ((DICTIONARY, dictionary), (SPAN_EXAMPLES, span_examples)):
        if setting:
            digest = hashlib.sha256()
            for path in path_list(setting):
                digest.update(io.read_bytes(path))
            digests[name] = digest.hexdigest()
    return digests


def data_digests(data_dir: str, splits, dictionary: str | None = None, span_examples: str | None = None) -> dict[str, dict]:
    """Path, SHA-256 and counts of each data file: what the run learned from, exactly."""
    shas = file_digests(data_dir, dictionary, span_examples)
    files = {
        name: {"path": io.join(data_dir, f"{name}.conll"), "sha256": shas[name], **corpus.corpus_statistics(splits[name])}
        for name in splits if name in shas  # a span classifier may train without train.conll
    }
    for name, setting in ((DICTIONARY, dictionary), (SPAN_EXAMPLES, span_examples)):
        if setting:
            files[name] = {"path": setting, "sha256": shas[name]}
    return files


def package_versions() -> dict:
    versions = {"python": platform.python_version()}
    for name in ("bner", "keras", "keras-hub", "tensorflow", "tokenizers", "numpy", "jax"):
        try:
            versions[name] = package_metadata.version(name)
        except package_metadata.PackageNotFoundError:
            pass
    return versions


def run_record(config: TrainConfig, labels: list[str], data_scheme: str, precision: str, digests: dict, status: str) -> dict:
    """run.json: the config (replayable with ``--config``), versions, labels and data fingerprints."""
    return {
        "status": status,
        "config": config.to_json(),
        "versions": package_versions(),
        "labels": labels,
        "data_scheme": data_scheme,
        "data_files": digests,
        "seed": config.optimization.seed,
        "precision": precision,  # what precision=auto chose on this machine
        "network_layout": NETWORK_LAYOUT,  # how its checkpoints and trained model lay out the network's weights
    }


def write_record(out: str, record: dict) -> None:
    io.write_text(io.join(out, RUN_RECORD), json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")


def read_record(out: str) -> dict | None:
    path = io.join(out, RUN_RECORD)
    if not io.exists(path):
        return None
    try:
        record = json.loads(io.read_text(path))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise OutputDirError(f"{path}: not a run record ({e}); pass --overwrite_output_dir to start over") from None
    return record if isinstance(record, dict) else None


def check_output_dir(out: str, config: TrainConfig, digests: dict[str, str]) -> dict | None:
    """The earlier record of this same run in ``out``, if any; an error if ``out`` holds a different run.

    A run may resume (or be found finished) only when every setting that determines the
    result and every data file are what they were.
    """
    record = read_record(out)
    if record is None:
        if io.exists(io.join(out, CHECKPOINTS, "checkpoint.json")):
            raise OutputDirError(f"{out} holds checkpoints but no run.json: pass --overwrite_output_dir to start over")
        return None
    if "config" not in record:
        raise OutputDirError(f"{out}/run.json was written by an older bner: pass --overwrite_output_dir to start over")
    if record.get("network_layout", 1) != NETWORK_LAYOUT:
        raise OutputDirError(f"{out} holds a run of an older bner, whose checkpoints and model are laid out for KerasHub's "
                             "encoder: pass --overwrite_output_dir to start over (its exports still serve)")
    recorded = TrainConfig.from_json(record, io.join(out, RUN_RECORD))
    config = with_recorded_defaults(config, record)
    differs = recorded.differences(config)
    before = {k: v.get("sha256") for k, v in record.get("data_files", {}).items()}
    now = digests
    described = {DICTIONARY: "the dictionary", SPAN_EXAMPLES: "the span examples"}
    differs += [f"{described.get(name, name + '.conll')} (contents changed)"
                for name in sorted(set(before) | set(now)) if before.get(name) != now.get(name)]
    if differs:
        raise OutputDirError(
            f"{out} holds a run with other settings: {'; '.join(differs)}. Pass --overwrite_output_dir to start over, "
            "or the original values to resume it"
        )
    return record


# Settings whose default (None) training resolves from the encoder or the data, and records resolved.
RESOLVED_DEFAULTS = (("optimization", "learning_rate"), ("model", "document_windows"))


def with_recorded_defaults(config: TrainConfig, record: dict) -> TrainConfig:
    """``config`` with each setting left to its default (None: chosen from the encoder or the data,
    :data:`RESOLVED_DEFAULTS`) set to what the recorded run resolved it to, so the same command
    resumes the run, also one recorded before that default existed."""
    recorded = TrainConfig.from_json(record)
    for section, name in RESOLVED_DEFAULTS:
        value = getattr(getattr(recorded, section), name)
        if getattr(getattr(config, section), name) is None and value is not None:
            config = dataclasses.replace(config, **{section: dataclasses.replace(getattr(config, section), **{name: value})})
    return config


def clear_run(out: str) -> None:
    """Remove an earlier run's state (checkpoints, models, results, logs); exports stay, as versions."""
    results = [f"{name}{ext}" for name in RESULTS_NAMES.values() for ext in (".txt", ".json")]
    for name in (CHECKPOINTS, MODEL, "logs", RUN_RECORD, *results, "test_results.tsv", "confusion.json", *PICTURES):
        io.remove(io.join(out, name))
