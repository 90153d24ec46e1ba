import pytest
from hypothesis import given
from hypothesis import strategies as st

from bner.data import corpus
from bner.data.corpus import Span


def test_reads_four_column_files_with_documents_bom_crlf_and_whitespace_separators(tmp_path):
    text = (
        "\ufeff-DOCSTART- -X- -X- O\r\n\r\n"
        "EU NNP B-NP I-ORG\r\nrejects VBZ B-VP O\r\n \t \r\n"
        "Peter NNP B-NP I-PER\r\nBlackburn NNP I-NP I-PER\r\n\r\n"
        "-DOCSTART- -X- -X- O\r\n\r\nBonn NNP B-NP I-LOC\r\n"
    )
    path = tmp_path / "train.conll"
    path.write_bytes(text.encode("utf-8"))
    sentences = corpus.read_conll(str(path))
    assert [s.words for s in sentences] == [("EU", "rejects"), ("Peter", "Blackburn"), ("Bonn",)]
    assert [s.tags for s in sentences] == [("I-ORG", "O"), ("I-PER", "I-PER"), ("I-LOC",)]
    assert [s.document for s in sentences] == [1, 1, 2]
    assert [s.line for s in sentences] == [3, 6, 11]


def test_reads_two_column_tab_separated_files():
    sentences = corpus.parse_conll("Paris\tB-LOC\nis\tO\n\nHi\tO\n")
    assert [s.tags for s in sentences] == [("B-LOC", "O"), ("O",)]


@pytest.mark.parametrize(
    "text, line, expected",
    [
        ("Paris B-LOC\nis\n", 2, "expected a word and a tag"),
        ("Paris NNP B-LOC\nis O\n", 2, "expected 3 columns"),
        ("Paris LOC\n", 1, "expected a tag like O, B-PER"),
        ("Paris X-LOC\n", 1, "expected a tag like"),
    ],
)
def test_malformed_lines_name_file_line_and_expectation(text, line, expected):
    with pytest.raises(corpus.CorpusError) as error:
        corpus.parse_conll(text, source="data/train.conll")
    assert str(error.value).startswith(f"data/train.conll:{line}: ")
    assert expected in str(error.value)


def test_non_utf8_file_names_its_line(tmp_path):
    path = tmp_path / "bad.conll"
    path.write_bytes(b"Paris B-LOC\n\nM\xfcller B-PER\n")
    with pytest.raises(corpus.CorpusError, match=r"bad.conll:3: expected UTF-8"):
        corpus.read_conll(str(path))


def test_empty_and_missing_files_are_errors(tmp_path):
    (tmp_path / "empty.conll").write_text("\n\n")
    with pytest.raises(corpus.CorpusError, match="no sentences"):
        corpus.read_conll(str(tmp_path / "empty.conll"))
    with pytest.raises(corpus.CorpusError, match="file not found"):
        corpus.read_conll(str(tmp_path / "missing.conll"))


def test_iob1_spans_follow_conlleval():
    # I-X after O starts an entity; B-X separates two adjacent entities of one type.
    tags = ["I-PER", "I-PER", "B-PER", "O", "I-LOC", "I-ORG", "I-ORG"]
    assert corpus.entity_spans(tags) == [
        Span("PER", 0, 2), Span("PER", 2, 3), Span("LOC", 4, 5), Span("ORG", 5, 7)
    ]


def test_iob2_ill_formed_sequences_read_as_conlleval_does():
    assert corpus.entity_spans(["O", "I-PER", "I-PER"]) == [Span("PER", 1, 3)]
    assert corpus.entity_spans(["B-PER", "I-LOC"]) == [Span("PER", 0, 1), Span("LOC", 1, 2)]
    assert corpus.entity_spans(["B-creative-work", "I-creative-work"]) == [Span("creative-work", 0, 2)]


def test_iobes_spans():
    tags = ["S-PER", "S-PER", "B-LOC", "I-LOC", "E-LOC", "O", "B-ORG", "E-ORG", "I-ORG"]
    assert corpus.entity_spans(tags) == [
        Span("PER", 0, 1), Span("PER", 1, 2), Span("LOC", 2, 5), Span("ORG", 6, 8), Span("ORG", 8, 9)
    ]


def test_scheme_detection():
    assert corpus.detect_scheme([["I-PER", "O", "I-LOC", "B-LOC"]]) == "IOB1"
    assert corpus.detect_scheme([["B-PER", "I-PER", "O"]]) == "IOB2"
    assert corpus.detect_scheme([["S-PER", "O"]]) == "IOBES"
    assert corpus.detect_scheme([["O", "O"]]) == "IOB2"


def test_conversions_between_schemes():
    iob1 = ["I-PER", "I-PER", "B-PER", "O", "I-LOC"]
    assert corpus.convert_tags(iob1, "IOB2") == ["B-PER", "I-PER", "B-PER", "O", "B-LOC"]
    assert corpus.convert_tags(iob1, "IOBES") == ["B-PER", "E-PER", "S-PER", "O", "S-LOC"]
    assert corpus.convert_tags(corpus.convert_tags(iob1, "IOB2"), "IOB1") == iob1


def test_label_list_is_deterministic_with_o_first():
    assert corpus.label_list(["PER", "LOC"], "IOB2") == ["O", "B-LOC", "B-PER", "I-LOC", "I-PER"]
    assert corpus.label_list({"LOC"}, "IOBES") == ["O", "B-LOC", "E-LOC", "I-LOC", "S-LOC"]


tag_sequences = st.lists(
    st.sampled_from(["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "E-PER", "S-LOC"]), max_size=30
)


@given(tag_sequences, st.sampled_from(corpus.SCHEMES))
def test_rendering_spans_in_any_scheme_keeps_the_entities(tags, scheme):
    spans = corpus.entity_spans(tags)
    rendered = corpus.spans_to_tags(spans, len(tags), scheme)
    assert corpus.entity_spans(rendered) == spans
    assert all(0 <= s.start < s.end <= len(tags) for s in spans)
    assert all(a.end <= b.start for a, b in zip(spans, spans[1:]))


@given(st.lists(st.lists(st.sampled_from(["O", "B-PER", "I-PER", "I-LOC"]), min_size=1, max_size=8), min_size=1, max_size=5))
def test_parse_format_round_trip(tag_lists):
    rows = [[(f"w{i}", t) for i, t in enumerate(tags)] for tags in tag_lists]
    parsed = corpus.parse_conll(corpus.format_conll(rows))
    assert [list(s.tags) for s in parsed] == tag_lists


def test_scheme_follows_the_majority_and_says_where_the_strays_are():
    iob1 = [corpus.Sentence(("a", "b", "c"), ("I-PER", "O", "I-LOC"), line=10 * i + 1) for i in range(50)]
    strays = [corpus.Sentence(("x", "y"), ("O", "B-ORG"), line=1000), corpus.Sentence(("z",), ("B-PER",), line=2000)]
    evidence = corpus.scheme_evidence(iob1 + strays)
    assert evidence.scheme == "IOB1" and corpus.detect_scheme(s.tags for s in iob1 + strays) == "IOB1"
    warning = evidence.inconsistency("train.conll")
    assert warning.startswith("2 entities start with B- after O or another type, against 100 that follow IOB1")
    assert "train.conll:1001, train.conll:2000" in warning
    assert corpus.scheme_evidence(iob1).inconsistency() is None


def test_a_few_stray_iobes_tags_do_not_make_a_corpus_iobes():
    iob2 = [corpus.Sentence(("a", "b"), ("B-PER", "I-PER"), line=3 * i + 1) for i in range(20)]
    typo = [corpus.Sentence(("c",), ("S-LOC",), line=500)]
    evidence = corpus.scheme_evidence(iob2 + typo)
    assert evidence.scheme == "IOB2" and "1 E-/S- tags in data read as IOB2 (first at t:500)" in evidence.inconsistency("t")
    iobes = [corpus.Sentence(("a", "b", "c"), ("B-PER", "E-PER", "S-LOC"), line=1)] * 5
    assert corpus.scheme_evidence(iobes).scheme == "IOBES" and corpus.scheme_evidence(iobes).inconsistency() is None
    # IOBES with IOB1's I- openings mixed in (one type rewritten, the others not) is said, with where.
    mixed = iobes + [corpus.Sentence(("d", "e"), ("O", "I-ORG"), line=700)]
    assert corpus.scheme_evidence(mixed).inconsistency("t").startswith("1 entity starts with I- after O or another type, where IOBES")
    assert "(first at t:701)" in corpus.scheme_evidence(mixed).inconsistency("t")


def test_errors_say_how_to_fix_the_encoding_and_the_column_order(tmp_path):
    latin = tmp_path / "latin.conll"
    latin.write_bytes("Café\tO\nZürich\tB-LOC\n\n".encode("cp1252"))
    with pytest.raises(corpus.CorpusError, match=r"latin\.conll:1: expected UTF-8 text .*Windows-1252.*iconv -f WINDOWS-1252 -t UTF-8"):
        corpus.read_conll(str(latin))
    swapped = tmp_path / "swapped.conll"
    swapped.write_text("B-PER\tAngela\nI-PER\tMerkel\nO\tflew\n\n", encoding="utf-8")
    with pytest.raises(corpus.CorpusError, match="the first column holds the tags here.*pass --columns=tag,word"):
        corpus.read_conll(str(swapped))
    assert [s.words for s in corpus.read_conll(str(swapped), columns="tag,word")] == [("Angela", "Merkel", "flew")]
    assert corpus.read_conll(str(swapped), columns="tag,word")[0].tags == ("B-PER", "I-PER", "O")
    wide = tmp_path / "wide.conll"
    wide.write_text("Angela NNP B-NP B-PER\nMerkel NNP I-NP I-PER\n\n", encoding="utf-8")
    assert corpus.read_conll(str(wide), columns="word,pos,chunk,tag")[0].tags == ("B-PER", "I-PER")
    with pytest.raises(corpus.CorpusError, match="word and tag once each"):
        corpus.read_conll(str(wide), columns="word,pos")
    odd = tmp_path / "odd.conll"
    odd.write_text("Angela\tPERSON\n\n", encoding="utf-8")
    with pytest.raises(corpus.CorpusError) as caught:
        corpus.read_conll(str(odd))
    assert "first column holds the tags" not in str(caught.value)
