"""Every encoder family bner builds computes what Hugging Face's PyTorch implementation does.

The fixtures (tests/fixtures/encoders/, written by scripts/make_encoder_fixtures.py with
transformers and torch) are tiny random models with their reference outputs, so this test
needs neither. The tolerance is float32's; the last test shows it would catch a wrong
activation or LayerNorm epsilon.
"""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np
import pytest

from bner.model import network, pretrained

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "encoders"
FAMILIES = sorted(p.name for p in FIXTURES.iterdir() if (p / "config.json").exists())
TOLERANCE = 1e-4


def encoder_output(folder: pathlib.Path, **changes) -> tuple[np.ndarray, np.ndarray]:
    found = pretrained.locate_pretrained(str(folder))
    encoder = network.build_encoder(dataclasses.replace(found.config, **changes))
    found.load_weights(encoder)
    expected = np.load(folder / "expected.npz")
    ids, mask = expected["input_ids"], expected["attention_mask"]
    hidden = np.asarray(encoder(ids, np.zeros_like(ids), mask, training=False))
    return np.where(mask[..., None] == 1, hidden, 0.0), expected["hidden"]


def test_every_family_has_a_fixture():
    assert set(FAMILIES) == {"albert", "bert", "deberta-v2", "deberta-v3", "distilbert", "electra", "roberta", "xlm-roberta"}


@pytest.mark.parametrize("family", FAMILIES)
def test_encoder_matches_the_reference(family):
    got, expected = encoder_output(FIXTURES / family)
    assert expected.shape[1] > 128  # a sequence longer than 128, and two shorter ones padded to it
    assert np.abs(got - expected).max() < TOLERANCE


@pytest.mark.parametrize("family", FAMILIES)
def test_the_tolerance_catches_a_wrong_activation_or_epsilon(family):
    folder = FIXTURES / family
    config = pretrained.locate_pretrained(str(folder)).config
    wrong_act = "gelu_new" if config.hidden_act == "gelu" else "gelu"
    wrong_eps = 1e-5 if config.layer_norm_eps != 1e-5 else 1e-12
    for change in ({"hidden_act": wrong_act}, {"layer_norm_eps": wrong_eps}):
        got, expected = encoder_output(folder, **change)
        assert np.abs(got - expected).max() > 4 * TOLERANCE, change  # measured: 5e-4 or more


# ---------------------------------------------------------------- tokenizers

TRICKY = [
    ["Angela", "Merkel", "flew", "to", "Paris", "."],
    ["naïve", "café", "in", "Zürich", "São", "Paulo"],
    ["東京", "and", "北京", "ソニー"],
    ["emoji", "😀", "👍🏽", "text"],
    ["don't", "U.S.", "e-mail", "COVID-19", "IL-2"],
    ["Supercalifragilisticexpialidocious", "x"],
]


def family_tokenizer(family: str):
    found = pretrained.locate_pretrained(str(FIXTURES / family))
    from bner.data import features

    lowercase = None
    if features.is_wordpiece(found.vocab_file, found.tokenizer_file):
        lowercase = pretrained.model_lowercases(found)
    return features, features.build_tokenizer(found.vocab_file, found.tokenizer_file, lowercase, lowercase, found.special_tokens), found


@pytest.mark.parametrize("family", FAMILIES)
def test_words_get_the_pieces_of_running_text(family):
    """Each word's pieces are those the tokenizer gives the running text, in order, each word's
    own, and nothing lost: the concatenation is the running text's encoding."""
    import tokenizers

    features, tokenizer, found = family_tokenizer(family)
    reference = tokenizers.Tokenizer.from_str((FIXTURES / family / "tokenizer.json").read_text())
    for words in TRICKY:
        (sentence,) = features.tokenize(tokenizer, [words], 100, tokenizer.token_to_id(found.special_tokens["unk"]))
        expected = reference.encode(" ".join(words), add_special_tokens=False)
        assert sentence.pieces.tolist() == expected.ids, words
        assert sentence.num_words == len(words)
        for i, word in enumerate(words):
            pieces = [tokenizer.id_to_token(int(p)) for p in sentence.pieces[sentence.word_starts[i]:sentence.word_end(i)]]
            decoded = reference.decoder.decode(pieces) if reference.decoder else " ".join(pieces)
            if "<unk>" not in pieces and "[UNK]" not in pieces:
                normalised = reference.normalizer.normalize_str(word) if reference.normalizer else word
                assert decoded.strip().replace(" ", "") == normalised.strip().replace(" ", ""), (word, pieces)


def test_byte_level_words_after_the_first_carry_their_space():
    features, tokenizer, found = family_tokenizer("roberta")
    (sentence,) = features.tokenize(tokenizer, [["Paris", "Paris"]], 100, tokenizer.token_to_id("<unk>"))
    first, second = (tokenizer.id_to_token(int(sentence.pieces[s])) for s in sentence.word_starts)
    assert not first.startswith("Ġ") and second.startswith("Ġ")


def test_sentencepiece_marks_every_word():
    for family in ("xlm-roberta", "deberta-v3", "albert"):
        features, tokenizer, found = family_tokenizer(family)
        (sentence,) = features.tokenize(tokenizer, [["Paris", "flew", "東京"]], 100, tokenizer.token_to_id(found.special_tokens["unk"]))
        for start in sentence.word_starts:
            assert tokenizer.id_to_token(int(sentence.pieces[start])).startswith("▁"), family


@pytest.mark.parametrize("family", FAMILIES)
def test_a_word_of_nothing_keeps_its_place(family):
    """A zero-width or control character becomes at least one piece ([UNK] where the tokenizer
    drops it), and the words after it keep their own pieces."""
    features, tokenizer, found = family_tokenizer(family)
    unk = tokenizer.token_to_id(found.special_tokens["unk"])
    for nothing in ("\u200b", "\x07", "\ufeff"):
        (sentence,) = features.tokenize(tokenizer, [["Paris", nothing, "London"]], 100, unk)
        (plain,) = features.tokenize(tokenizer, [["Paris", "London"]], 100, unk)
        assert sentence.num_words == 3
        assert sentence.word_end(1) > sentence.word_starts[1]
        assert sentence.pieces[sentence.word_starts[2]:].tolist() == plain.pieces[plain.word_starts[1]:].tolist()


@pytest.mark.parametrize("family", FAMILIES)
def test_special_tokens_are_the_models_own(family):
    features, tokenizer, found = family_tokenizer(family)
    expected = {"roberta": "<s>", "xlm-roberta": "<s>"}.get(family, "[CLS]")
    assert found.special_tokens["cls"] == expected
    for token in found.special_tokens.values():
        assert tokenizer.token_to_id(token) is not None


# ---------------------------------------------------------------- the whole path


@pytest.mark.parametrize("family", [f for f in FAMILIES if f != "bert"])  # BERT's path is every other test's
def test_each_family_trains_exports_loads_and_tags(family, tmp_path):
    import bner
    from bner.config import TrainConfig
    from bner.model.metadata import read_metadata
    from tests.conftest import write_synthetic_data

    data = write_synthetic_data(tmp_path / "data", train=80, dev=20, test=20)
    config = TrainConfig.from_settings(
        pretrained_model=str(FIXTURES / family), data_dir=data, output_dir=str(tmp_path / "out"), num_train_epochs=2,
        learning_rate=1e-3, train_batch_size=16, max_seq_length=24, precision="float32", progress=False,
    )
    result = bner.train(config, say=lambda line: None)
    assert result.export_path and 0.0 <= result.test["f1"] <= 100.0
    metadata = read_metadata(result.export_path)
    found = pretrained.locate_pretrained(str(FIXTURES / family))
    assert metadata.encoder.family == found.config.family and metadata.special_tokens == found.special_tokens
    texts = ["Angela Merkel flew to Paris on Monday .", "naïve café 😀 in Zürich", "a sentence " * 20]
    from_export, from_model = bner.load(result.export_path), bner.load(result.model_dir)
    assert from_export.backend.name != from_model.backend.name  # the SavedModel, and the Keras network
    assert from_export.predict(texts) == from_model.predict(texts)
    words = [["Angela", "Merkel", "flew"], ["x"] * 30]  # the second is longer than a window
    tagged = from_export.tag(words)
    assert tagged == from_model.tag(words) and [len(tags) for tags in tagged] == [3, 30]
