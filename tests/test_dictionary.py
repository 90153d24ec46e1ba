"""Dictionary NER on small literal cases: reading, normalising, matching, saving and tagging."""

import json
import random
import re
import subprocess
import sys
import time
import unicodedata

import pytest

import bner
from bner.dictionary import names as dictionary_names
from bner.dictionary.matcher import Matcher, longest_first
from bner.dictionary.names import DictionaryError, Name
from bner.dictionary.normal import normal_word, normalise


def matcher(*entries, **options) -> Matcher:
    return Matcher.compile([Name(*e) for e in entries], **options)


def found(m: Matcher, text: str) -> list[tuple[str, str]]:
    """(matched text, first type) of each match in a raw text, with its character offsets checked."""
    words, matches = m.match_text(text)
    return [(text[words[x.start].start : words[x.end - 1].end], m.entries(x.key)[0][0]) for x in matches]


def test_normalisation_equates_what_users_write_alike():
    assert normal_word("Crohn’s") == normalise("Crohn ' s") == "crohn ' s"
    assert normalise("non-Hodgkin") == normalise("non Hodgkin") == normalise("non – Hodgkin") == "non hodgkin"
    assert normal_word("ＨＩＶ") == "hiv" and normal_word("Straße") == "strasse"
    assert normal_word(unicodedata.normalize("NFD", "Ménière")) == normal_word("Ménière") == "ménière"
    assert normal_word("---") == "" and normal_word("U.S.") == "u . s ."
    assert normal_word("糖尿病") == "糖 尿 病" and normal_word("AIDS", fold_case=False) == "AIDS"


def test_matches_respect_word_boundaries_and_case_option():
    m = matcher(("cold", "Disease", "D1"), ("AIDS", "Disease", "D2"))
    # A match is whole words, as the tagger's: "cold-hearted" is one word of raw text (its CoNLL form,
    # "cold - hearted", is three, and there "cold" is found).
    assert found(m, "A cold. Colder, scold, cold-hearted, COLD") == [("cold", "Disease"), ("COLD", "Disease")]
    assert [(x.start, x.end) for x in m.match_words(["cold", "-", "hearted"])] == [(0, 1)]
    assert found(m, "hearing aids") == [("aids", "Disease")]
    kept = matcher(("AIDS", "Disease", "D2"), fold_case=False)
    assert found(kept, "hearing aids and AIDS") == [("AIDS", "Disease")]


def test_overlapping_and_nested_matches_are_all_candidates_and_resolve_longest_first():
    m = matcher(("non-Hodgkin lymphoma", "Disease"), ("Hodgkin lymphoma", "Disease"), ("lymphoma", "Disease"),
                ("breast cancer", "Disease"), ("cancer cells", "Cell"))
    text = "non-Hodgkin lymphoma ; breast cancer cells"  # "non-Hodgkin" is one word: no match starts inside it
    assert found(m, text) == [("non-Hodgkin lymphoma", "Disease"), ("lymphoma", "Disease"),
                              ("breast cancer", "Disease"), ("cancer cells", "Cell")]
    words, matches = m.match_text(text)
    kept = longest_first(matches)
    assert [" ".join(w.text for w in words[x.start : x.end]) for x in kept] == ["non-Hodgkin lymphoma", "breast cancer"]
    # The CoNLL form of the same words (hyphen split off) matches the same names, and the nested one.
    assert [(x.start, x.end) for x in m.match_words("non - Hodgkin lymphoma".split())] == [(0, 4), (2, 4), (3, 4)]


def test_offsets_are_exact_across_accents_cjk_emoji_and_repeated_spaces():
    m = matcher(("Ménière's disease", "Disease", "D3"), ("糖尿病", "Disease", "D4"), ("HIV", "Virus"))
    decomposed = unicodedata.normalize("NFD", "Ménière")
    text = f"🧪 Patients  with {decomposed}’s   disease,\u00a0患者糖尿病。ＨＩＶ+"
    assert found(m, text) == [(f"{decomposed}’s   disease", "Disease"), ("糖尿病", "Disease"), ("ＨＩＶ", "Virus")]


def test_entries_keep_every_type_and_identifier_of_a_name():
    m = matcher(("cold", "Disease", "MESH:D003139"), ("Cold", "Temperature", ""), ("common cold", "Disease", "MESH:D003139"),
                ("cold", "Disease", "MESH:D003139"))
    assert len(m) == 2 and m.names == 4
    assert m.entries(m.match_words(["cold"])[0].key) == (("Disease", "MESH:D003139"), ("Temperature", ""))


def test_variants_uninverted_and_plural():
    assert dictionary_names.uninverted("Scleroderma, Systemic") == "Systemic Scleroderma"
    assert dictionary_names.uninverted("Anemia, Hemolytic, Congenital") == "Congenital Hemolytic Anemia"
    assert dictionary_names.uninverted("1,2-dioxin") is None
    assert [dictionary_names.plural(n) for n in ("breast tumor", "abscess", "ovary", "day", "BRCA1", "type 2", "lupus")] == \
        ["breast tumors", "abscesses", "ovaries", "days", None, None, None]
    varied = [n.name for n in dictionary_names.with_variants([Name("Neoplasm, Breast", "D")], plurals=True)]
    assert varied == ["Neoplasm, Breast", "Breast Neoplasm", "Breast Neoplasms"]


def test_dictionary_files_read_with_errors_that_name_file_and_line(tmp_path):
    good = tmp_path / "names.tsv"
    good.write_text("name\ttype\tidentifier\nBreast Neoplasms\tDisease\tMESH:D001943\n\ncolitis\tDisease\n", encoding="utf-8")
    assert list(dictionary_names.read_names(str(good))) == [Name("Breast Neoplasms", "Disease", "MESH:D001943"),
                                                             Name("colitis", "Disease")]
    cases = {
        "colitis\n": ":1: expected name<TAB>type",
        "a\tDisease\nb\tDisease\tX\tY\n": ":2: expected name<TAB>type",
        "cold\tnone\n": "type 'none': is reserved",
        "cold\tB PER\n": "without spaces",
        "\tDisease\n": ":1: the name (first field) is empty",
    }
    for content, message in cases.items():
        message = re.escape(message)
        bad = tmp_path / "bad.tsv"
        bad.write_text(content, encoding="utf-8")
        with pytest.raises(DictionaryError, match=message):
            list(dictionary_names.read_names(str(bad)))
    (tmp_path / "latin1.tsv").write_bytes("ok\tD\nM\xe9ni\xe8re\tD\n".encode("latin-1"))
    with pytest.raises(DictionaryError, match=r"latin1.tsv:2: not UTF-8"):
        list(dictionary_names.read_names(str(tmp_path / "latin1.tsv")))
    with pytest.raises(DictionaryError, match="has no letter, digit or symbol"):
        matcher(("--", "Disease"))


def test_saved_dictionary_loads_equal_and_refuses_other_rules_or_edits(tmp_path):
    m = matcher(("Crohn's disease", "Disease", "D1"), ("cold", "Disease", "D2"), ("cold", "Temp", ""))
    m.save(str(tmp_path / "d"))
    loaded = Matcher.load(str(tmp_path / "d"))
    assert loaded.keys == m.keys and [loaded.entries(i) for i in range(len(m))] == [m.entries(i) for i in range(len(m))]
    assert (loaded.types, loaded.fold_case, loaded.names) == (m.types, m.fold_case, m.names)
    settings = json.loads((tmp_path / "d" / "dictionary.json").read_text())
    (tmp_path / "d" / "dictionary.json").write_text(json.dumps({**settings, "normalisation": 0}))
    with pytest.raises(DictionaryError, match="compile the dictionary again"):
        Matcher.load(str(tmp_path / "d"))
    (tmp_path / "d" / "dictionary.json").write_text(json.dumps(settings))
    lines = (tmp_path / "d" / "names.tsv").read_text().splitlines()
    (tmp_path / "d" / "names.tsv").write_text("\n".join([lines[1], lines[0], lines[2]]) + "\n")
    with pytest.raises(DictionaryError, match="not together"):
        Matcher.load(str(tmp_path / "d"))


def test_a_hundred_thousand_names_compile_and_match_in_a_test_sized_time():
    rng = random.Random(0)
    syllables = [a + b for a in "bdgklmnprstvz" for b in "aeiou"]
    made_up = sorted({" ".join("".join(rng.choice(syllables) for _ in range(3)) for _ in range(rng.randint(1, 3)))
                      for _ in range(100_000)})
    started = time.perf_counter()
    m = Matcher.compile(Name(n, "Made", f"X:{i}") for i, n in enumerate(made_up))
    text = " . ".join(made_up[::1000])
    words, matches = m.match_text(text)
    assert time.perf_counter() - started < 60  # seconds; bench/dictionary_matching.py measures speed
    spans = {(words[x.start].start, words[x.end - 1].end) for x in matches}
    offset = 0
    for name in made_up[::1000]:  # every name placed in the text is found where it was placed
        assert (offset, offset + len(name)) in spans
        offset += len(name) + 3


def test_harvest_lists_distinct_mentions_with_their_types():
    from bner.data.corpus import Sentence

    sentences = [Sentence(("Crohn", "'", "s", "disease", "and", "colitis"), ("B-D", "I-D", "I-D", "I-D", "O", "B-D")),
                 Sentence(("colitis", "again"), ("B-D", "O"))]
    assert dictionary_names.harvest(sentences) == [Name("Crohn ' s disease", "D"), Name("colitis", "D")]


def test_a_compiled_dictionary_is_a_model_for_load_evaluate_and_predict(tmp_path):
    names = tmp_path / "names.tsv"
    names.write_text("Crohn's disease\tDisease\tMESH:D003424\nColitis, Ulcerative\tDisease\tMESH:D003093\n"
                     "cold\tDisease\tMESH:D003139\ncold\tDisease\tMESH:C000001\n", encoding="utf-8")
    folder = str(tmp_path / "dictionary")
    cli = [sys.executable, "-m", "bner.cli.main"]
    done = subprocess.run([*cli, "dictionary", "compile", str(names), "--output", folder], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    tagger = bner.load(folder)
    entities = tagger("Crohn’s disease or ulcerative colitis? A cold.")
    assert [(e.text, e.type, e.start, e.identifier) for e in entities] == [
        ("Crohn’s disease", "Disease", 0, "MESH:D003424"), ("ulcerative colitis", "Disease", 19, "MESH:D003093"),
        ("cold", "Disease", 41, "MESH:D003139|MESH:C000001")]
    assert entities[0].as_dict()["identifier"] == "MESH:D003424"
    gold = tmp_path / "gold.conll"
    gold.write_text("-DOCSTART- O\n\nCrohn B-Disease\n' I-Disease\ns I-Disease\ndisease I-Disease\n, O\ncold O\n\n", encoding="utf-8")
    scores = tagger.evaluate(str(gold))
    assert (scores.overall.correct, scores.overall.predicted, scores.overall.gold) == (1, 2, 1)
    texts = tmp_path / "texts.txt"
    texts.write_text("Ulcerative colitis.\n", encoding="utf-8")
    done = subprocess.run([*cli, "predict", folder, str(texts)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["entities"] == [
        {"text": "Ulcerative colitis", "type": "Disease", "start": 0, "end": 18, "score": 1.0, "identifier": "MESH:D003093"}]
    bad = tmp_path / "bad.tsv"
    bad.write_text("x\tDisease\ny\n", encoding="utf-8")
    done = subprocess.run([*cli, "dictionary", "compile", str(bad), "--output", str(tmp_path / "no")], capture_output=True, text=True)
    assert done.returncode == 2 and "bad.tsv:2: expected name<TAB>type" in done.stderr and not (tmp_path / "no").exists()


def test_review_cases_abbreviation_periods_byte_order_marks_invisible_characters_and_dashes(tmp_path):
    m = matcher(("Tom", "PER"), ("Acme Inc", "ORG"), ("flu", "Disease"))
    # Raw text keeps a short capitalised word's final period ("Tom.", as in "Dr."): a name ending
    # before it is still found, and the entity is the word, as the tagger would label it.
    assert found(m, "I met Tom. Acme Inc. said It was Flu.") == [("Tom.", "PER"), ("Acme Inc.", "ORG"), ("Flu.", "Disease")]
    assert [(x.start, x.end) for x in m.match_words(["fl\u200bu", "Tom\u200d"])] == [(0, 1), (1, 2)]  # zero-width characters
    bom = tmp_path / "bom.tsv"
    bom.write_text("\ufeffname\ttype\tidentifier\nflu\tDisease\tD1\n", encoding="utf-8")
    assert list(dictionary_names.read_names(str(bom))) == [Name("flu", "Disease", "D1")]
    from bner.data.corpus import Sentence

    assert dictionary_names.harvest([Sentence(("-", "flu"), ("B-D", "B-D"))]) == [Name("flu", "D")]
    for reserved in ("none", "None", "O", "two words"):
        with pytest.raises(DictionaryError, match="type"):
            matcher(("flu", reserved))
