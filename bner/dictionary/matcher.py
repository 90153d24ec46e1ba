"""A dictionary's names found in words: every match, with its words, character offsets, types
and identifiers.

The names are keys of an Aho-Corasick automaton: ``ahocorasick_rs``, Python's binding of the
Rust ``aho-corasick`` crate (ripgrep's), Apache-2.0, wheels for every platform. One pass over a
text finds every occurrence of every key, overlapping and nested ones included, in time that
grows with the text and the matches, not with the number of names: a million names match as
fast as a thousand. It holds a million names in about a third of the memory pyahocorasick
needs (bench/dictionary_matching.py, docs/benchmarks.md) and answers character offsets.

Names and text are normalised alike, word by word (:func:`bner.dictionary.normal.normal_word`),
and joined by one space; a match counts only where it starts at a word's start and ends at a word's end. The
words are the tagger's: a CoNLL file's own, or raw text as :mod:`bner.data.text` segments it.
So "cold" is not found in "colder", and a match is always a run of whole words, which is
what a tagger labels and conlleval scores.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence

import ahocorasick_rs

from bner import io
from bner.data import text as text_words
from bner.dictionary.names import DictionaryError, Name, check_type, read_names, with_variants
from bner.dictionary.normal import NORMALISATION, normal_word, normalise

SETTINGS_FILE = "dictionary.json"
_UNIT, _RECORD = "\x1f", "\x1e"  # ASCII unit and record separators: no dictionary field holds them (tabs and line breaks split fields)
NAMES_FILE = "names.tsv"  # normalised name, type, identifier: one line per entry


@dataclasses.dataclass(frozen=True)
class Match:
    """A dictionary name over words ``start`` (inclusive) to ``end`` (exclusive)."""

    start: int
    end: int
    key: int  # which normalised name; Matcher.entries(key) gives its types and identifiers


class Matcher:
    """A compiled dictionary. :meth:`compile` builds one from names, :meth:`save` and :meth:`load`
    keep it in a folder; :meth:`match_words` and :meth:`match_text` find its names."""

    def __init__(self, keys: list[str], packed: list[str], types: Iterable[str], fold_case: bool, names: int):
        # packed: each key's entries as one str, "type<US>identifier<RS>type<US>identifier" (pack()):
        # a tuple of tuples a key costs four times the memory.
        self.keys, self._entries, self.fold_case, self.names = keys, packed, fold_case, names
        self.types = sorted(types)
        self.automaton = ahocorasick_rs.AhoCorasick(keys, store_patterns=False) if keys else None

    def __repr__(self) -> str:
        return f"Matcher({len(self.keys):,} keys from {self.names:,} names, types={self.types}, fold_case={self.fold_case})"

    def __len__(self) -> int:
        return len(self.keys)

    @classmethod
    def compile(cls, names: Iterable[Name], fold_case: bool = True, source: str = "the dictionary") -> Matcher:
        """A matcher for ``names``. Names equal after normalisation share one key, whose entries
        are their distinct (type, identifier) pairs in order of first appearance."""
        index: dict[str, int] = {}
        entries: list[dict[tuple[str, str], None]] = []
        count = 0
        checked: set[str] = set()
        for count, n in enumerate(names, 1):
            if n.type not in checked:
                check_type(n.type, f"{source}: name {n.name!r} (entry {count})")
                checked.add(n.type)
            key = normalise(n.name, fold_case)
            if not key:
                raise DictionaryError(f"{source}: name {n.name!r} (entry {count}) has no letter, digit or symbol to match")
            if _UNIT in n.identifier or _RECORD in n.identifier:
                raise DictionaryError(f"{source}: name {n.name!r} (entry {count}): its identifier holds a control character")
            i = index.setdefault(key, len(index))
            if i == len(entries):
                entries.append({})
            entries[i].setdefault((n.type, n.identifier), None)
        return cls(list(index), [_RECORD.join(map(_pack, group)) for group in entries], {t for group in entries for t, _ in group},
                   fold_case, count)

    @classmethod
    def from_files(cls, paths: Sequence[str], fold_case: bool = True, uninvert: bool = True, plurals: bool = False) -> Matcher:
        """A matcher for the names of one or more dictionary files (their union), with the variants
        asked for (:func:`bner.dictionary.names.with_variants`)."""
        def all_names():
            for path in paths:
                yield from with_variants(read_names(path), uninvert=uninvert, plurals=plurals)

        return cls.compile(all_names(), fold_case, source=", ".join(paths))

    def entries(self, key: int) -> tuple[tuple[str, str], ...]:
        """The (type, identifier) pairs of a key, as the dictionary lists them ("" for no identifier)."""
        return tuple(tuple(entry.split(_UNIT)) for entry in self._entries[key].split(_RECORD))

    # ------------------------------------------------------------ matching

    def match_words(self, words: Sequence[str]) -> list[Match]:
        """Every dictionary name in a sequence of words (overlapping and nested ones included),
        in order of start, longest first."""
        if self.automaton is None:
            return []
        starts: dict[int, int] = {}  # position in the joined text → the word starting there
        ends: dict[int, int] = {}  # position just after a word → that word
        parts: list[str] = []
        position = 0
        for i, word in enumerate(words):
            normal = normal_word(word, self.fold_case)
            if not normal:
                continue  # a dash between words: "non - Hodgkin" reads as "non Hodgkin"
            if parts:
                position += 1
            starts[position] = i
            parts.append(normal)
            position += len(normal)
            ends[position] = i
            if normal.endswith(" ."):  # "Tom." at a sentence's end is one word of raw text: a name may end before its period
                ends.setdefault(position - 2, i)
        found = []
        for key, start, end in self.automaton.find_matches_as_indexes(" ".join(parts), overlapping=True):
            first_word, last_word = starts.get(start), ends.get(end)
            if first_word is not None and last_word is not None:
                found.append(Match(first_word, last_word + 1, key))
        found.sort(key=lambda m: (m.start, -m.end))
        return found

    def match_text(self, text: str) -> tuple[list[text_words.Word], list[Match]]:
        """A raw text's words (as the tagger segments it) and the matches among them."""
        words = text_words.segment(text_words.readable(text))
        return words, self.match_words([w.text for w in words])

    # ------------------------------------------------------------ saving

    def save(self, folder: str) -> None:
        """``dictionary.json`` (settings) and ``names.tsv`` (normalised names) in ``folder``; each file is written atomically."""
        lines = [f"{key}\t{t}\t{identifier}" for i, key in enumerate(self.keys) for t, identifier in self.entries(i)]
        io.write_text(io.join(folder, NAMES_FILE), "\n".join(lines) + "\n" if lines else "")
        settings = {"normalisation": NORMALISATION, "fold_case": self.fold_case, "names": self.names,
                    "keys": len(self.keys), "entries": len(lines), "types": self.types}
        io.write_text(io.join(folder, SETTINGS_FILE), json.dumps(settings, indent=2) + "\n")

    @classmethod
    def load(cls, folder: str) -> Matcher:
        settings_path = io.within(folder, SETTINGS_FILE)
        try:
            settings = json.loads(io.read_text(settings_path))
            fold_case, version, names = bool(settings["fold_case"]), int(settings["normalisation"]), int(settings["names"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise DictionaryError(f"{settings_path}: not a compiled dictionary's settings ({e})") from None
        if version != NORMALISATION:
            raise DictionaryError(f"{settings_path}: compiled with normalisation {version}, this bner matches with "
                                  f"{NORMALISATION}: compile the dictionary again")
        path = io.within(folder, NAMES_FILE)
        keys: list[str] = []
        packed: list[str] = []
        checked: set[str] = set()
        with io.open_file(path, "r", encoding="utf-8", newline="\n") as handle:
            for number, line in enumerate(handle, 1):
                fields = line.rstrip("\n").split("\t")
                if len(fields) != 3 or not fields[0]:
                    raise DictionaryError(f"{path}:{number}: expected a normalised name, a type and an identifier")
                if fields[1] not in checked:  # a few types over a million lines: each checked once
                    check_type(fields[1], f"{path}:{number}")
                    checked.add(fields[1])
                entry = _pack(fields[1:])
                if keys and fields[0] == keys[-1]:  # save() writes a key's entries on consecutive lines
                    packed[-1] += _RECORD + entry
                else:
                    keys.append(fields[0])
                    packed.append(entry)
        if len(set(keys)) != len(keys):
            raise DictionaryError(f"{path}: a name's lines are not together (was the file edited?): compile the dictionary again")
        return cls(keys, packed, checked, fold_case, names)


def copy_compiled(source: str, destination: str) -> None:
    """Copy a compiled dictionary's files (an export takes its model's)."""
    for name in (SETTINGS_FILE, NAMES_FILE):
        io.write_bytes(io.join(destination, name), io.read_bytes(io.within(source, name)))


def _pack(entry: Sequence[str]) -> str:
    return _UNIT.join(entry)


def longest_first(spans: Iterable, start=lambda s: s.start, end=lambda s: s.end, score=lambda s: 0.0) -> list:
    """Overlapping spans resolved: the longest first, then the leftmost, then the higher score;
    a span overlapping one already kept is dropped. The kept spans in order of start."""
    kept: list = []
    taken: set[int] = set()
    for span in sorted(spans, key=lambda s: (start(s) - end(s), start(s), -score(s))):
        covered = range(start(span), end(span))
        if not taken.intersection(covered):
            taken.update(covered)
            kept.append(span)
    return sorted(kept, key=start)
