"""The steps both command lines run besides training: evaluate, predict, export, show.

``python -m bner.ner.task`` and ``bner <verb>`` are shells over these and :func:`bner.train`;
each function here is a few lines over :class:`bner.tagger.Tagger` and writes its files.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

from bner import corpus, io
from bner.config import ConfigError


def check_model_window(model_dir: str, max_seq_length: int | None) -> None:
    """Refuse a window longer than the trained model's positions, from its metadata (no TensorFlow)."""
    from bner.metadata import read_metadata
    from bner.tagger import locate

    if max_seq_length is None:
        return
    _, folder = locate(model_dir)
    positions = read_metadata(folder).encoder.max_position_embeddings
    if max_seq_length > positions:
        raise ConfigError(f"--max_seq_length {max_seq_length} is longer than the model's {positions} positions")
    if max_seq_length < 3:
        raise ConfigError(f"--max_seq_length={max_seq_length}: must be at least 3 ([CLS], one piece, [SEP])")


def evaluate_files(tagger, data_dir: str, output_dir: str, say: Callable[[str], None] = print) -> dict[str, dict]:
    """Score dev.conll and test.conll of ``data_dir``; results and test_results.tsv go to ``output_dir``."""
    from bner.training import evaluate_splits

    splits = {}
    for name in ("dev", "test"):
        path = io.join(data_dir, f"{name}.conll")
        if io.exists(path):
            splits[name] = corpus.read_conll(path)
    if "test" not in splits:
        raise ConfigError(f"{io.join(data_dir, 'test.conll')}: file not found (evaluation needs test.conll in --data_dir)")
    return evaluate_splits(tagger, splits, output_dir, say)


def predict_file(tagger, path: str, output: str | None, batch_size: int | None = None, progress: bool = False) -> str:
    """Label a ``.conll`` file (CoNLL out, in the training data's scheme) or plain text, one text a line (JSONL out).

    ``output`` is a path, or ``-``/None for standard output. Returns where the predictions went.
    """
    if path.endswith(".conll"):
        sentences = corpus.read_conll(path, require_tags=False)
        tags = tagger.tag([list(s.words) for s in sentences])
        rows = [[(w, t) for w, t in zip(s.words, sentence_tags)] for s, sentence_tags in zip(sentences, tags)]
        text = corpus.format_conll(rows)
    else:
        try:
            lines = io.read_text(path).splitlines()
        except FileNotFoundError:
            raise ConfigError(f"{path}: file not found") from None
        except UnicodeDecodeError as e:
            raise ConfigError(f"{path}: expected UTF-8 text ({e.reason})") from None
        entities = tagger.predict(lines, batch_size=batch_size, progress=progress)
        records = [
            json.dumps({"text": line, "entities": [e.as_dict() for e in found]}, ensure_ascii=False)
            for line, found in zip(lines, entities)
        ]
        text = "\n".join(records) + ("\n" if records else "")
    if output in (None, "-"):
        sys.stdout.write(text)
        sys.stdout.flush()
        return "standard output"
    io.write_text(output, text)
    return output


def show_examples(tagger, sentences: list[str], say: Callable[[str], None] = print) -> None:
    """Label raw sentences and print their entities, to see a model work."""
    say(f"\npredictions of the exported model ({tagger.source}):")
    for sentence, entities in zip(sentences, tagger.predict(sentences)):
        shown = ", ".join(f"{e.text!r} {e.type} [{e.start}:{e.end}] {e.score:.2f}" for e in entities) or "(no entities)"
        say(f"  {sentence}\n    → {shown}")


def next_steps(export_path: str, say: Callable[[str], None] = print) -> None:
    """What to do with a fresh export: serve it, query it, load it from Python."""
    say(
        f"\nnext:\n  bner serve {export_path}\n"
        "  curl -s localhost:8080/api/ner/recognize -H 'Content-Type: application/json' -d '{\"text\": \"Angela Merkel flew to Paris.\"}'\n"
        f"  python -c \"import bner; print(bner.load('{export_path}')('Angela Merkel flew to Paris.'))\""
    )
