"""A trained tagger, from any backend: raw text → words → windows → model → word tags → entities.

:func:`bner.load` (:mod:`bner.inference.loader`) builds one from a folder on disk or a
TensorFlow Serving address. The same class is what training's dev evaluation, the CLI's
evaluate and predict steps and both server backends use: only the backend
(:mod:`bner.inference.backends`) differs, never the preprocessing or the decoding.

Importing this module imports neither Keras nor TensorFlow; a backend imports what it
runs on.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Generator, Iterable, Sequence

import numpy as np
import tokenizers

from bner.data import batches, corpus, features, text
from bner.errors import first_line
from bner.inference import consistency
from bner.inference import decoding as scheme_decoding
from bner.inference.backends import BackendUnavailable
from bner.inference.evaluate import score
from bner.model.metadata import TaggerMetadata


@dataclasses.dataclass(frozen=True)
class TaggedSentence:
    tags: list[str]  # one tag a word, in the model's label scheme
    scores: np.ndarray  # float32: the probability of each word's tag
    identifiers: list[str] | None = None  # a dictionary's identifier, on the first word of each entity it found

    def spans(self) -> list[corpus.Span]:
        return corpus.entity_spans(self.tags)


@dataclasses.dataclass(frozen=True)
class Entity:
    text: str
    type: str
    start: int  # character offsets into the original text
    end: int
    score: float  # mean over its words of the probability of its type
    identifier: str = ""  # the dictionary's identifier(s) of the name ("|" between several); "" for none

    def as_dict(self) -> dict:
        """The entity as JSON gives it; ``identifier`` only where there is one."""
        out = dataclasses.asdict(self)
        if not self.identifier:
            del out["identifier"]
        return out


@dataclasses.dataclass(frozen=True)
class TaggedText:
    text: str
    words: list[text.Word]
    tagged: TaggedSentence
    entities: list[Entity]


class TextTagger:
    """What every kind of model offers on top of tagging words: raw texts, many texts, pre-split
    words, CoNLL files and their scores. A kind of model (:class:`Tagger`; a dictionary alone,
    :class:`bner.inference.dictionary_tagger.DictionaryTagger`; a dictionary checked by a span
    classifier, :class:`bner.inference.span_tagger.SpanTagger`; both kinds combined,
    :class:`bner.inference.combined.CombinedTagger`) supplies
    :meth:`tag_sentences_in_steps`, its entity types, label schemes and scoring; raw text is
    segmented, and entities are made, the same way for all of them.
    """

    batch_size: int = 32
    source: str = ""
    split_sentences: bool = False  # tag raw text sentence by sentence (a model trained on sentences)
    data_scheme: str = "IOB2"  # the scheme tags are given in (the training data's)

    @property
    def entity_types(self) -> list[str]:
        raise NotImplementedError

    @property
    def scoring(self) -> dict:
        """How this tagger turns its model's answers into tags, as written beside scores it made."""
        raise NotImplementedError

    def tag_sentences_in_steps(
        self, sentences: Sequence[Sequence[str]], batch_size: int | None = None, documents: Sequence[int] | None = None
    ) -> Generator[None, None, list[TaggedSentence]]:
        """Each sentence's tags, one model call per step (a server takes turns between requests this way)."""
        raise NotImplementedError

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

    def text_units(self, source: str, words: list[text.Word]) -> list[tuple[int, int]]:
        """The runs of ``words`` (segmented ``source``) tagged as one sentence each: its sentences, or
        the whole text for a model trained on whole units; none empty."""
        spans = text.sentence_spans(source, words) if self.split_sentences else [(0, len(words))]
        return [(start, end) for start, end in spans if end > start]

    def tag_texts_in_steps(self, texts: Sequence[str], batch_size: int | None = None) -> Generator[None, None, list[TaggedText]]:
        """:meth:`tag_texts` one model call per step (a server takes turns between requests this way).

        Lone surrogates read as U+FFFD (:func:`bner.data.text.readable`), one character for one, so
        every offset still points into the text as given.
        """
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"text {i}: expected a str, got {type(t).__name__}")
        texts = [text.readable(t) for t in texts]
        segmented = [text.segment(t) for t in texts]
        # A model trained on sentences tags a text sentence by sentence (with its neighbours in
        # the text as context, if trained with context); one trained on whole units (tweets) or
        # on document windows tags each text whole, windows covering a long one.
        pieces = []  # (text index, first word, last word)
        for i, (source, words) in enumerate(zip(texts, segmented)):
            pieces += [(i, start, end) for start, end in self.text_units(source, words)]
        sentences = [[w.text for w in segmented[i][start:end]] for i, start, end in pieces]
        # Each text is a document of its own (numbered from 1: 0 means outside any document).
        tagged = yield from self.tag_sentences_in_steps(sentences, batch_size, documents=[i + 1 for i, _, _ in pieces])
        parts: dict[int, list[TaggedSentence]] = collections.defaultdict(list)
        for (i, _, _), t in zip(pieces, tagged):
            parts[i].append(t)
        results = []
        for i, (source, words) in enumerate(zip(texts, segmented)):
            own = parts.get(i, [])
            identifiers = [x for p in own for x in p.identifiers] if own and all(p.identifiers for p in own) else None
            t = TaggedSentence([tag for p in own for tag in p.tags], np.concatenate([p.scores for p in own]) if own else np.zeros(0, np.float32),
                               identifiers)
            results.append(TaggedText(source, words, t, entities_of(source, words, t)))
        return results

    # ------------------------------------------------------------ words and CoNLL files

    def tag(
        self, words: Sequence[str] | Sequence[Sequence[str]], documents: Sequence[int] | None = None
    ) -> list[str] | list[list[str]]:
        """Tags of pre-split words, in the training data's scheme; a list of sentences gives a list of tag lists.

        ``documents`` (one number per sentence, from 1, as CoNLL reading counts ``-DOCSTART-``)
        says which sentences are neighbours in one document: a model trained with context then
        sees them as it did in training, and a name is tagged alike throughout its document.
        Sentences numbered 0 (before any ``-DOCSTART-``) are neighbours for context only. A model
        trained on document windows reads each document's sentences as one text; without
        ``documents`` it reads each sentence alone.
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
        # A caller's words may hold lone surrogates (valid in JSON), which the tokenizer refuses: U+FFFD, one for one,
        # as raw text reads them. Files come decoded, so the shared steps below need not look.
        sentences = [[text.readable(w) for w in sentence] for sentence in sentences]
        tags = [corpus.convert_tags(t.tags, self.data_scheme) for t in self.tag_sentences(sentences, documents=documents)]
        return tags[0] if single else tags

    def tag_sentences(
        self, sentences: Sequence[Sequence[str]], batch_size: int | None = None, documents: Sequence[int] | None = None
    ) -> list[TaggedSentence]:
        """Word tags (in the model's label scheme) and their probabilities, sentence by sentence."""
        return run_steps(self.tag_sentences_in_steps(sentences, batch_size, documents))

    def evaluate(self, data: str | Sequence[corpus.Sentence], batch_size: int | None = None, columns: str | None = None):
        """conlleval's scores on a CoNLL file (or read sentences): a :class:`bner.inference.evaluate.Scores`.

        ``columns`` says where a file's word and tag are (``tag,word``; default: first and last)."""
        return self.evaluation(data, batch_size, columns)[0]

    def evaluation(self, data: str | Sequence[corpus.Sentence], batch_size: int | None = None, columns: str | None = None):
        """Scores and the predicted tags (in the data's scheme) of every sentence."""
        sentences = corpus.read_conll(data, columns=columns) if isinstance(data, str) else data
        tagged = self.tag_sentences([s.words for s in sentences], batch_size, documents=[s.document for s in sentences])
        predicted = [corpus.convert_tags(t.tags, self.data_scheme) for t in tagged]
        return score([s.tags for s in sentences], predicted), predicted

class Tagger(TextTagger):
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
        if decoding not in scheme_decoding.DECODINGS:
            raise ValueError(f"decoding {decoding!r}: expected one of {', '.join(scheme_decoding.DECODINGS)}")
        # constrained: the most probable label sequence the scheme allows (bner.inference.decoding);
        # argmax: each word's most probable label on its own.
        self.decoding = decoding
        # consistent: a name is tagged the same way throughout its document (bner.inference.consistency).
        self.consistent = consistent
        types = [label.partition("-")[2] for label in metadata.labels]
        self._same_type = np.array([[a == b for b in types] for a in types], dtype=np.float32)
        self._of_type = np.array([[t == e for e in metadata.entity_types] for t in types], dtype=np.float32)
        self._label_ids = {label: i for i, label in enumerate(metadata.labels)}
        window = max_seq_length or metadata.max_seq_length
        if window > metadata.encoder.max_positions:
            raise ValueError(
                f"max_seq_length {window} is longer than the model's {metadata.encoder.max_positions} positions"
            )
        self.preprocessor = features.Preprocessor(tokenizer, window, special_tokens=metadata.special_tokens)
        outputs = getattr(backend, "num_labels", None)
        if outputs is not None and outputs != len(metadata.labels):
            raise ValueError(
                f"{source or 'the model'}: metadata.json lists {len(metadata.labels)} labels but the model has {outputs} outputs"
            )

    def __repr__(self) -> str:
        return f"Tagger({self.source or 'in memory'!s}, types={self.entity_types}, backend={self.backend.name})"

    @property
    def scoring(self) -> dict:
        return {"decoding": self.decoding, "consistent": self.consistent}

    @property
    def labels(self) -> list[str]:
        return self.metadata.labels

    @property
    def entity_types(self) -> list[str]:
        return self.metadata.entity_types

    @property
    def split_sentences(self) -> bool:
        return self.metadata.split_sentences

    @property
    def data_scheme(self) -> str:
        return self.metadata.data_scheme

    def contexts(self, sentences: Sequence[Sequence[str]], documents: Sequence[int] | None):
        """The document context each sentence is tagged with, as the model was trained (None: sentences alone)."""
        if not self.metadata.context_words or documents is None:
            return None
        return corpus.document_contexts(sentences, documents, self.metadata.context_words)

    def tag_sentences_in_steps(
        self, sentences: Sequence[Sequence[str]], batch_size: int | None = None, documents: Sequence[int] | None = None
    ) -> Generator[None, None, list[TaggedSentence]]:
        """:meth:`tag_sentences` one model call per step.

        A model trained on document windows reads each document's sentences as one sequence of words
        (:func:`bner.data.features.document_units`), in overlapping windows where each word takes the
        prediction of the window where it has most context; each sentence is then decoded on its own,
        as its boundaries are known (a raw text, whose are not, is one sentence here: decoded whole).
        """
        if not sentences:
            return []
        if self.metadata.document_windows and documents is not None:
            units = features.document_units(documents)
            joined = [[w for s in sentences[a:b] for w in s] for a, b in units]
            probabilities = []
            for (a, b), whole in zip(units, (yield from self.word_probabilities_in_steps(joined, batch_size, None))):
                cuts = np.cumsum([len(s) for s in sentences[a:b]])[:-1]
                probabilities += np.split(whole, cuts)
        else:
            probabilities = yield from self.word_probabilities_in_steps(sentences, batch_size, documents)
        tagged = [self.decode(p) for p in probabilities]
        if self.consistent:
            tagged = self.agree(sentences, tagged, probabilities, [0] * len(sentences) if documents is None else documents)
        return tagged

    def word_probabilities_in_steps(
        self, sentences: Sequence[Sequence[str]], batch_size: int | None, documents: Sequence[int] | None
    ) -> Generator[None, None, list[np.ndarray]]:
        """Each sentence's ``[words, labels]`` probabilities, read in windows (with its document's
        context, for a model trained with it), one model call per step."""
        if not sentences:
            return []
        examples = self.preprocessor.encode(sentences, contexts=self.contexts(sentences, documents))
        piece_probabilities = yield from self.example_probabilities_in_steps(examples, batch_size)
        labels = self.labels
        return [p.reshape(len(p), len(labels)) for p in features.word_values(examples, piece_probabilities, len(sentences))]

    def example_probabilities_in_steps(
        self, examples: Sequence[features.Example], batch_size: int | None
    ) -> Generator[None, None, list[np.ndarray]]:
        """Each model input's ``[pieces, labels]`` probabilities, batched by length, one model call per step."""
        buckets = batches.padding_buckets(self.preprocessor.max_seq_length, getattr(self.backend, "static_shapes", True))
        plan = batches.plan_batches([len(e) for e in examples], batch_size or self.batch_size, buckets)
        piece_probabilities: list[np.ndarray] = [np.empty(0)] * len(examples)
        labels = self.labels
        for call, batch in enumerate(batches.iterate_batches(examples, plan, self.preprocessor.pad_id)):
            if call:
                yield  # a step ends before each model call after the first, so a one-call text is done in one step
            probabilities = self.backend.piece_probabilities(batch.inputs)
            if probabilities.shape[-1] != len(labels):
                raise ValueError(f"{self.source}: the model answers {probabilities.shape[-1]} labels, metadata.json lists {len(labels)}")
            for row, i in enumerate(batch.indices):
                piece_probabilities[i] = probabilities[row]
        return piece_probabilities

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
        """Decoded sentences made to tag each name alike throughout its document (:mod:`bner.inference.consistency`)."""
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

    # ------------------------------------------------------------ health

    def check(self, full_length: bool = False) -> None:
        """One real model call; raises what the backend raises, or ValueError for an answer it cannot use.

        The input is ``[CLS] [SEP]``, or with ``full_length`` (before a server says it is up) as
        long as the longest window, ``max_seq_length`` pieces: a model whose positions are fewer
        than its metadata claims then fails here, not on the first long text.
        """
        pieces = self.preprocessor.max_seq_length if full_length else 2
        ids = np.full((1, pieces), self.preprocessor.special_id("sep"), np.int32)
        ids[0, 0] = self.preprocessor.special_id("cls")
        mask = np.ones_like(ids)
        try:
            probabilities = np.asarray(self.backend.piece_probabilities({"input_ids": ids, "attention_mask": mask, "token_type_ids": 0 * mask}))
        except BackendUnavailable:
            raise
        except Exception as e:  # noqa: BLE001 — each runtime raises its own types for a model that cannot run this input
            raise ValueError(f"{self.source}: the model fails on a [1, {pieces}]-piece input ({first_line(e)})") from None
        if probabilities.shape != (1, pieces, len(self.labels)):
            raise ValueError(f"{self.source}: for a [1, {pieces}] input the model answers {list(probabilities.shape)}, "
                             f"not [1, {pieces}, {len(self.labels)}] (the {len(self.labels)} labels metadata.json lists)")
        if not np.isfinite(probabilities).all():
            raise ValueError(f"{self.source}: the model answers NaN or infinite values (damaged weights?)")


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
        identifier = tagged.identifiers[span.start] if tagged.identifiers else ""
        out.append(Entity(source[start:end], span.type, start, end, round(score, 4), identifier))
    return out


def group_entities(entities: Sequence[Entity]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = collections.defaultdict(list)
    for e in entities:
        grouped[e.type].append(e.text)
    return dict(grouped)


def _progress_bar(total: int, unit: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit=unit, desc="predicting", dynamic_ncols=True)
