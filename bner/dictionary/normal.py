"""How names and text are compared: each word normalised alike (:func:`normal_word`), a name's
words joined by one space (:func:`normalise`).

Both a dictionary's names (when compiled) and the words of a text (when matched) go through
these two functions, so they cannot disagree.
"""

from __future__ import annotations

import functools
import re
import unicodedata

from bner.data import text as text_words

# What normal_word does, numbered: a saved dictionary holds normalised names, so one saved
# under other rules is refused (compile it again) rather than silently matching less.
NORMALISATION = 1

_QUOTES = str.maketrans({"’": "'", "‘": "'", "ʼ": "'", "`": "'", "´": "'", "′": "'"})
# Hyphens, dashes, the minus sign and the soft hyphen (NFKC keeps each of these).
_DASHES = re.compile("[-\u00ad\u2010-\u2015\u2212\ufe58\ufe63\uff0d]")
# Within a word: runs of letters and digits, single CJK characters, single other symbols.
_PIECE = re.compile(rf"(?:{text_words.LETTER})+|[{text_words.CJK}]|[^\s\w]|_")


@functools.lru_cache(maxsize=1 << 17)
def normal_word(word: str, fold_case: bool = True) -> str:
    """A word as matching compares it: NFKC; case-folded (an option); ’ ‘ ʼ ` ´ as '; hyphens
    and dashes as spaces; its letter-and-digit runs, CJK characters and other symbols as pieces
    joined by one space. So "Crohn’s" and "Crohn ' s", "non-Hodgkin" and "non Hodgkin",
    "ＨＩＶ" and "HIV" compare equal. A word of dashes alone is "" (no piece)."""
    # Control and format characters (zero-width joiners and spaces, direction marks) are no part
    # of a name: raw text drops them between words (bner.data.text), a CoNLL word may hold them.
    form = "".join(c for c in unicodedata.normalize("NFKC", word) if unicodedata.category(c) not in ("Cc", "Cf"))
    if fold_case:
        form = form.casefold()
    return " ".join(_PIECE.findall(_DASHES.sub(" ", form.translate(_QUOTES))))


def normalise(name: str, fold_case: bool = True) -> str:
    """A name as a key: its words (segmented as raw text is) normalised and joined by one space."""
    return " ".join(filter(None, (normal_word(w.text, fold_case) for w in text_words.iter_words(name))))
