"""A trained tagger, from any backend: raw text → words → windows → model → word tags → entities.

:func:`load` opens a trained-model folder, an export, a folder of export versions or a
run folder (local or ``gs://``), or talks to TensorFlow Serving, and returns a
:class:`Tagger`. The same class is what training's dev evaluation, the CLI's evaluate
and predict steps and both server backends use: only the backend (:mod:`bner.backends`)
differs, never the preprocessing or the decoding.

Importing this module imports neither Keras nor TensorFlow; a backend imports what it
runs on.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import os
import re
import unicodedata
from collections.abc import Generator, Iterable, Sequence

import numpy as np
import tokenizers

from bner import consistency, corpus, features, io, text
from bner import decoding as scheme_decoding
from bner.metadata import METADATA_FILE, SIGNATURE, TaggerMetadata, read_metadata

DECODINGS = scheme_decoding.DECODINGS  # also importable from here, where it was before

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
COUNT_CHUNK_WORDS = 2048  # words tokenized at a time when counting a request's pieces against a limit


@dataclasses.dataclass(frozen=True)
class TaggedSentence:
    tags: list[str]  # one tag a word, in the model's label scheme
    scores: np.ndarray  # float32: the probability of each word's tag

    def spans(self) -> list[corpus.Span]:
        return corpus.entity_spans(self.tags)


@dataclasses.dataclass(frozen=True)
class Entity:
    text: str
    type: str
    start: int  # character offsets into the original text
    end: int
    score: float  # mean over its words of the probability of its type

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class TaggedText:
    text: str
    words: list[text.Word]
    tagged: TaggedSentence
    entities: list[Entity]


class Tagger:
    """Labels texts, word sequences and CoNLL files with one trained model."""

    def __init__(
        self,
        backend,
        metadata: TaggerMetadata,
        tokenizer: tokenizers.Tokenizer,
        batch_size: int = 32,
        max_seq_length: int | None = None,
        source: str = "",
        decoding: str = "constrained",
        consistent: bool = True,
    ):
        self.backend, self.metadata, self.batch_size, self.source = backend, metadata, batch_size, source
        if decoding not in DECODINGS:
            raise ValueError(f"decoding {decoding!r}: expected one of {', '.join(DECODINGS)}")
        # constrained: the most probable label sequence the scheme allows (bner.decoding);
        # argmax: each word's most probable label on its own.
        self.decoding = decoding
        # consistent: a name is tagged the same way throughout its document (bner.consistency).
        self.consistent = consistent
        types = [label.partition("-")[2] for label in metadata.labels]
        self._same_type = np.array([[a == b for b in types] for a in types], dtype=np.float32)
        self._of_type = np.array([[t == e for e in metadata.entity_types] for t in types], dtype=np.float32)
        self._label_ids = {label: i for i, label in enumerate(metadata.labels)}
        window = max_seq_length or metadata.max_seq_length
        if window > metadata.encoder.max_position_embeddings:
            raise ValueError(
                f"max_seq_length {window} is longer than the model's {metadata.encoder.max_position_embeddings} positions"
            )
        self.preprocessor = features.Preprocessor(tokenizer, window)
        outputs = getattr(backend, "num_labels", None)
        if outputs is not None and outputs != len(metadata.labels):
            raise ValueError(
                f"{source or 'the model'}: metadata.json lists {len(metadata.labels)} labels but the model has {outputs} outputs"
            )

    def __repr__(self) -> str:
        return f"Tagger({self.source or 'in memory'!s}, types={self.entity_types}, backend={self.backend.name})"

    @property
    def scoring(self) -> dict:
        """How this tagger turns probabilities into tags, as written beside scores it made."""
        return {"decoding": self.decoding, "consistent": self.consistent}

    @property
    def labels(self) -> list[str]:
        return self.metadata.labels

    @property
    def entity_types(self) -> list[str]:
        return self.metadata.entity_types

    # ------------------------------------------------------------ raw text

    def __call__(self, text: str) -> list[Entity]:
        """The entities of one text, with character offsets into it."""
        if not isinstance(text, str):
            raise TypeError(f"the tagger takes one text (a str), got {type(text).__name__}; for many texts use predict()")
        return self.tag_texts([text])[0].entities

    def predict(
        self, texts: Iterable[str], batch_size: int | None = None, progress: bool = False, group_by_type: bool = False
    ) -> list[list[Entity]] | list[dict[str, list[str]]]:
        """Entities of many texts; with ``group_by_type``, ``{"PER": ["Angela Merkel"], ...}`` per text."""
        if isinstance(texts, str):
            raise TypeError("predict() takes a list of texts, got one str; for one text call the tagger: tagger(text)")
        texts = list(texts)
        results: list = []
        chunk = (batch_size or self.batch_size) * 8  # texts per progress update; bounded work between updates
        bar = _progress_bar(len(texts), "texts") if progress else None
        for start in range(0, len(texts), chunk):
            for tagged in self.tag_texts(texts[start : start + chunk], batch_size):
                results.append(group_entities(tagged.entities) if group_by_type else tagged.entities)
            if bar is not None:
                bar.update(min(chunk, len(texts) - start))
        if bar is not None:
            bar.close()
        return results

    def tag_texts(self, texts: Sequence[str], batch_size: int | None = None) -> list[TaggedText]:
        """Raw texts → words (CoNLL-style segmentation) → tags → entities with character offsets."""
        return run_steps(self.tag_texts_in_steps(texts, batch_size))

    def tag_texts_in_steps(self, texts: Sequence[str], batch_size: int | None = None) -> Generator[None, None, list[TaggedText]]:
        """:meth:`tag_texts` one model call per step (a server takes turns between requests this way).

        Lone surrogates (valid in JSON, not in UTF-8, refused by the tokenizer) read as U+FFFD,
        one character for one, so every offset still points into the text as given.
        """
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"text {i}: expected a str, got {type(t).__name__}")
        texts = [_LONE_SURROGATE.sub("\ufffd", t) for t in texts]
        segmented = [text.segment(t) for t in texts]
        # A model trained on sentences tags a text sentence by sentence (with its neighbours in
        # the text as context, if trained with context); one trained on whole units (tweets)
        # tags each text whole, windows covering a long one.
        pieces = []  # (text index, first word, last word)
        split = self.metadata.split_sentences or self.metadata.context_words  # context models from before split_sentences
        for i, (source, words) in enumerate(zip(texts, segmented)):
            spans = text.sentence_spans(source, words) if split else [(0, len(words))]
            pieces += [(i, start, end) for start, end in spans if end > start]
        sentences = [[w.text for w in segmented[i][start:end]] for i, start, end in pieces]
        # Each text is a document of its own (numbered from 1: 0 means outside any document).
        tagged = yield from self.tag_sentences_in_steps(sentences, batch_size, documents=[i + 1 for i, _, _ in pieces])
        parts: dict[int, list[TaggedSentence]] = collections.defaultdict(list)
        for (i, _, _), t in zip(pieces, tagged):
            parts[i].append(t)
        results = []
        for i, (source, words) in enumerate(zip(texts, segmented)):
            own = parts.get(i, [])
            t = TaggedSentence([tag for p in own for tag in p.tags], np.concatenate([p.scores for p in own]) if own else np.zeros(0, np.float32))
            results.append(TaggedText(source, words, t, entities_of(source, words, t)))
        return results

    def piece_bound(self, texts: Sequence[str]) -> int:
        """At least :meth:`count_pieces`, without tokenizing: every piece covers a character of the
        text as BERT's tokenizer normalises it, and that normalisation (NFD for uncased models: a
        Hangul syllable becomes three jamo) makes no more characters than NFD does."""
        return sum(len(unicodedata.normalize("NFD", t)) for t in texts)

    def count_pieces(self, texts: Sequence[str], limit: int | None = None) -> int:
        """Word pieces the texts make (the model's work, before windows): what a server budgets.

        With ``limit``, counting stops once the count is past it (the result is then only known to
        exceed it), so refusing a huge request costs no more than tokenizing an allowed one.
        """
        def pieces(chunks: list[list[str]]) -> int:  # one call for many texts: the tokenizer runs them in parallel
            return sum(len(t.pieces) for t in features.tokenize(self.preprocessor.tokenizer, chunks, self.preprocessor.max_pieces))

        total, chunks, words_in_chunks = 0, [], 0
        for t in texts:
            words = (w.text for w in text.iter_words(_LONE_SURROGATE.sub("\ufffd", t)))
            while chunk := list(itertools.islice(words, COUNT_CHUNK_WORDS)):
                chunks.append(chunk)
                words_in_chunks += len(chunk)
                if words_in_chunks >= COUNT_CHUNK_WORDS:
                    total += pieces(chunks)
                    chunks, words_in_chunks = [], 0
                    if limit is not None and total > limit:
                        return total
        return total + (pieces(chunks) if chunks else 0)

    # ------------------------------------------------------------ words and CoNLL files

    def tag(
        self, words: Sequence[str] | Sequence[Sequence[str]], documents: Sequence[int] | None = None
    ) -> list[str] | list[list[str]]:
        """Tags of pre-split words, in the training data's scheme; a list of sentences gives a list of tag lists.

        ``documents`` (one number per sentence, from 1, as CoNLL reading counts ``-DOCSTART-``)
        says which sentences are neighbours in one document: a model trained with context then
        sees them as it did in training, and a name is tagged alike throughout its document.
        Sentences numbered 0 (before any ``-DOCSTART-``) are neighbours for context only.
        """
        if isinstance(words, str) or not isinstance(words, Iterable):
            hint = "one str; for raw text call the tagger: tagger(text)" if isinstance(words, str) else type(words).__name__
            raise TypeError(f"tag() takes a list of words (or of sentences, each a list of words), got {hint}")
        single = bool(words) and isinstance(words[0], str)
        sentences = [words] if single else words
        for i, sentence in enumerate(sentences):
            if isinstance(sentence, str) or not isinstance(sentence, Iterable) or not all(isinstance(w, str) for w in sentence):
                where = "" if single else f"sentence {i}: "
                raise TypeError(f"{where}expected a list of words (str), got {sentence!r:.60}")
        tags = [corpus.convert_tags(t.tags, self.metadata.data_scheme) for t in self.tag_sentences(sentences, documents=documents)]
        return tags[0] if single else tags

    def tag_sentences(
        self, sentences: Sequence[Sequence[str]], batch_size: int | None = None, documents: Sequence[int] | None = None
    ) -> list[TaggedSentence]:
        """Word tags (in the model's label scheme) and their probabilities, sentence by sentence."""
        return run_steps(self.tag_sentences_in_steps(sentences, batch_size, documents))

    def contexts(self, sentences: Sequence[Sequence[str]], documents: Sequence[int] | None):
        """The document context each sentence is tagged with, as the model was trained (None: sentences alone)."""
        if not self.metadata.context_words or documents is None:
            return None
        return corpus.document_contexts(sentences, documents, self.metadata.context_words)

    def tag_sentences_in_steps(
        self, sentences: Sequence[Sequence[str]], batch_size: int | None = None, documents: Sequence[int] | None = None
    ) -> Generator[None, None, list[TaggedSentence]]:
        if not sentences:
            return []
        examples = self.preprocessor.encode(sentences, contexts=self.contexts(sentences, documents))
        buckets = features.padding_buckets(self.preprocessor.max_seq_length, getattr(self.backend, "static_shapes", True))
        plan = features.plan_batches([len(e) for e in examples], batch_size or self.batch_size, buckets)
        piece_probabilities: list[np.ndarray] = [np.empty(0)] * len(examples)
        labels = self.labels
        for call, batch in enumerate(features.iterate_batches(examples, plan, self.preprocessor.pad_id)):
            if call:
                yield  # a step ends before each model call after the first, so a one-call text is done in one step
            probabilities = self.backend.piece_probabilities(batch.inputs)
            if probabilities.shape[-1] != len(labels):
                raise ValueError(f"{self.source}: the model answers {probabilities.shape[-1]} labels, metadata.json lists {len(labels)}")
            for row, i in enumerate(batch.indices):
                piece_probabilities[i] = probabilities[row]
        probabilities = list(features.word_values(examples, piece_probabilities, len(sentences)))
        tagged = [self.decode(p) for p in probabilities]
        if self.consistent:
            tagged = self.agree(sentences, tagged, probabilities, [0] * len(sentences) if documents is None else documents)
        return tagged

    def decode(self, word_probabilities: np.ndarray) -> TaggedSentence:
        """A sentence's tags and their probabilities from its words' label probabilities ``[words, labels]``."""
        if self.decoding == "constrained":
            rules = scheme_decoding.transitions(tuple(self.labels), self.metadata.label_scheme)
            ids = scheme_decoding.best_sequence(word_probabilities, rules)
        else:
            ids = word_probabilities.argmax(-1) if len(word_probabilities) else np.zeros(0, np.int64)
        return self._tagged(word_probabilities, ids)

    def agree(
        self, sentences: Sequence[Sequence[str]], tagged: Sequence[TaggedSentence], probabilities: Sequence[np.ndarray],
        documents: Sequence[int],
    ) -> list[TaggedSentence]:
        """Decoded sentences made to tag each name alike throughout its document (:mod:`bner.consistency`)."""
        tags = consistency.agree(
            sentences, [t.tags for t in tagged], [p @ self._of_type for p in probabilities], documents,
            self.entity_types, self.metadata.label_scheme,
        )
        return [
            old if new == old.tags else self._tagged(p, np.array([self._label_ids[t] for t in new], np.int64))
            for old, new, p in zip(tagged, tags, probabilities)
        ]

    def _tagged(self, word_probabilities: np.ndarray, ids: np.ndarray) -> TaggedSentence:
        # A word's score is the probability of its entity type (all of the type's labels summed;
        # for O, of O): the decoder may pick B-ORG where the model put most weight on I-ORG,
        # and the word is no less surely part of an ORG for that.
        scores = (word_probabilities * self._same_type[ids]).sum(-1) if len(ids) else np.zeros(0, np.float32)
        return TaggedSentence([self.labels[i] for i in ids], scores.astype(np.float32))

    def evaluate(self, data: str | Sequence[corpus.Sentence], batch_size: int | None = None):
        """conlleval's scores on a CoNLL file (or read sentences): a :class:`bner.evaluate.Scores`."""
        return self.evaluation(data, batch_size)[0]

    def evaluation(self, data: str | Sequence[corpus.Sentence], batch_size: int | None = None):
        """Scores and the predicted tags (in the data's scheme) of every sentence."""
        from bner.evaluate import score

        sentences = corpus.read_conll(data) if isinstance(data, str) else data
        tagged = self.tag_sentences([s.words for s in sentences], batch_size, documents=[s.document for s in sentences])
        predicted = [corpus.convert_tags(t.tags, self.metadata.data_scheme) for t in tagged]
        return score([s.tags for s in sentences], predicted), predicted

    # ------------------------------------------------------------ health

    def check(self) -> None:
        """One real model call on a short input; raises what the backend raises."""
        ids = np.array([[self.preprocessor.tokenizer.token_to_id(features.SPECIAL[n]) for n in ("cls", "sep")]], np.int32)
        mask = np.ones_like(ids)
        probabilities = self.backend.piece_probabilities({"input_ids": ids, "attention_mask": mask, "token_type_ids": 0 * mask})
        if np.asarray(probabilities).shape[-1] != len(self.labels):
            raise ValueError(f"{self.source}: the model answers {np.asarray(probabilities).shape[-1]} labels, "
                             f"metadata.json lists {len(self.labels)}")


def run_steps(steps: Generator):
    """Run a stepwise computation to its end; its result."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


def entities_of(source: str, words: Sequence[text.Word], tagged: TaggedSentence) -> list[Entity]:
    """Entities with character offsets into ``source``, from word tags."""
    out = []
    for span in tagged.spans():
        start, end = words[span.start].start, words[span.end - 1].end
        score = float(np.mean(tagged.scores[span.start : span.end]))
        out.append(Entity(source[start:end], span.type, start, end, round(score, 4)))
    return out


def group_entities(entities: Sequence[Entity]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = collections.defaultdict(list)
    for e in entities:
        grouped[e.type].append(e.text)
    return dict(grouped)


def _progress_bar(total: int, unit: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit=unit, desc="predicting", dynamic_ncols=True)


# ---------------------------------------------------------------- loading


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
) -> Tagger:
    """A :class:`Tagger` for ``path``: a trained-model folder, an export version folder, a folder of
    versions (the latest), a run folder (its latest export, else its model), or an export's
    ``metadata.json``; local or ``gs://``.

    With ``host``, the model runs in TensorFlow Serving at ``host:port`` under ``model_name``
    and ``path`` names the export whose metadata and tokenizer to use. TensorFlow's C++ start-up
    lines are hidden unless ``verbose``. ``decoding``: ``constrained`` (the most probable tag
    sequence the label scheme allows, the default) or ``argmax`` (each word on its own).
    ``consistent``: a name is tagged the same way throughout its document (one raw text, or a
    ``-DOCSTART-`` document of a CoNLL file), by a vote of the model's probabilities
    (:mod:`bner.consistency`); ``False`` leaves each sentence as decoded.
    """
    from bner import backends

    kind, folder = locate(path)
    # An export's metadata file by any name (METADATA_FILE), else the folder's metadata.json.
    metadata = read_metadata(str(path) if str(path).endswith(".json") else folder)
    tokenizer = features.read_tokenizer(io.join(folder, metadata.tokenizer_file))
    _quiet_tensorflow(verbose, without_keras=bool(host) or kind == "export")
    if host:
        backend = backends.TFServingBackend(
            host, port, model_name, version, version_label, signature_name, timeout_seconds, pad_to=metadata.max_seq_length
        )
    else:
        if kind == "export":
            backend = backends.SavedModelBackend(folder, signature_name)
        else:
            from bner import model_folder

            backend = backends.KerasBackend(_float32(lambda: model_folder.load_network(folder, metadata)))
    return Tagger(backend, metadata, tokenizer, batch_size, max_seq_length, source=folder, decoding=decoding, consistent=consistent)


def locate(path: str) -> tuple[str, str]:
    """``("export", version folder)`` or ``("model", trained-model folder)`` for any path :func:`load` takes."""
    from bner import export, model_folder

    path = str(path).rstrip("/") or "/"
    if path.endswith(".json"):  # an export's metadata.json (METADATA_FILE), as the original client took it
        return "export", os.path.dirname(path)
    if io.is_local(path) and os.path.isfile(path):
        raise FileNotFoundError(f"{path}: a file, not a bner model ({_MODEL_PATHS})")
    if io.exists(io.join(path, "saved_model.pb")) and io.exists(io.join(path, METADATA_FILE)):
        return "export", path
    if model_folder.is_model_folder(path):
        return "model", path
    if export.versions(path):
        return "export", export.latest_export(path)
    exports = io.join(path, "export")
    if io.exists(exports):
        for name in io.listdir(exports):
            if export.versions(io.join(exports, name)):
                return "export", export.latest_export(io.join(exports, name))
    if model_folder.is_model_folder(io.join(path, "model")):
        return "model", io.join(path, "model")
    if not io.exists(path):
        raise FileNotFoundError(f"{path}: no such file or folder")
    raise FileNotFoundError(f"{path}: not a bner model ({_MODEL_PATHS})")


_MODEL_PATHS = ("expected an export version with saved_model.pb and metadata.json, a folder of numbered versions, "
                "a trained-model folder with model.weights.h5, or a run folder holding one of those")


def _quiet_tensorflow(verbose: bool, without_keras: bool) -> None:
    from bner.settings import configure_environment, import_tensorflow_quietly

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
