"""Span classification data on small literal cases: candidates and their labels, example files,
and the inputs that show a candidate masked or marked, in the window where it has most context."""

import json
import re

import pytest

from bner.data import features
from bner.data.corpus import Sentence
from bner.data.spans import NONE, SpanDataError, SpanExample, encode_spans, read_span_examples, span_labels
from bner.dictionary.candidates import labelled_candidates
from bner.dictionary.matcher import Matcher
from bner.dictionary.names import Name
from tests.test_encoders import FAMILIES, family_tokenizer


@pytest.fixture(scope="module")
def preprocessor(tmp_path_factory):
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    path.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[", "]", "a", "b", "c", "d", "e", "##x", "##y"]) + "\n")
    return features.Preprocessor(features.build_tokenizer(vocab_file=str(path), lowercase=True), max_seq_length=64)


def shown(preprocessor, inputs):
    return [[preprocessor.tokenizer.id_to_token(int(i)) for i in x.input_ids] for x in inputs]


def test_replace_puts_one_mask_exactly_where_the_candidate_pieces_were(preprocessor):
    words = ("a", "bx", "c", "dxy", "e")
    mask = preprocessor.tokenizer.token_to_id("[MASK]")
    inputs = encode_spans(preprocessor, [SpanExample(words, 1, 2), SpanExample(words, 3, 5)], "replace", mask)
    assert shown(preprocessor, inputs) == [["[CLS]", "a", "[MASK]", "c", "d", "##x", "##y", "e", "[SEP]"],
                                           ["[CLS]", "a", "b", "##x", "c", "[MASK]", "[SEP]"]]
    assert [int(x.owned_positions[0]) for x in inputs] == [2, 5]
    with pytest.raises(ValueError, match="mask piece"):
        encode_spans(preprocessor, [SpanExample(words, 1, 2)], "replace")


def test_markers_wrap_the_candidate_and_the_classifier_reads_the_opening_one(preprocessor):
    (x,) = encode_spans(preprocessor, [SpanExample(("a", "bx", "c"), 1, 2)], "markers", label_ids=[3])
    assert shown(preprocessor, [x]) == [["[CLS]", "a", "[", "b", "##x", "]", "c", "[SEP]"]]
    assert x.owned_positions.tolist() == [2] and x.labels.tolist() == [-1, -1, 3, -1, -1, -1, -1, -1]  # learned there only


def test_a_candidate_at_a_window_edge_gets_the_context_that_fits_around_it(preprocessor):
    small = features.Preprocessor(preprocessor.tokenizer, max_seq_length=12)  # room for 10 pieces
    mask = small.tokenizer.token_to_id("[MASK]")
    words = tuple("abcde" * 8)  # 40 words of one piece each
    inputs = encode_spans(small, [SpanExample(words, 39, 40), SpanExample(words, 0, 1), SpanExample(words, 20, 21)], "replace", mask)
    last, first, middle = shown(small, inputs)
    assert last == ["[CLS]", *words[30:39], "[MASK]", "[SEP]"] and inputs[0].owned_positions[0] == 10
    assert first == ["[CLS]", "[MASK]", *words[1:10], "[SEP]"] and inputs[1].owned_positions[0] == 1
    assert middle == ["[CLS]", *words[16:20], "[MASK]", *words[21:26], "[SEP]"] and inputs[2].owned_positions[0] == 5
    # A candidate longer than the window keeps its first pieces, the opening marker first.
    (long,) = encode_spans(small, [SpanExample(words, 2, 30)], "markers")
    assert shown(small, [long])[0] == ["[CLS]", "[", *words[2:11], "[SEP]"] and long.owned_positions[0] == 1


def test_byte_level_context_keeps_the_pieces_of_running_text():
    _, tokenizer, found = family_tokenizer("roberta")
    preprocessor = features.Preprocessor(tokenizer, 64, special_tokens=found.special_tokens)
    words = ("Angela", "Merkel", "flew", "to", "Paris")
    mask = tokenizer.token_to_id("<mask>")
    (x,) = encode_spans(preprocessor, [SpanExample(words, 1, 2)], "replace", mask)
    whole = tokenizer.encode(" ".join(words), add_special_tokens=False).ids
    merkel = len(tokenizer.encode("Angela", add_special_tokens=False).ids)
    after = len(tokenizer.encode("Angela Merkel", add_special_tokens=False).ids)
    assert x.input_ids.tolist() == [tokenizer.token_to_id("<s>"), *whole[:merkel], mask, *whole[after:], tokenizer.token_to_id("</s>")]
    assert x.input_ids[x.owned_positions[0]] == mask


def test_every_dictionary_match_is_a_candidate_labelled_by_the_gold_entity_it_equals():
    matcher = Matcher.compile([Name("cold", "Disease"), Name("common cold", "Disease"), Name("cold", "Weather"), Name("Paris", "LOC")])
    sentences = [Sentence(("the", "common", "cold", "in", "Paris"), ("O", "B-Disease", "I-Disease", "O", "B-GPE"), line=3),
                 Sentence(("a", "cold", "winter"), ("O", "O", "O"), line=9)]
    examples = labelled_candidates(sentences, matcher, source="train.conll")
    assert [(e.start, e.end, e.label, e.where) for e in examples] == [
        (1, 3, "Disease", "train.conll:3"),  # equals the gold entity, and the dictionary lists its type
        (2, 3, NONE, "train.conll:3"),  # nested inside it: no entity of its own
        (4, 5, NONE, "train.conll:3"),  # a gold entity, but of a type the dictionary does not give the name
        (1, 2, NONE, "train.conll:9"),
    ]
    assert span_labels(examples) == [NONE, "Disease"]


def test_example_files_in_tsv_and_jsonl_become_word_spans(tmp_path):
    tsv = tmp_path / "examples.tsv"
    tsv.write_text("text\tstart\tend\tlabel\nA common cold in Paris.\t2\t13\tDisease\nIt was cold.\t7\t11\tnone\n", encoding="utf-8")
    first, second = read_span_examples(str(tsv))
    assert (first.words, first.start, first.end, first.label) == (("A", "common", "cold", "in", "Paris", "."), 1, 3, "Disease")
    assert (second.start, second.end, second.label, second.where) == (2, 3, NONE, f"{tsv}:3")
    jsonl = tmp_path / "examples.jsonl"
    jsonl.write_text(json.dumps({"text": "Crohn’s disease flared", "start": 0, "end": 15, "label": "Disease", "id": 7}) + "\n", encoding="utf-8")
    (only,) = read_span_examples(str(jsonl))
    assert only.words[only.start : only.end] == ("Crohn’s", "disease")
    cases = {
        "x\t0\t1\n": "examples.tsv:1: expected text<TAB>start<TAB>end<TAB>label",
        "cold day\t1\t4\tDisease\n": "examples.tsv:1: characters 1–4 ('old') do not start and end at word boundaries",
        "cold day\t0\t40\tDisease\n": "are not a span of the 8-character text",
        "cold day\t0\tfour\tDisease\n": "start and end must be whole numbers",
        "cold day\t0\t4\tB PER\n": "expected a type name without spaces",
    }
    for content, message in cases.items():
        tsv.write_text(content, encoding="utf-8")
        with pytest.raises(SpanDataError, match=re.escape(message)):
            read_span_examples(str(tsv))
    jsonl.write_text('{"text": "cold", "start": 0}\n', encoding="utf-8")
    with pytest.raises(SpanDataError, match="examples.jsonl:1: expected an object with text, start, end and label"):
        read_span_examples(str(jsonl))


def test_the_mask_piece_is_the_models_own():
    from bner.model import pretrained

    assert pretrained.mask_token({}, "bert") == "[MASK]" and pretrained.mask_token({}, "xlm-roberta") == "<mask>"
    assert pretrained.mask_token({"mask_token": {"content": "<mask>", "lstrip": True}}, "roberta") == "<mask>"
    for family in FAMILIES:
        _, tokenizer, found = family_tokenizer(family)
        assert tokenizer.token_to_id(found.mask_token) is not None, family


def test_example_labels_and_offsets_are_checked_as_strictly_as_dictionary_types(tmp_path):
    jsonl = tmp_path / "examples.jsonl"
    for record, message in (({"text": "a flu", "start": 2, "end": 5, "label": "O"}, "label 'O': is reserved"),
                            ({"text": "a flu", "start": 2.0, "end": 5, "label": "D"}, "start and end must be whole numbers"),
                            ({"text": "a flu", "start": True, "end": 5, "label": "D"}, "start and end must be whole numbers")):
        jsonl.write_text(json.dumps(record) + "\n", encoding="utf-8")
        with pytest.raises(SpanDataError, match=re.escape(message)):
            read_span_examples(str(jsonl))
    tsv = tmp_path / "examples.tsv"
    tsv.write_text("\ufefftext\tstart\tend\tlabel\na flu\t2\t5\tnone\n", encoding="utf-8")
    assert [(e.start, e.end, e.label) for e in read_span_examples(str(tsv))] == [(1, 2, NONE)]
