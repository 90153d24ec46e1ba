"""``bner.load``: a :class:`~bner.inference.tagger.Tagger` for a model on disk or in TensorFlow Serving."""

from __future__ import annotations

from bner import io
from bner.data import features
from bner.environment import configure_environment, import_tensorflow_quietly
from bner.folders import model_folder
from bner.folders.locate import locate
from bner.inference import backends
from bner.inference.decoding import THRESHOLD, check_threshold
from bner.inference.tagger import Tagger, TextTagger
from bner.model.metadata import METADATA_FILE, SIGNATURE, read_metadata


def load(
    path: str,
    *,
    host: str | None = None,
    port: int = 8500,
    model_name: str = "bner",
    version: int | None = None,
    version_label: str | None = None,
    signature_name: str = SIGNATURE,
    timeout_seconds: float = 10.0,
    batch_size: int = 32,
    max_seq_length: int | None = None,
    verbose: bool = False,
    decoding: str = "constrained",
    consistent: bool = True,
    runtime: str = "auto",
    combine_with: str | None = None,
    combine: str = "union",
    threshold: float | None = None,
) -> TextTagger:
    """A :class:`Tagger` for ``path``: a trained-model folder, an export version folder, a folder of
    versions (the latest), a run folder (its latest export, else its model), or an export's
    ``metadata.json``; local or ``gs://``. A compiled dictionary (``bner dictionary compile``)
    gives a :class:`~bner.inference.dictionary_tagger.DictionaryTagger`, which tags by the
    dictionary alone (the model options do not apply to it).

    With ``host``, the model runs in TensorFlow Serving at ``host:port`` under ``model_name``
    and ``path`` names the export whose metadata and tokenizer to use. TensorFlow's C++ start-up
    lines are hidden unless ``verbose``. ``decoding``: ``constrained`` (the most probable tag
    sequence the label scheme allows, the default) or ``argmax`` (each word on its own).
    ``consistent``: a name is tagged the same way throughout its document (one raw text, or a
    ``-DOCSTART-`` document of a CoNLL file), by a vote of the model's probabilities
    (:mod:`bner.inference.consistency`); ``False`` leaves each sentence as decoded.
    ``runtime``: ``auto`` (an export's ``model.onnx`` with ONNX Runtime where both are there,
    else TensorFlow), ``onnx`` or ``tensorflow``: both compute the same entities. ``onnx-int8``
    runs the export's int8 copy (written on request; its F1 cost is in the model card).

    ``combine_with``: a second model, loaded the same way, to combine with this one: a token
    tagger and a dictionary's span classifier, in either order, give one answer as ``combine``
    says (``union`` or ``confirm``, :mod:`bner.inference.combined`).

    ``threshold``: for a dictionary model (trained with ``--dictionary``, alone or combined), the
    share of its and ``none``'s probability above which a match's most probable listed type is
    accepted (default 0.5, the arg-max; :meth:`~bner.inference.span_tagger.SpanTagger.decide`);
    lower keeps more of the dictionary's recall.
    """
    if threshold is not None:
        check_threshold(threshold)
    if combine_with is not None:
        from bner.inference.combined import CombinedTagger
        from bner.inference.span_tagger import SpanTagger

        options = dict(host=host, port=port, model_name=model_name, version=version, version_label=version_label,
                       signature_name=signature_name, timeout_seconds=timeout_seconds, batch_size=batch_size,
                       max_seq_length=max_seq_length, verbose=verbose, decoding=decoding, consistent=consistent, runtime=runtime)
        first, second = load(path, **options), load(combine_with, **options)
        tagger, checker = (second, first) if isinstance(first, SpanTagger) else (first, second)
        if threshold is not None and isinstance(checker, SpanTagger):
            checker.threshold = float(threshold)
        return CombinedTagger(tagger, checker, mode=combine)
    kind, folder = locate(path)
    if kind == "dictionary":
        if threshold is not None:
            raise ValueError(f"{folder}: threshold applies to a dictionary's classifier; a compiled dictionary alone accepts every match")
        return _dictionary_tagger(folder, host, batch_size)
    # An export's metadata file by any name (METADATA_FILE), else the folder's metadata.json.
    metadata = read_metadata(str(path) if str(path).endswith(".json") else io.within(folder, METADATA_FILE))
    tokenizer = features.read_tokenizer(io.within(folder, metadata.tokenizer_file), metadata.special_tokens)
    chosen = choose_runtime(runtime, kind, metadata, folder, remote=bool(host))
    if chosen in ("onnx", "onnx-int8"):
        configure_environment(quiet=not verbose)
        backend = backends.OnnxBackend(folder, metadata.onnx_int8 if chosen == "onnx-int8" else metadata.onnx, name=chosen)
    else:
        _quiet_tensorflow(verbose, without_keras=bool(host) or kind == "export")
        if host:
            backend = backends.TFServingBackend(
                host, port, model_name, version, version_label, signature_name, timeout_seconds, pad_to=metadata.max_seq_length
            )
        elif kind == "export":
            backend = backends.SavedModelBackend(folder, signature_name)
        else:
            backend = backends.KerasBackend(_float32(lambda: model_folder.load_network(folder, metadata)))
    if threshold is not None and not metadata.spans:
        raise ValueError(f"{folder}: threshold applies to a dictionary model (trained with --dictionary), not to a token tagger")
    tagger = make_tagger(backend, metadata, tokenizer, batch_size, max_seq_length, source=folder, decoding=decoding,
                         consistent=consistent, threshold=threshold)
    if not host:
        # One full-length call now: a model that cannot answer (too few positions, wrong output
        # shape, NaN weights) is refused at load, in one line, not after it has tagged a file with nothing.
        tagger.check(full_length=True)
    return tagger


def make_tagger(backend, metadata, tokenizer, batch_size: int = 32, max_seq_length: int | None = None, source: str = "",
                decoding: str = "constrained", consistent: bool = True, matcher=None, threshold: float | None = None) -> Tagger:
    """The tagger a model's metadata calls for, over ``backend``: a token :class:`Tagger`, or for a
    span classifier a :class:`~bner.inference.span_tagger.SpanTagger` with its dictionary
    (``matcher``, else read from the model folder ``source``) accepting matches above ``threshold``."""
    if not metadata.spans:
        return Tagger(backend, metadata, tokenizer, batch_size, max_seq_length, source=source, decoding=decoding, consistent=consistent)
    from bner.dictionary.matcher import Matcher
    from bner.inference.span_tagger import SpanTagger

    if matcher is None:
        matcher = Matcher.load(io.within(source, metadata.spans["dictionary"]))
    return SpanTagger(backend, metadata, tokenizer, matcher, batch_size, max_seq_length, source=source,
                      threshold=THRESHOLD if threshold is None else threshold)


def _dictionary_tagger(folder: str, host: str | None, batch_size: int):
    from bner.dictionary.matcher import Matcher
    from bner.inference.dictionary_tagger import DictionaryTagger

    if host:
        raise ValueError(f"{folder}: a compiled dictionary runs in this process, not in TensorFlow Serving (drop host)")
    return DictionaryTagger(Matcher.load(folder), source=folder, batch_size=batch_size)


def choose_runtime(runtime: str, kind: str, metadata, folder: str, remote: bool = False) -> str:
    """``onnx``, ``onnx-int8`` or ``tensorflow`` for a model: ``auto`` runs an export's model.onnx
    with ONNX Runtime when both are there, else TensorFlow (a trained-model folder, an older export)."""
    if runtime not in backends.RUNTIMES:
        raise ValueError(f"runtime must be one of {', '.join(backends.RUNTIMES)}, got {runtime!r}")
    if remote:
        if runtime.startswith("onnx"):
            raise ValueError(f"a model in TensorFlow Serving runs there: runtime {runtime} applies to a model loaded in this process")
        return "tensorflow"
    has_onnx = kind == "export" and bool(metadata.onnx)
    if runtime == "onnx" and not has_onnx:
        raise ValueError(f"{folder}: no model.onnx here (a trained-model folder, or an export written before exports held one: "
                         "bner export writes a new version that does)")
    if runtime == "onnx-int8" and not (kind == "export" and metadata.onnx_int8):
        raise ValueError(f"{folder}: no int8 model here: it is written only on request (bner export --export_int8, or "
                         "bner train --export_int8), and kept only where its F1 on the run's dev and test files stays "
                         "within budget (the model card says)")
    if runtime == "auto":
        return "onnx" if has_onnx and onnx_runtime_installed() else "tensorflow"
    return runtime


def onnx_runtime_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None


def _quiet_tensorflow(verbose: bool, without_keras: bool) -> None:
    configure_environment(quiet=not verbose)
    if not verbose:
        import_tensorflow_quietly(without_keras)


def _float32(build):
    """Build a network in float32 whatever policy is set: inference runs in float32 everywhere."""
    import keras

    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy("float32")
    try:
        return build()
    finally:
        keras.mixed_precision.set_dtype_policy(previous)
