"""The model card: a ``README.md`` in every trained-model folder and every export.

Written from the model's own ``metadata.json`` (which holds the run's data files,
settings, machine, versions and dev/test scores), so a card always describes the model
beside it. Standard library only.
"""

from __future__ import annotations

from bner import io
from bner.model.metadata import FAMILY_NAMES, TaggerMetadata

CARD_FILE = "README.md"
FEW_EXAMPLES = 50  # a type with fewer training entities than this is listed under limits
WEAK_F1 = 0.5


def write_card(metadata: TaggerMetadata, folder: str) -> str:
    path = io.join(folder, CARD_FILE)
    io.write_text(path, render(metadata, folder))
    return path


def render(metadata: TaggerMetadata, folder: str) -> str:
    training, evaluation = metadata.training, metadata.evaluation
    export = training.get("export", {})
    name = export.get("model_name") or "bner model"
    title = f"{name} (version {export['version']})" if export else name
    types = metadata.entity_types
    base = metadata.pretrained.get("source", "a BERT model")
    kind = (f"A dictionary tagger for {_join(types)} whose every match a span classifier checks, the classifier"
            if metadata.spans else f"A named-entity tagger for {_join(types)}")
    sections = [
        f"# {title}\n",
        f"{kind} fine-tuned from `{base}` "
        f"(a {FAMILY_NAMES.get(metadata.encoder.family, metadata.encoder.family)} encoder, "
        f"{metadata.pretrained.get('format', 'BERT')} format) with bner {training.get('versions', {}).get('bner', '')}."
        f"{_headline(evaluation)}\n",
        _usage(metadata, folder, export),
        _results(evaluation),
        _data(training.get("data_files", {}), types),
        _settings(training.get("settings", {})),
        _training(training),
        _labels(metadata),
        _limits(metadata, training.get("data_files", {}), evaluation),
    ]
    return "\n".join(s for s in sections if s)


def _join(items: list[str]) -> str:
    return ", ".join(f"`{t}`" for t in items) if items else "no entity types"


def _pct(value) -> str:
    return f"{100 * value:.2f}" if isinstance(value, (int, float)) else "–"


def _headline(evaluation: dict) -> str:
    test = evaluation.get("test")
    if not test:
        return ""
    return f" Test entity F1 **{_pct(test['f1'])}** (precision {_pct(test['precision'])}, recall {_pct(test['recall'])})."


def _usage(metadata: TaggerMetadata, folder: str, export: dict) -> str:
    lines = ["## Use it\n", "```python", "import bner", "", f"tagger = bner.load({folder!r})",
             'print(tagger("Angela Merkel flew to Paris."))', "```\n", "Serve it (HTTP API, web page at `/`, docs at `/docs`):\n",
             "```bash", f"bner serve {folder}", "```\n"]
    if export:
        base = io.join(*folder.rstrip("/").rsplit("/", 1)[:1]) if "/" in folder.rstrip("/") else "."
        lines += [
            "In TensorFlow Serving (gRPC on 8500, REST on 8501), then with bner's API in front of it:\n",
            "```bash",
            f"docker run -p 8500:8500 -p 8501:8501 -v \"$(realpath {base})\":/models/{export['model_name']} "
            f"-e MODEL_NAME={export['model_name']} tensorflow/serving",
            f"METADATA_FILE={io.join(folder, 'metadata.json')} MODEL_NAME={export['model_name']} HOST_NAME=localhost bner serve",
            "```\n",
            f"Signature `{export.get('signature', 'serving_default')}`: int32 {', '.join(f'`{i}`' for i in export.get('inputs', []))} "
            "of shape [batch, length]; outputs per-piece `label_ids`, `scores` and `logits`. "
            "Tokenisation and label decoding are in `tokenizer.json` and `metadata.json` beside it.\n",
        ]
    if metadata.onnx:
        lines += [
            f"`{metadata.onnx['file']}` (ONNX opset {metadata.onnx['opset']}, {metadata.onnx.get('precision', 'float32')}) computes "
            "the same `logits` from the same inputs for ONNX Runtime: `bner.load` and `bner serve` run it by default where "
            "`onnxruntime` is installed, with no TensorFlow (`--runtime tensorflow` runs the SavedModel instead). Its SHA-256 "
            "is in `metadata.json`.\n",
        ]
    lines += _int8_lines(metadata)
    return "\n".join(lines)


def _int8_lines(metadata) -> list[str]:
    """What the card says of the int8 model: what it is, what it cost on the run's files, or why it was not kept."""
    check = metadata.training.get("export", {}).get("int8")
    if not check:
        return []
    splits = check.get("splits") or {}
    measured = "; ".join(
        f"on the run's {split} file ({m.get('sentences', 0):,} sentences) F1 {m.get('f1_int8', 0):.2f} against "
        f"{m.get('f1_float32', 0):.2f} in float32 ({m.get('f1_change', 0):+.2f}; {m.get('sentences_differing', 0):,} "
        "sentences tagged differently)" for split, m in splits.items())
    unmeasured = "".join(f" Its {split} file was not measured: {why}." for split, why in (check.get("not_measured") or {}).items())
    budget = check.get("budget")
    if metadata.onnx_int8:
        smoothing = metadata.onnx_int8.get("smoothing") or {}
        if smoothing.get("inputs_smoothed"):
            smoothed = (f" Before quantisation the activations of {smoothing['inputs_smoothed']} matrix-product inputs were "
                        f"smoothed into their weights (alpha {smoothing.get('alpha')}), calibrated on "
                        f"{smoothing.get('sample_sentences', 0):,} of the run's training sentences.")
        elif smoothing.get("sample_sentences"):
            smoothed = " Its activations were not smoothed: none of its matrix-product inputs could be (their weights are shared)."
        else:
            smoothed = (" Its activations were not smoothed: " + smoothing.get(
                "not_calibrated", "the run's training file was not available to calibrate on") + ".")
        return [
            f"`{metadata.onnx_int8['file']}`: {metadata.onnx_int8.get('quantization', 'int8')}.{smoothed} Faster on CPUs, "
            f"but not exact: {measured}. That is within the budget of {budget} points, so it was kept.{unmeasured} It runs "
            "only when asked for (`--runtime onnx-int8`, `BNER_RUNTIME=onnx-int8`, `bner.load(..., runtime=\"onnx-int8\")`); "
            "the scores above are float32's.\n",
        ]
    over = [split for split, m in splits.items() if m.get("f1_change", 0) < -(budget or 0)]
    reason = (f"{measured}: more than the budget of {budget} points on the {' and '.join(over)} file{'s' if len(over) > 1 else ''}"
              if over else check.get("reason", "not measured"))
    return [f"An int8 model was asked for and not kept: {reason}.{unmeasured}\n"]

def _results(evaluation: dict) -> str:
    splits = [s for s in ("dev", "test") if evaluation.get(s)]
    if not splits:
        return "## Results\n\nNot evaluated: the run had no dev or test file.\n"
    header = "| type | " + " | ".join(f"{s} P | {s} R | {s} F1" for s in splits) + " | test support |" if "test" in splits else \
        "| type | " + " | ".join(f"{s} P | {s} R | {s} F1" for s in splits) + " |"
    rule = "|---|" + "---:|" * (3 * len(splits) + (1 if "test" in splits else 0))
    types = sorted({t for s in splits for t in evaluation[s].get("per_type", {})})
    rows = []
    for t in [*types, None]:
        cells = []
        for s in splits:
            c = evaluation[s] if t is None else evaluation[s].get("per_type", {}).get(t, {})
            cells += [_pct(c.get("precision")), _pct(c.get("recall")), _pct(c.get("f1"))]
        if "test" in splits:
            c = evaluation["test"] if t is None else evaluation["test"].get("per_type", {}).get(t, {})
            cells.append(str(c.get("gold", 0)))
        label = "**all**" if t is None else f"`{t}`"
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join([
        "## Results\n",
        "Entity-level precision, recall and F1 (exact span and type, as conlleval counts them) of this model:\n",
        header, rule, *rows, "",
    ])


def _data(files: dict, types: list[str]) -> str:
    if not files:
        return ""
    rows = ["## Training data\n", "| file | sentences | documents | tokens | entities | SHA-256 |", "|---|---:|---:|---:|---:|---|"]
    for name in ("train", "dev", "test"):
        f = files.get(name)
        if f:
            rows.append(f"| `{f['path']}` | {f.get('sentences', '–')} | {f.get('documents', '–')} | {f.get('tokens', '–')} | "
                        f"{sum(f.get('entities', {}).values())} | `{f['sha256'][:16]}…` |")
    dictionary = files.get("dictionary")
    if dictionary:
        rows.append(f"| `{dictionary['path']}` (the dictionary) | – | – | – | – | `{dictionary['sha256'][:16]}…` |")
    per_type = files.get("train", {}).get("entities", {})
    if per_type:
        rows += ["", "Training entities per type: " + ", ".join(f"`{t}` {per_type.get(t, 0)}" for t in types) + "."]
    return "\n".join(rows) + "\n"


def _settings(settings: dict) -> str:
    if not settings:
        return ""
    rows = ["## Settings that determine the model\n", "| setting | value |", "|---|---|"]
    rows += [f"| `{k}` | `{v}` |" for k, v in settings.items() if v is not None]
    return "\n".join(rows) + "\n"


def _training(training: dict) -> str:
    if "steps" not in training:
        return ""
    machine = training.get("machine", {})
    hardware = machine.get("cpu", "unknown CPU")
    if machine.get("cpu_cores"):
        hardware += f", {machine['cpu_cores']} cores"
    if machine.get("accelerators"):
        hardware += "; " + ", ".join(machine["accelerators"])
    epochs = training.get("epochs_trained", training.get("epochs"))
    stopped = ""
    if training.get("stopped_early"):
        stopped = f" Stopped early after {epochs} of {training.get('epochs')} epochs: dev F1 no longer improved."
    best = training.get("best_dev_f1")
    kept = (f" The model kept is the one with the best dev F1 ({_pct(best)}, step {training.get('best_step')})."
            if best is not None else " No dev file: the model is the last step's.")
    versions = training.get("versions", {})
    warnings = "".join(f"\n**Warning:** {w}\n" for w in training.get("warnings", []))
    lines = [
        "## Training\n",
        f"{training['steps']} steps ({epochs} epochs) in {training.get('train_seconds', 0):.0f} s of optimizer steps, "
        f"{training.get('precision', 'float32')} on {training.get('backend', 'tensorflow')}, "
        f"{training.get('replicas', 1)} replica(s).{stopped}{kept}\n{warnings}",
        f"Hardware: {hardware}.",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".\n" if versions else "",
    ]
    return "\n".join(line for line in lines if line)


def _labels(metadata: TaggerMetadata) -> str:
    if metadata.spans:
        return _span_labels(metadata)
    return "\n".join([
        "## Labels\n",
        f"The training files use {metadata.data_scheme} tags; the model predicts {metadata.label_scheme} labels "
        f"({len(metadata.labels)}): {', '.join(f'`{label}`' for label in metadata.labels)}. Predicted tags are written back "
        f"in {metadata.data_scheme}. Each sentence gets the most probable tag sequence the {metadata.label_scheme} scheme "
        "allows (Viterbi over the words' label probabilities), and a name is tagged the same way throughout its document "
        "(one raw text, or a `-DOCSTART-` document of a CoNLL file) by a vote of the model's probabilities. Both are "
        "chosen where the model is loaded, not stored in it: `--decoding argmax` and `--consistent false` (or "
        "`bner.load(..., decoding=\"argmax\", consistent=False)`) turn them off.\n",
        f"Input: {'lower-cased, accents stripped' if metadata.lowercase else 'cased'}; at most {metadata.max_seq_length} word "
        "pieces per model input, longer sentences are tagged in overlapping windows (never cut)"
        + ("; trained on windows of consecutive sentences of a document, every word labelled, it tags each document "
           "(a raw text, or a `-DOCSTART-` document of a CoNLL file) whole, in overlapping windows, without splitting it "
           "into sentences" if metadata.document_windows else
           f"; each sentence sees up to {metadata.context_words} words of its document's neighbouring sentences as context "
           "(raw text is split into sentences for it)" if metadata.context_words else "; each sentence is tagged alone"
           + (" (raw text is split into sentences first, as the training data were sentences)" if metadata.split_sentences
              else " (raw text is tagged whole, windows covering a long one)"))
        + ".\n",
    ])


def _span_labels(metadata: TaggerMetadata) -> str:
    spans = metadata.spans
    shown = (f"its pieces replaced by the model's mask piece `{spans.get('mask_token')}`, so it decides from the context alone"
             if spans["masking"] == "replace" else "between the marker words `[` and `]`")
    return "\n".join([
        "## Labels\n",
        f"The model holds a compiled dictionary of {spans.get('names', 0):,} names (`{spans['dictionary']}/`). Every match of one of its names in a text is a "
        f"candidate, overlapping and nested ones included, and the classifier gives each one of its labels "
        f"{', '.join(f'`{label}`' for label in metadata.labels)}: `none` (no entity) or a type the dictionary lists for the name. "
        f"It sees the candidate in its sentence, {shown}; it reads the encoder's output there. A candidate takes its most probable "
        "listed type when that type holds more than the threshold's share of its and `none`'s probability (0.5, the arg-max, "
        "unless loaded with another: `bner.load(..., threshold=)`, `--threshold`, `BNER_THRESHOLD`). Accepted candidates that overlap "
        "are resolved longest first, then leftmost, then the more probable. Entities carry the dictionary's identifiers of their name and type. A name the dictionary lacks is never "
        "found: recall is bounded by the dictionary.\n",
        f"Input: {'lower-cased, accents stripped' if metadata.lowercase else 'cased'}; at most {metadata.max_seq_length} word "
        "pieces per candidate's input, centred on the candidate (the nearest words on each side that fit).\n",
    ])


def _limits(metadata: TaggerMetadata, files: dict, evaluation: dict) -> str:
    limits = []
    train_types = files.get("train", {}).get("entities", {})
    few = [f"`{t}` ({train_types.get(t, 0)})" for t in metadata.entity_types if train_types and train_types.get(t, 0) < FEW_EXAMPLES]
    if few:
        limits.append(f"Types with fewer than {FEW_EXAMPLES} training entities, whose scores are uncertain: {', '.join(few)}.")
    test = evaluation.get("test", {}).get("per_type", {})
    weak = [f"`{t}` ({_pct(c['f1'])})" for t, c in sorted(test.items()) if c.get("gold") and c.get("f1", 0) < WEAK_F1]
    if weak:
        limits.append(f"Types with test F1 below {_pct(WEAK_F1)}: {', '.join(weak)}; check predictions of these before relying on them.")
    unseen = sorted({t for s in ("dev", "test") for t in evaluation.get(s, {}).get("per_type", {})} - set(metadata.entity_types))
    if unseen:
        limits.append(f"Types in the evaluation data the model never saw in training (always missed): {', '.join(unseen)}.")
    limits.append("The model knows only the types above, and scores hold for text like its training data; "
                  "expect lower scores on other domains, languages or writing styles.")
    limits.append("Raw text is split into words by bner's CoNLL-style segmentation (Unicode letters, digits and punctuation); "
                  "entity offsets are character offsets into the text sent.")
    return "## Known limits\n\n" + "\n".join(f"- {line}" for line in limits) + "\n"
