"""Pretrained encoders load from each checkpoint format and compute what the format's reference computes."""

import dataclasses
import json
import os

import numpy as np
import pytest

from bner.model import network as model
from bner.model import pretrained as checkpoints
from bner.model.metadata import EncoderConfig
from tests import bert_fixtures as bf

CONFIG = bf.TinyBertConfig()
TOLERANCE = 1e-4


def inputs(seed=0, batch=3, length=11):
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, CONFIG.vocab_size, size=(batch, length)).astype(np.int32)
    segments = rng.integers(0, 2, size=(batch, length)).astype(np.int32)
    mask = np.ones((batch, length), np.int32)
    mask[1, 7:] = 0
    mask[2, 3:] = 0
    return ids, segments, mask


def encoder_output(pretrained: checkpoints.Pretrained, ids, segments, mask) -> np.ndarray:
    encoder = model.build_encoder(dataclasses.replace(pretrained.config, dropout=0.0))
    pretrained.load_weights(encoder)
    return np.asarray(encoder(ids, segments, mask, training=False))


def assert_matches(actual, expected, mask):
    keep = mask.astype(bool)
    difference = np.abs(actual[keep] - expected[keep]).max()
    assert difference <= TOLERANCE, f"max abs difference {difference:.2e}"


@pytest.mark.parametrize("hidden_act", ["gelu", "gelu_new"])
@pytest.mark.parametrize("prefix", ["bert.", ""])
def test_huggingface_folder_matches_reference(tmp_path, hidden_act, prefix):
    config = dataclasses.replace(CONFIG, hidden_act=hidden_act, layer_norm_eps=1e-7)
    weights = bf.random_bert_weights(config, seed=1)
    bf.write_hf_folder(tmp_path, config, weights, prefix=prefix)
    pretrained = checkpoints.locate_pretrained(str(tmp_path))
    assert pretrained.format == "huggingface" and pretrained.lowercase is True
    ids, segments, mask = inputs()
    expected = bf.numpy_bert_forward(weights, config, ids, segments, mask)
    assert_matches(encoder_output(pretrained, ids, segments, mask), expected, mask)
    # The test is sensitive to the activation: the other GELU is measurably off.
    other = dataclasses.replace(config, hidden_act="gelu_new" if hidden_act == "gelu" else "gelu")
    wrong = bf.numpy_bert_forward(weights, other, ids, segments, mask)
    assert np.abs(wrong - expected)[mask.astype(bool)].max() > 10 * TOLERANCE


def test_huggingface_folder_with_only_tokenizer_json(tmp_path):
    bf.write_hf_folder(tmp_path, CONFIG, bf.random_bert_weights(CONFIG), vocab=False, tokenizer_json=True)
    pretrained = checkpoints.locate_pretrained(str(tmp_path))
    assert pretrained.vocab_file is None and pretrained.tokenizer_file.endswith("tokenizer.json")


def test_pickle_only_huggingface_folder_is_refused(tmp_path):
    bf.write_hf_folder(tmp_path, CONFIG, bf.random_bert_weights(CONFIG))
    os.rename(tmp_path / "model.safetensors", tmp_path / "pytorch_model.bin")
    with pytest.raises(checkpoints.PretrainedError, match="pickle that bner will not load"):
        checkpoints.locate_pretrained(str(tmp_path))


def test_google_checkpoint_matches_reference(tmp_path):
    # Google's modeling.py computes "gelu" with the tanh approximation.
    weights = bf.random_bert_weights(CONFIG, seed=2)
    bf.write_google_checkpoint(tmp_path, CONFIG, weights, with_adam_slots=True)
    pretrained = checkpoints.locate_pretrained(
        bert_config_file=str(tmp_path / "bert_config.json"),
        init_checkpoint=str(tmp_path / "bert_model.ckpt"),
        vocab_file=str(tmp_path / "vocab.txt"),
    )
    assert pretrained.format == "google" and pretrained.config.hidden_act == "gelu_tanh"
    ids, segments, mask = inputs(1)
    expected = bf.numpy_bert_forward(weights, dataclasses.replace(CONFIG, hidden_act="gelu_new"), ids, segments, mask)
    assert_matches(encoder_output(pretrained, ids, segments, mask), expected, mask)


def test_google_folder_through_pretrained_model_flag(tmp_path):
    bf.write_google_checkpoint(tmp_path, CONFIG, bf.random_bert_weights(CONFIG))
    assert checkpoints.locate_pretrained(str(tmp_path)).format == "google"


def test_keras_hub_preset_matches_reference(tmp_path):
    weights = bf.write_keras_hub_preset(str(tmp_path), CONFIG, seed=3, lowercase=False)
    pretrained = checkpoints.locate_pretrained(str(tmp_path))
    assert pretrained.format == "keras_hub" and pretrained.lowercase is False
    assert pretrained.vocab_file.endswith("vocabulary.txt")
    ids, segments, mask = inputs(2)
    expected = bf.numpy_bert_forward(weights, bf.keras_hub_reference_config(CONFIG), ids, segments, mask)
    assert_matches(encoder_output(pretrained, ids, segments, mask), expected, mask)


def test_missing_pieces_get_clear_errors(tmp_path):
    with pytest.raises(checkpoints.PretrainedError, match="not a model folder"):
        checkpoints.locate_pretrained(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 8}))
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(checkpoints.PretrainedError, match="missing field 'vocab_size'"):
        checkpoints.locate_pretrained(str(tmp_path))
    with pytest.raises(checkpoints.PretrainedError, match="no pretrained model given"):
        checkpoints.locate_pretrained()


def test_tagger_outputs_float32_logits_under_mixed_precision():
    import keras

    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        tagger = model.build_tagger(EncoderConfig(50, 16, 1, 2, 32, 64), num_labels=5)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    ids, segments, mask = (np.ones((2, 6), np.int32),) * 3
    logits = tagger({"input_ids": ids, "attention_mask": mask, "token_type_ids": segments * 0})
    assert tuple(logits.shape) == (2, 6, 5)
    assert keras.backend.standardize_dtype(logits.dtype) == "float32"
    assert model.encoder_of(tagger).compute_dtype == "bfloat16"


def test_dropout_keeps_one_minus_rate_and_the_mean_under_mixed_precision():
    """bfloat16 activations lose exactly ``rate`` of their values and keep their mean (Keras' own, on TF: 89.8%, 0.997)."""
    import keras

    layer = model.Float32MaskDropout(0.1, seed=3, dtype=keras.DTypePolicy("mixed_bfloat16"))
    inputs = keras.ops.cast(np.random.default_rng(0).uniform(1, 2, (32, 128, 384)), "bfloat16")
    y = layer(inputs, training=True)
    assert keras.backend.standardize_dtype(y.dtype) == "bfloat16"
    assert layer(inputs, training=False) is inputs
    x, y = (keras.ops.convert_to_numpy(keras.ops.cast(t, "float32")).astype(np.float64) for t in (inputs, y))
    kept = y != 0
    # 1.6M draws: the kept fraction's standard error is 2.4e-4, the mean ratio's about 3e-4.
    assert abs(kept.mean() - 0.9) < 1e-3
    assert abs(y.sum() / x.sum() - 1) < 1.5e-3
    np.testing.assert_allclose(y[kept], x[kept] / 0.9, rtol=2**-8)  # scaled once, rounded once


def test_every_dropout_of_the_tagger_is_bners():
    import keras

    tagger = model.build_tagger(EncoderConfig(50, 16, 2, 2, 32, 64), num_labels=5)
    from bench.backend_equivalence import sublayers

    dropouts = [layer for layer in sublayers(tagger) if isinstance(layer, keras.layers.Dropout)]
    # embeddings, head, and per layer: attention probabilities, attention output, feed-forward output
    assert len(dropouts) == 2 + 2 * 3
    assert all(isinstance(layer, model.Float32MaskDropout) for layer in dropouts)


def test_model_lowercases_follows_the_model_then_its_vocabulary(tmp_path):
    from bner.model.pretrained import Pretrained, model_lowercases

    def pretrained(lowercase=None, words=None):
        vocab = None
        if words is not None:
            vocab = tmp_path / f"vocab{len(list(tmp_path.iterdir()))}.txt"
            vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *words]) + "\n", encoding="utf-8")
        config = EncoderConfig(vocab_size=10, hidden_size=8, num_layers=1, num_heads=1, intermediate_size=8)
        return Pretrained("huggingface", "here", config, lambda encoder: None, str(vocab) if vocab else None, None, lowercase)

    assert model_lowercases(pretrained(lowercase=False, words=["paris", "berlin"])) is False  # the model's word wins
    assert model_lowercases(pretrained(words=["Paris", "Berlin", "the"])) is False
    assert model_lowercases(pretrained(words=["paris", "berlin", "the"])) is True
    assert model_lowercases(pretrained()) is None


@pytest.mark.parametrize("hidden_act", ["gelu", "gelu_new"])
def test_fast_activation_changes_speed_not_results(hidden_act):
    """A tagger with the hand-differentiated activation (training on TensorFlow) computes what the plain one does."""
    import keras

    if keras.backend.backend() != "tensorflow":
        pytest.skip("fast_activation applies to TensorFlow")
    import tensorflow as tf

    config = EncoderConfig(50, 16, 2, 2, 32, 64, hidden_act=hidden_act)
    plain = model.build_tagger(config, num_labels=5)
    compiled = model.build_tagger(config, num_labels=5, fast_activation=True)
    compiled.set_weights(plain.get_weights())
    assert model.encoder_of(compiled).blocks[0].activation is model.training_activation(hidden_act)
    ids, segments, mask = inputs(seed=3)
    batch = {"input_ids": ids % 50, "attention_mask": mask, "token_type_ids": segments}

    def logits_and_gradients(tagger):
        with tf.GradientTape() as tape:
            logits = tagger(batch, training=False)
            loss = tf.reduce_sum(tf.sin(logits))
        grads = tape.gradient(loss, tagger.trainable_variables)
        return keras.ops.convert_to_numpy(logits), [keras.ops.convert_to_numpy(tf.convert_to_tensor(g)) for g in grads]

    x = tf.constant(np.linspace(-8, 8, 2001, dtype=np.float32))
    for function in (model.ACTIVATIONS[hidden_act], model.training_activation(hidden_act)):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = function(x)
        if function is model.ACTIVATIONS[hidden_act]:
            expected = (y.numpy(), tape.gradient(y, x).numpy())
        else:
            # The erfc form keeps precision far out on the negative side, where the plain ops give 0 below -4.8.
            np.testing.assert_allclose(y.numpy(), expected[0], atol=1e-5)
            np.testing.assert_allclose(tape.gradient(y, x).numpy(), expected[1], atol=1e-5)

    plain_logits, plain_grads = logits_and_gradients(plain)
    compiled_logits, compiled_grads = logits_and_gradients(compiled)
    np.testing.assert_allclose(compiled_logits, plain_logits, atol=1e-6)
    for a, b in zip(compiled_grads, plain_grads, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert any(np.abs(g).max() > 1e-3 for g in plain_grads)


@pytest.mark.parametrize(
    "extra, error",
    [
        ({"cls.predictions.bias": np.zeros(3, np.float32), "embeddings.position_ids": np.arange(4)}, None),  # heads, buffers
        ({"encoder.layer.0.attention.self.rotary.weight": np.zeros(3, np.float32)}, "1 encoder weight"),
        ({"encoder.layer.7.output.dense.weight": np.zeros(3, np.float32)}, "no place for"),  # a deeper checkpoint
    ],
)
def test_every_checkpoint_weight_is_accounted_for(tmp_path, extra, error):
    """As nanoGPT asserts: an encoder weight the model has no place for is an error, not silently dropped."""
    bf.write_hf_folder(tmp_path, CONFIG, bf.random_bert_weights(CONFIG), prefix="", extra_tensors=extra)
    pretrained = checkpoints.locate_pretrained(str(tmp_path))
    encoder = model.build_encoder(pretrained.config)
    if error is None:
        pretrained.load_weights(encoder)
    else:
        with pytest.raises(checkpoints.PretrainedError, match=error):
            pretrained.load_weights(encoder)


def test_a_missing_checkpoint_weight_is_an_error(tmp_path):
    weights = bf.random_bert_weights(CONFIG)
    weights.pop(next(k for k in weights if k.endswith("intermediate.dense.bias")))
    bf.write_hf_folder(tmp_path, CONFIG, weights, prefix="")
    pretrained = checkpoints.locate_pretrained(str(tmp_path))
    with pytest.raises(checkpoints.PretrainedError, match="has no weight 'encoder.layer.0.intermediate.dense.bias'"):
        pretrained.load_weights(model.build_encoder(pretrained.config))
