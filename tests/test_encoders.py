"""Every encoder family bner builds computes what Hugging Face's PyTorch implementation does.

The fixtures (tests/fixtures/encoders/, written by scripts/make_encoder_fixtures.py with
transformers and torch) are tiny random models with their reference outputs, so this test
needs neither. The tolerance is float32's; the last test shows it would catch a wrong
activation or LayerNorm epsilon.
"""

from __future__ import annotations

import dataclasses
import os
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
def test_document_windows_pack_every_familys_pieces_and_move_each_epoch(family):
    """Packing counts pieces as the running text has them, with the model's own [UNK], so no
    window overflows into an extra one and later epochs keep as many windows with moved boundaries."""
    from bner.data import corpus
    from bner.training.recipe import document_examples
    from tests.conftest import synthetic_sentences

    features, tokenizer, found = family_tokenizer(family)
    preprocessor = features.Preprocessor(tokenizer, 32, special_tokens=found.special_tokens)
    train = [corpus.Sentence(words, tags, 1 + i // 6) for i, (words, tags) in enumerate(synthetic_sentences(120, 1))]
    labels = [[n + k for k in range(len(s.words))] for n, s in zip(np.cumsum([0] + [len(s.words) for s in train]), train)]
    examples, members = document_examples(preprocessor, train, labels, epochs=3, seed=1)
    total = sum(len(s.words) for s in train)
    for epoch in members:
        learned = sorted(label for i in epoch for label in examples[i].labels[examples[i].labels >= 0].tolist())
        assert learned == list(range(total)) and all(len(examples[i]) <= 32 for i in epoch)
    assert not np.array_equal(members[0], members[1]) and not np.array_equal(members[1], members[2])


@pytest.mark.parametrize("family", FAMILIES)
def test_special_tokens_are_the_models_own(family):
    features, tokenizer, found = family_tokenizer(family)
    expected = {"roberta": "<s>", "xlm-roberta": "<s>"}.get(family, "[CLS]")
    assert found.special_tokens["cls"] == expected
    for token in found.special_tokens.values():
        assert tokenizer.token_to_id(token) is not None


# ---------------------------------------------------------------- the whole path


def fused_layer_norms(export: str, optimized) -> tuple[bool, int]:
    """Whether ONNX Runtime's graph of the export's model.onnx holds fused LayerNormalization
    kernels, and how many means it still computes on their own (0: every LayerNorm was fused)."""
    import onnx
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.optimized_model_filepath, options.log_severity_level = str(optimized), 3
    onnxruntime.InferenceSession(os.path.join(export, "model.onnx"), options, providers=["CPUExecutionProvider"])
    ops = [node.op_type for node in onnx.load(str(optimized)).graph.node]
    return "LayerNormalization" in ops, sum(op in ("ReduceMean", "GlobalAveragePool") for op in ops)



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
        export_int8=True, int8_f1_budget=100,  # kept whatever it costs: this checks that every family quantises and runs
    )
    result = bner.train(config, say=lambda line: None)
    assert result.export_path and 0.0 <= result.test["f1"] <= 100.0
    metadata = read_metadata(result.export_path)
    found = pretrained.locate_pretrained(str(FIXTURES / family))
    assert metadata.encoder.family == found.config.family and metadata.special_tokens == found.special_tokens
    texts = ["Angela Merkel flew to Paris on Monday .", "naïve  café 😀\u3000in   Zürich, 東京", "a sentence " * 20]
    from_export, from_model = bner.load(result.export_path), bner.load(result.model_dir)
    saved_model = bner.load(result.export_path, runtime="tensorflow")
    assert (from_export.backend.name, saved_model.backend.name, from_model.backend.name) == ("onnx", "in-process", "keras")
    predicted = from_export.predict(texts)
    assert predicted == from_model.predict(texts) == saved_model.predict(texts)
    for text, entities in zip(texts, predicted):  # offsets are the raw text's, whatever the pieces
        assert all(text[e.start:e.end] == e.text for e in entities)
    assert fused_layer_norms(result.export_path, tmp_path / "optimized.onnx") == (True, 0)
    assert metadata.onnx_int8["check"]["kept"], metadata.training["export"]["int8"]
    for text, entities in zip(texts, bner.load(result.export_path, runtime="onnx-int8").predict(texts)):
        assert all(text[e.start:e.end] == e.text for e in entities)
    words = [["Angela", "Merkel", "flew"], ["x"] * 30]  # the second is longer than a window
    tagged = from_export.tag(words)
    assert tagged == from_model.tag(words) == saved_model.tag(words) and [len(tags) for tags in tagged] == [3, 30]
    if family in ("deberta-v3", "distilbert"):  # no segment embeddings: TF Serving's signature still takes all three inputs
        from tests.tf_serving import running_prediction_service

        with running_prediction_service(pathlib.Path(result.export_path).parent) as (host, port, _):
            remote = bner.load(result.export_path, host=host, port=port)
            assert remote.predict(texts) == predicted and remote.tag(words) == tagged


def test_every_family_matches_the_reference_on_jax_and_one_trains_there(tmp_path):
    """Keras on JAX computes the same encoders; DeBERTa-v3 (the most ops of its own) trains there
    from the command line and exports under TensorFlow."""
    pytest.importorskip("jax")
    import subprocess
    import sys

    from tests.cli import run_task, tiny_training_flags
    from tests.conftest import write_synthetic_data

    check = (
        "import sys; sys.path.insert(0, '.'); import keras; assert keras.backend.backend() == 'jax'\n"
        "from tests.test_encoders import FAMILIES, FIXTURES, TOLERANCE, encoder_output\n"
        "import numpy as np\n"
        "for f in FAMILIES:\n"
        "    got, expected = encoder_output(FIXTURES / f)\n"
        "    assert np.abs(got - expected).max() < TOLERANCE, f\n"
        "print('jax parity', len(FAMILIES))\n"
    )
    root = pathlib.Path(__file__).parent.parent
    result = subprocess.run([sys.executable, "-c", check], cwd=root, capture_output=True, text=True,
                            env={**__import__("os").environ, "KERAS_BACKEND": "jax"}, timeout=300)
    assert result.returncode == 0 and "jax parity 8" in result.stdout, result.stderr[-2000:]
    data = write_synthetic_data(tmp_path / "data", train=60, dev=20, test=20)
    out = tmp_path / "out"
    trained = run_task(*tiny_training_flags(str(FIXTURES / "deberta-v3"), data, str(out), "--num_train_epochs=1"),
                       "--do_train", "--do_eval", env={"KERAS_BACKEND": "jax"})
    assert "on jax" in trained.stdout and (out / "export" / "bner" / "1" / "saved_model.pb").exists()


# ---------------------------------------------------------------- what users bring


def copy_fixture(family: str, to: pathlib.Path) -> pathlib.Path:
    import shutil

    shutil.copytree(FIXTURES / family, to)
    return to


def test_an_unknown_model_type_is_one_line_naming_the_families(tmp_path):
    import json

    folder = copy_fixture("roberta", tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "gpt2"}))
    with pytest.raises(pretrained.PretrainedError) as raised:
        pretrained.locate_pretrained(str(folder))
    message = str(raised.value)
    assert "\n" not in message and "'gpt2'" in message
    for family in ("bert", "roberta", "xlm-roberta", "deberta-v2", "distilbert", "electra", "albert"):
        assert family in message


def test_a_task_checkpoint_loads_its_encoder_and_leaves_its_heads(tmp_path, caplog):
    """Checkpoints as users download them: names under the model's prefix, with pre-training heads."""
    from safetensors.numpy import load_file, save_file

    for family, prefix, head in (("roberta", "roberta.", "lm_head.dense.weight"), ("deberta-v3", "deberta.", "lm_predictions.x"),
                                 ("albert", "albert.", "predictions.bias"), ("electra", "electra.", "discriminator_predictions.dense.bias")):
        folder = copy_fixture(family, tmp_path / family)
        tensors = {prefix + k: v for k, v in load_file(folder / "model.safetensors").items()}
        tensors[head] = np.zeros(3, np.float32)
        save_file(tensors, folder / "model.safetensors")
        with caplog.at_level("INFO"):
            got, expected = encoder_output(folder)
        assert np.abs(got - expected).max() < TOLERANCE
        assert head in caplog.text


def test_a_missing_encoder_weight_or_a_foreign_one_is_an_error(tmp_path):
    from safetensors.numpy import load_file, save_file

    folder = copy_fixture("deberta-v3", tmp_path / "m")
    tensors = load_file(folder / "model.safetensors")
    save_file({k: v for k, v in tensors.items() if k != "encoder.rel_embeddings.weight"}, folder / "model.safetensors")
    with pytest.raises(pretrained.PretrainedError, match="no weight 'encoder.rel_embeddings.weight'"):
        encoder_output(folder)
    save_file({**tensors, "encoder.layer.0.attention.self.pos_key_proj.weight": np.zeros((32, 32), np.float32)},
              folder / "model.safetensors")
    with pytest.raises(pretrained.PretrainedError, match="no place for"):
        encoder_output(folder)


def test_a_sentencepiece_model_without_tokenizer_json_says_how_to_write_one(tmp_path):
    folder = copy_fixture("xlm-roberta", tmp_path / "m")
    (folder / "tokenizer.json").unlink()
    with pytest.raises(pretrained.PretrainedError, match="no tokenizer.json.*save_pretrained"):
        pretrained.locate_pretrained(str(folder))


def test_lowercasing_a_tokenizer_that_keeps_case_is_refused(tmp_path):
    from bner.config import ConfigError, TrainConfig
    from bner.training import recipe
    from tests.conftest import write_synthetic_data

    data = write_synthetic_data(tmp_path / "data", train=10, dev=5, test=5)
    config = TrainConfig.from_settings(pretrained_model=str(FIXTURES / "roberta"), data_dir=data, output_dir=str(tmp_path / "o"),
                                       do_lower_case=True)
    with pytest.raises(ConfigError, match="WordPiece"):
        recipe.prepare(config)


@pytest.mark.parametrize("name", ["roberta-base", "FacebookAI/xlm-roberta-base", "microsoft/deberta-v3-base"])
def test_a_hub_name_says_how_to_download_it_at_once(name):
    import time

    started = time.perf_counter()
    with pytest.raises(pretrained.PretrainedError) as raised:
        pretrained.locate_pretrained(name)
    message = str(raised.value)
    assert time.perf_counter() - started < 1 and "\n" not in message
    assert message.startswith(f"{name}: no such folder") and f"hf download {name} " in message


def test_a_missing_folder_is_called_missing(tmp_path):
    with pytest.raises(pretrained.PretrainedError, match="no such folder$"):
        pretrained.locate_pretrained(str(tmp_path / "nowhere"))
