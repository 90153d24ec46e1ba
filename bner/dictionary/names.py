"""Dictionary files: ``name<TAB>type[<TAB>identifier]`` a line, read, varied and harvested.

A dictionary is a vocabulary of known names (MeSH diseases, gene symbols, a product
catalogue), each with an entity type and, optionally, an identifier in the vocabulary it
comes from (``MESH:D003920``). It may hold millions of lines; it is read one line at a time.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Iterator, Sequence

from bner import io
from bner.data import corpus
from bner.dictionary.normal import normalise

HEADER = ("name", "type", "identifier")


class DictionaryError(ValueError):
    """A dictionary file that cannot be read; the message names the file and line."""


@dataclasses.dataclass(frozen=True)
class Name:
    name: str
    type: str
    identifier: str = ""


def check_type(entity_type: str, where: str) -> None:
    problem = corpus.type_name_problem(entity_type)
    if problem:
        raise DictionaryError(f"{where}: type {entity_type!r}: {problem}")


def read_names(path: str) -> Iterator[Name]:
    """The names of a dictionary file, in order. Blank lines are skipped, and so is a first line
    ``name<TAB>type[<TAB>identifier]`` (a header). Errors name the file and line."""
    for number, line in io.numbered_lines(path, DictionaryError):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        fields = line.split("\t")
        if number == 1 and tuple(f.strip().lower() for f in fields) == HEADER[: len(fields)] and len(fields) >= 2:
            continue
        if len(fields) not in (2, 3):
            raise DictionaryError(f"{where}: expected name<TAB>type or name<TAB>type<TAB>identifier, "
                                  f"got {len(fields)} tab-separated field{'s' * (len(fields) != 1)}: {line[:80]!r}")
        name, entity_type = fields[0].strip(), fields[1].strip()
        if not name:
            raise DictionaryError(f"{where}: the name (first field) is empty")
        check_type(entity_type, where)
        yield Name(name, entity_type, fields[2].strip() if len(fields) == 3 else "")


def write_names(names: Iterable[Name], path: str) -> int:
    """Write a dictionary file (atomically: the file appears only when complete); how many names."""
    lines = ["\t".join(HEADER)]
    for n in names:
        if "\t" in n.name or "\n" in n.name:
            raise DictionaryError(f"name {n.name!r}: a dictionary name cannot hold a tab or a line break")
        lines.append(f"{n.name}\t{n.type}\t{n.identifier}")
    io.write_text(path, "\n".join(lines) + "\n")
    return len(lines) - 1


# ---------------------------------------------------------------- variants

def uninverted(name: str) -> str | None:
    """A vocabulary's inverted name turned round, as text writes it: "Scleroderma, Systemic" →
    "Systemic Scleroderma", "Anemia, Hemolytic, Congenital" → "Congenital Hemolytic Anemia".
    None for a name without ", " (a comma between digits, "1,2-dioxin", is no inversion)."""
    parts = [p.strip() for p in name.split(", ")]
    if len(parts) < 2 or not all(parts):
        return None
    return " ".join(reversed(parts))


_SIBILANT = re.compile(r"(s|x|z|ch|sh)$", re.IGNORECASE)
_CONSONANT_Y = re.compile(r"[^aeiou]y$", re.IGNORECASE)


def plural(name: str) -> str | None:
    """English plural of a name's last word ("breast tumor" → "breast tumors", "abscess" →
    "abscesses", "ovary" → "ovaries"); None where the last word does not end in a lowercase
    letter (an acronym, a number: "BRCA1", "type 2") or ends in a single s ("diabetes",
    "lupus", "arthritis": plural already, or Latin)."""
    last = name.rsplit(" ", 1)[-1]
    if not re.fullmatch(r"[A-Za-z]*[a-z]", last) or (last.endswith("s") and not last.endswith("ss")):
        return None
    if _CONSONANT_Y.search(last):
        return name[:-1] + "ies"
    return name + ("es" if _SIBILANT.search(last) else "s")


def with_variants(names: Iterable[Name], uninvert: bool = True, plurals: bool = False) -> Iterator[Name]:
    """Each name, then the variants asked for, with the same type and identifier."""
    for n in names:
        yield n
        forms = [n.name]
        if uninvert and (turned := uninverted(n.name)):
            forms.append(turned)
            yield dataclasses.replace(n, name=turned)
        if plurals:
            for form in forms:
                if ", " not in form and (many := plural(form)):  # an inverted form's last word is no head noun
                    yield dataclasses.replace(n, name=many)


# ---------------------------------------------------------------- harvesting

def harvest(sentences: Sequence[corpus.Sentence]) -> list[Name]:
    """The distinct (mention, type) pairs of labelled sentences, in order of first appearance:
    a dictionary of the names annotators marked. A mention's words are joined by spaces;
    matching ignores spaces around punctuation, so "Crohn ' s" also finds "Crohn's"."""
    seen: dict[tuple[str, str], None] = {}
    for s in sentences:
        for span in corpus.entity_spans(s.tags):
            mention = " ".join(s.words[span.start : span.end])
            if normalise(mention):  # a mention of dashes alone has nothing a dictionary could match
                seen.setdefault((mention, span.type), None)
    return [Name(name, entity_type) for name, entity_type in seen]
