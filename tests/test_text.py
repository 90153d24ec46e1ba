from hypothesis import given
from hypothesis import strategies as st

from bner.data import text


def words(s):
    return [w.text for w in text.segment(s)]


def test_punctuation_is_split_like_conll_data():
    assert words("Mr. Smith, of the U.S., said: \"no\".") == ["Mr.", "Smith", ",", "of", "the", "U.S.", ",", "said", ":", '"', "no", '"', "."]
    assert words("It's 3.5% of $1,000 (e-mail me@x.org)") == ["It's", "3.5", "%", "of", "$", "1,000", "(", "e-mail", "me@x.org", ")"]


def test_offsets_point_into_the_original_text():
    s = "Zoë  met\tJosé 🙂 in 東京 and Crème brûlée e\u0301te."
    for w in text.segment(s):
        assert s[w.start : w.end] == w.text
    assert "🙂" in words(s) and words("在東京")  == ["在", "東", "京"] and "e\u0301te" in words(s)


@given(st.text(max_size=80))
def test_segmentation_covers_every_visible_non_space_character(s):
    segmented = text.segment(s)
    covered = "".join(w.text for w in segmented)
    visible = lambda t: "".join(c for c in t if not text._invisible(c))  # noqa: E731
    assert visible(covered) == visible("".join(s.split()))
    assert all(visible(w.text) for w in segmented)
    assert all(s[w.start : w.end] == w.text and w.text.strip() == w.text for w in segmented)


def test_a_corpus_of_sentences_is_told_from_one_of_tweets():
    sentences = [("The", "APC", "gene", "is", "mutated", "."), ("Dr.", "Smith", "saw", "it", ".")] * 10
    tweets = [("lol", "gonna", "be", "late", ".", "See", "you", "at", "5", "!")] * 3 + sentences[:6]
    assert text.units_are_sentences(sentences)
    assert not text.units_are_sentences(tweets)  # a third of these units hold two sentences
    assert not text.units_are_sentences([])


def test_characters_the_tokenizer_deletes_are_no_words():
    # NUL, zero-width space and joiner, a right-to-left override, the replacement character.
    assert words("Angela\x00 Merkel \u200d met\u200bhim \u202e\ufffd .") == ["Angela", "Merkel", "met", "him", "."]
    assert [(w.start, w.end) for w in text.segment("a\u200bb")] == [(0, 1), (2, 3)]
