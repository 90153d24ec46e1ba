import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bner.data import batches, features


@pytest.fixture(scope="module")
def vocab_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "muller", "paris", "john", "##s", "lives", "in", ".", "Paris", "张"]
    path.write_text("\n".join(words) + "\n")
    return str(path)


def pieces(tokenizer, words):
    (t,) = features.tokenize(tokenizer, [words], 100)
    return [tokenizer.id_to_token(int(i)) for i in t.pieces], list(t.word_starts)


def test_uncased_tokenizer_lowercases_and_strips_accents(vocab_file):
    tokenizer = features.build_tokenizer(vocab_file=vocab_file, lowercase=True)
    assert pieces(tokenizer, ["Müller", "Johns", "Paris", "."]) == (["muller", "john", "##s", "paris", "."], [0, 1, 3, 4])


def test_cased_tokenizer_keeps_case_and_accents(vocab_file):
    tokenizer = features.build_tokenizer(vocab_file=vocab_file, lowercase=False)
    assert pieces(tokenizer, ["Paris", "Müller"]) == (["Paris", "[UNK]"], [0, 1])


def test_words_that_vanish_in_normalisation_keep_their_place(vocab_file):
    tokenizer = features.build_tokenizer(vocab_file=vocab_file, lowercase=True)
    assert pieces(tokenizer, ["john", "\u200b", "\x00", "paris"]) == (["john", "[UNK]", "[UNK]", "paris"], [0, 1, 2, 3])


def test_missing_special_tokens_are_reported(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("[UNK]\nparis\n")
    with pytest.raises(ValueError, match=r"no \[CLS\] token"):
        features.build_tokenizer(vocab_file=str(path))


def sentence_of(counts):
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    return features.TokenizedSentence(np.arange(sum(counts), dtype=np.int32), starts)


def check_windows(counts, max_pieces, overlap):
    sentence = sentence_of(counts)
    windows = features.plan_windows(sentence, max_pieces, overlap)
    owned = []
    for w in windows:
        assert sentence.word_end(w.end - 1) - sentence.word_starts[w.start] <= max(max_pieces, max(counts))
        assert w.start <= w.own_start <= w.own_end <= w.end
        owned.extend(range(w.own_start, w.own_end))
    assert owned == list(range(len(counts)))  # every word owned exactly once, in order
    return windows


def test_sentence_three_times_the_window_is_covered_with_overlap():
    windows = check_windows([1] * 30, max_pieces=10, overlap=3)
    assert len(windows) >= 3
    assert all(b.start < a.end for a, b in zip(windows, windows[1:]))  # consecutive windows overlap


def test_short_sentence_is_one_window():
    assert len(check_windows([2, 1, 3], max_pieces=10, overlap=3)) == 1


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 6), min_size=1, max_size=60), st.integers(6, 20), st.integers(0, 5))
def test_windows_cover_every_word_once(counts, max_pieces, overlap):
    check_windows(counts, max_pieces, overlap)


def test_encode_and_decode_long_sentences(vocab_file):
    tokenizer = features.build_tokenizer(vocab_file=vocab_file, lowercase=True)
    encoder = features.Preprocessor(tokenizer, max_seq_length=8)
    words = ["john", "lives", "in", "paris", "."] * 6  # 30 pieces, window of 6
    labels = list(range(len(words)))
    examples = encoder.encode([words, ["paris"]], [labels, [7]])
    assert len(examples) > 5
    assert all(len(e) <= 8 for e in examples)
    assert all(e.input_ids[0] == tokenizer.token_to_id("[CLS]") and e.input_ids[-1] == tokenizer.token_to_id("[SEP]") for e in examples)
    # Each word's label appears exactly once across all windows (learned once).
    learned = np.concatenate([e.labels[e.labels >= 0] for e in examples if e.window.sentence == 0])
    assert sorted(learned.tolist()) == labels
    # Decoding reads each word's label where it was learned.
    decoded = features.word_values(examples, [e.labels.astype(np.float32) for e in examples], 2)
    assert decoded[0].tolist() == labels and decoded[1].tolist() == [7]
    # Rows of label probabilities travel the same way.
    rows = features.word_values(examples, [np.eye(40, dtype=np.float32)[np.maximum(e.labels, 0)] for e in examples], 2)
    assert rows[0].argmax(-1).tolist() == labels and rows[0].shape == (30, 40)


def test_batches_are_bucketed_padded_and_deterministically_shuffled():
    assert batches.bucket_lengths(128) == [8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128]
    assert batches.bucket_lengths(100) == [8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 100]
    assert len(batches.bucket_lengths(512)) == 20
    lengths = [5, 20, 17, 100, 3, 60, 64, 65]
    def planned(seed):
        return [(idx.tolist(), length) for idx, length in batches.plan_batches(lengths, 2, [16, 32, 64, 128], shuffle_seed=seed)]

    plan = planned(7)
    assert plan == planned(7)
    assert sorted(i for idx, _ in plan for i in idx) == list(range(len(lengths)))
    for indices, length in plan:
        assert all(lengths[i] <= length for i in indices)
    assert any(planned(seed) != plan for seed in range(8, 12))


@pytest.mark.parametrize("shuffle_seed", [None, 1])
def test_an_epoch_has_one_partial_batch_at_most(shuffle_seed):
    """Prediction pools every bucket's leftovers; training batches cut across lengths anyway."""
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 128, size=203)
    plan = batches.plan_batches(lengths, 16, batches.bucket_lengths(128), shuffle_seed=shuffle_seed)
    assert len(plan) == -(-203 // 16)  # ceil, as without buckets
    assert sum(len(i) < 16 for i, _ in plan) == 1
    assert sorted(i for idx, _ in plan for i in idx) == list(range(203))
    assert all(lengths[idx].max() <= length for idx, length in plan)


@pytest.mark.parametrize("shuffle_seed", [None, 3])
def test_without_buckets_each_batch_is_padded_to_its_longest_example(shuffle_seed):
    """Where shapes cost nothing (TensorFlow without XLA) batches carry no padding beyond their longest."""
    lengths = np.random.default_rng(2).integers(1, 128, size=203)
    plan = batches.plan_batches(lengths, 16, None, shuffle_seed=shuffle_seed)
    assert sorted(i for idx, _ in plan for i in idx) == list(range(203))
    assert all(length == lengths[idx].max() for idx, length in plan)
    if shuffle_seed is None:  # prediction: sorted by length, so the least padding there can be
        assert np.array_equal(np.concatenate([idx for idx, _ in plan]), np.argsort(lengths, kind="stable"))
    else:  # training keeps Hugging Face's order, which does not depend on the padding
        bucketed = batches.plan_batches(lengths, 16, batches.bucket_lengths(128), shuffle_seed=shuffle_seed)
        assert [idx.tolist() for idx, _ in plan] == [idx.tolist() for idx, _ in bucketed]
    assert batches.padding_buckets(128, static_shapes=True) == batches.bucket_lengths(128)
    assert batches.padding_buckets(128, static_shapes=False) is None


def test_training_batches_follow_hugging_faces_length_grouped_order():
    """Megabatches of 9 batches (300 // (8 * 4)), each longest first; the longest example leads."""
    lengths = np.random.default_rng(1).integers(3, 128, size=300)
    plan = batches.plan_batches(lengths, 8, batches.bucket_lengths(128), shuffle_seed=4)
    order = np.concatenate([indices for indices, _ in plan])
    assert lengths[order[0]] == lengths.max()
    for start in range(0, 300, 72):
        megabatch = lengths[order[start : start + 72]]
        assert np.all(np.diff(megabatch[1:]) <= 0)  # sorted, after the first slot's swap
    assert not np.array_equal(order, np.argsort(-lengths, kind="stable"))  # shuffled across megabatches


def test_prediction_batches_are_cut_where_lengths_jump():
    """Short and long examples in one call would pad the short ones to the long: they are split,
    while examples of one length fill whole batches (an extra call costs CALL_COST_PIECES)."""
    lengths = np.array([100] * 8 + [5] * 8)
    plan = batches.plan_batches(lengths, 16, None)
    assert [(sorted(idx.tolist()), length) for idx, length in plan] == [(list(range(8, 16)), 5), (list(range(8)), 100)]
    same = batches.plan_batches(np.full(40, 30), 16, None)
    assert sorted(len(idx) for idx, _ in same) == [8, 16, 16]


@given(st.lists(st.integers(1, 128), min_size=1, max_size=80), st.integers(1, 20))
def test_cheapest_cuts_never_pad_more_than_full_batches(lengths, batch_size):
    sorted_lengths = np.sort(np.array(lengths))
    cuts = batches.cheapest_cuts(sorted_lengths, batch_size)
    assert cuts[0] == 0 and cuts[-1] == len(lengths) and all(0 < b - a <= batch_size for a, b in zip(cuts, cuts[1:]))

    def cost(bounds):
        return sum((b - a) * sorted_lengths[b - 1] + batches.CALL_COST_PIECES for a, b in zip(bounds, bounds[1:]))

    full = [*range(0, len(lengths), batch_size), len(lengths)]
    assert cost(cuts) <= cost(full)
