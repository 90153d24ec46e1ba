"""Raw text → words with character offsets, tokenised the way CoNLL corpora are.

CoNLL-style corpora separate punctuation from words (``Smith ,`` ``U.S.`` ``don't`` →
``do n't`` varies by corpus); a word-piece model fine-tuned on such data sees
punctuation as separate words, so raw text is split the same way before tagging.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from collections.abc import Iterator

# CJK ideographs are words of one character each, as in CoNLL-format Chinese corpora and
# BERT's own tokenizer; other letters, digits and combining marks form words, joined by
# inner apostrophes, periods (U.S.), hyphens, @ and similar, and by commas between digits.
CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f"
LETTER = rf"[^\W{CJK}]|[\u0300-\u036f]"
_JOINER = r"[.'’\-_&/@]|(?<=\d),(?=\d)"
_WORD = re.compile(
    rf"""
    (?:https?://|www\.)\S+                      # URLs stay whole
    | [@\#]?(?:{LETTER})+(?:(?:{_JOINER})(?:{LETTER})+)*\.?   # words, U.S., e-mail, 1,000
    | \S                                        # anything else, one character at a time
    """,
    re.VERBOSE,
)


@dataclasses.dataclass(frozen=True)
class Word:
    text: str
    start: int  # character offset into the original text
    end: int


def _invisible(character: str) -> bool:
    """Control and format characters (NUL, zero-width spaces and joiners, direction marks),
    surrogates and U+FFFD, which BERT's tokenizer deletes (nearly all of them): on their own
    they are no word, so they neither get a tag nor split a name. Raw text only: a CoNLL file's
    words are the annotator's, kept as given. Unassigned and private-use characters stay words
    (an emoji newer than Python's Unicode tables is one)."""
    return character == "\ufffd" or unicodedata.category(character) in ("Cc", "Cf", "Cs")


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def readable(text: str) -> str:
    """Lone surrogates (valid in JSON, not in UTF-8, refused by the tokenizer) as U+FFFD, one
    character for one, so every offset still points into the text as given."""
    return _LONE_SURROGATE.sub("\ufffd", text)


def segment(text: str) -> list[Word]:
    return list(iter_words(text))


def iter_words(text: str) -> Iterator[Word]:
    """The words of ``text`` one by one, as :func:`segment` lists them (for reading only a start)."""
    for match in _WORD.finditer(text):
        token = match.group()
        if len(token) == 1 and _invisible(token):
            continue
        start, end = match.span()
        # A trailing period belongs to the word only for abbreviations like "U.S." or "Dr.".
        if token.endswith(".") and len(token) > 1 and not _is_abbreviation(token):
            yield Word(token[:-1], start, end - 1)
            yield Word(".", end - 1, end)
        else:
            yield Word(token, start, end)


def _is_abbreviation(token: str) -> bool:
    return bool(re.fullmatch(r"(?:[A-Za-z]\.){2,}|[A-Z][a-z]{0,2}\.", token))


_SENTENCE_END = {".", "!", "?", "…", "。", "！", "？"}
_CLOSERS = {'"', "'", "”", "’", ")", "]", "»"}


# Training units count as sentences when the rule below splits at most this share of them:
# a sentence-split corpus splits few of its units (at abbreviations), a corpus of tweets or
# paragraphs many.
SENTENCE_UNITS_MAX_SPLIT = 0.1


def units_are_sentences(units: list[tuple[str, ...]] | list[list[str]]) -> bool:
    """Whether a corpus's units (CoNLL "sentences") are sentences, not tweets or paragraphs.

    Raw text given to a model trained on sentences is then split into sentences before
    tagging, so each model input is what training saw: one sentence.
    """
    if not units:
        return False
    split = 0
    for words in units:
        source = " ".join(words)
        split += len(sentence_spans(source, segment(source))) > 1
    return split <= SENTENCE_UNITS_MAX_SPLIT * len(units)


def sentence_spans(text: str, words: list[Word]) -> list[tuple[int, int]]:
    """Word ranges ``[start, end)`` of the sentences of a text.

    A sentence ends after ``.``, ``!``, ``?`` (and closing quotes or brackets after them) when
    the next word starts with an upper-case letter, a digit or an opening quote, and at a line
    break. A rule, not a model: a wrong split costs little where the neighbours are given as
    context anyway.
    """
    spans, start = [], 0
    for i, word in enumerate(words[:-1]):
        following = words[i + 1]
        gap = text[word.end : following.start]
        ends = word.text in _SENTENCE_END or (word.text in _CLOSERS and i > start and words[i - 1].text in _SENTENCE_END)
        starts = following.text[:1].isupper() or following.text[:1].isdigit() or following.text[:1] in "\"'“‘([«"
        if "\n" in gap or (ends and following.text not in _CLOSERS and starts and gap):
            spans.append((start, i + 1))
            start = i + 1
    if words:
        spans.append((start, len(words)))
    return spans
