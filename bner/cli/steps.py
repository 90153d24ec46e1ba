"""The steps both command lines run besides training: evaluate, predict, export, show.

``python -m bner.ner.task`` and ``bner <verb>`` are shells over these and :func:`bner.train`;
each function here is a few lines over :class:`bner.inference.tagger.Tagger` and writes its files.
"""

from __future__ import annotations

from collections.abc import Callable

from bner import io
from bner.config import ConfigError
from bner.data import corpus
from bner.folders import run_folder
from bner.folders.locate import locate
from bner.folders.run_folder import read_record
from bner.model.metadata import read_metadata
from bner.training.recipe import evaluate_splits


def check_model_window(model_dir: str, max_seq_length: int | None) -> None:
    """Refuse a window longer than the trained model's positions, from its metadata (no TensorFlow)."""
    if max_seq_length is None:
        return
    kind, folder = locate(model_dir)
    if kind == "dictionary":
        raise ConfigError(f"{model_dir}: a compiled dictionary has no window (--max_seq_length applies to a trained model)")
    positions = read_metadata(folder).encoder.max_positions
    if max_seq_length > positions:
        raise ConfigError(f"--max_seq_length {max_seq_length} is longer than the model's {positions} positions")
    if max_seq_length < 3:
        raise ConfigError(f"--max_seq_length={max_seq_length}: must be at least 3 ([CLS], one piece, [SEP])")


def evaluate_files(tagger, data_dir: str, output_dir: str, say: Callable[[str], None] = print,
                   columns: str | None = None) -> dict[str, dict]:
    """Score dev.conll and test.conll of ``data_dir``; results and test_results.tsv go to ``output_dir``."""
    splits = {}
    for name in ("dev", "test"):
        path = io.join(data_dir, f"{name}.conll")
        if io.exists(path):
            splits[name] = corpus.read_conll(path, columns=columns)
    if "test" not in splits:
        raise ConfigError(f"{io.join(data_dir, 'test.conll')}: file not found (evaluation needs test.conll in --data_dir)")
    return evaluate_splits(tagger, splits, output_dir, say)


def evaluation_folder(run_dir: str, data_dir: str, given: str | None = None) -> str:
    """Where evaluating ``data_dir`` writes: ``given``; the run folder for the run's own data; else
    ``<run_dir>/eval_<data folder's name>``, so another data set never overwrites the run's results."""
    if given:
        return given
    record = read_record(run_dir) or {}
    trained_on = record.get("config", {}).get("data", {}).get("data_dir")
    if trained_on is None or io.same_file(trained_on, data_dir):
        return run_dir
    name = data_dir.rstrip("/").rsplit("/", 1)[-1] or "data"
    return io.join(run_dir, f"eval_{name}")


def show_examples(tagger, sentences: list[str], say: Callable[[str], None] = print) -> None:
    """Label raw sentences and print their entities, to see a model work."""
    say(f"\npredictions of the exported model ({tagger.source}):")
    for sentence, entities in zip(sentences, tagger.predict(sentences)):
        shown = ", ".join(f"{e.text!r} {e.type} [{e.start}:{e.end}] {e.score:.2f}" for e in entities) or "(no entities)"
        say(f"  {sentence}\n    → {shown}")


def next_steps(export_path: str, say: Callable[[str], None] = print, run_dir: str | None = None) -> None:
    """What to do with a fresh export: look at the run, serve it, query it, load it from Python."""
    look = ""
    if run_dir:
        pictures = [io.join(run_dir, name) for name in run_folder.PICTURES]
        shown = [p for p in pictures if io.exists(p)]
        look = f"  less {io.join(export_path, 'README.md')}    # the model card: data, settings, scores per type, limits\n"
        if shown:
            look += f"  # pictures of the run: {' '.join(shown)}\n"
    say(
        f"\nnext:\n{look}  bner serve {export_path}    # API on :8080, web page at /, docs at /docs\n"
        "  curl -s localhost:8080/api/ner/recognize -H 'Content-Type: application/json' -d '{\"text\": \"Angela Merkel flew to Paris.\"}'\n"
        f"  python -c \"import bner; print(bner.load('{export_path}')('Angela Merkel flew to Paris.'))\""
    )
