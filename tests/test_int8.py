"""The int8 model an export holds on request: how it is made, when it is kept, and how it runs."""

from __future__ import annotations

import json

import numpy as np
import pytest

import bner
from bner.cli.main import main
from bner.config import TrainConfig
from bner.folders import exports
from tests.conftest import write_synthetic_data

SETTINGS = dict(num_train_epochs=5, learning_rate=1e-3, train_batch_size=16, max_seq_length=32, precision="float32",
                progress=False, export=False)


@pytest.fixture(scope="module")
def trained(tiny_model, tmp_path_factory):
    """A run trained without an export: each test exports it as it needs."""
    root = tmp_path_factory.mktemp("int8")
    data = write_synthetic_data(root / "data")
    config = TrainConfig.from_settings(pretrained_model=tiny_model, data_dir=data, output_dir=str(root / "out"), **SETTINGS)
    bner.train(config, say=lambda line: None)
    return config, root


@pytest.fixture(scope="module")
def int8_export(trained):
    """Exported with --export_int8 by the command line, with a budget it keeps."""
    config, root = trained
    assert main(["export", str(root / "out"), "--export_dir", str(root / "kept"), "--export_int8", "--int8_f1_budget", "100"]) == 0
    return str(root / "kept" / "bner" / "1")


def test_gemms_written_as_matmuls_compute_the_same():
    import onnx
    import onnxruntime
    from onnx import TensorProto, helper, numpy_helper

    from bner.model.quantize import gemms_as_matmuls

    rng = np.random.default_rng(0)
    weight, bias = rng.normal(size=(5, 4)).astype(np.float32), rng.normal(size=(5,)).astype(np.float32)
    nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["with_bias"], transB=1),
             helper.make_node("Gemm", ["x", "w", "b"], ["no_bias"], transB=1, beta=0.0),
             helper.make_node("Gemm", ["x", "w", "b"], ["scaled"], transB=1, alpha=2.0)]  # not plain: left as it is
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, [None, 5]) for name in ("with_bias", "no_bias", "scaled")],
        initializer=[numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = rng.normal(size=(3, 4)).astype(np.float32)

    def run(m):
        return onnxruntime.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})

    before = run(model)
    gemms_as_matmuls(model.graph)
    assert [n.op_type for n in model.graph.node] == ["MatMul", "Add", "MatMul", "Gemm"]
    for a, b in zip(before, run(model)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    onnx.checker.check_model(model)


@pytest.mark.parametrize("opset", [17, 18])  # ReduceMax takes its axes as an attribute before 18, as an input since
def test_per_row_quantisation_is_close_to_float32_and_each_row_depends_on_itself_alone(opset):
    import onnx
    import onnxruntime
    from onnx import TensorProto, helper, numpy_helper

    from bner.model.quantize import quantize_per_row

    rng = np.random.default_rng(0)
    weights = {"query": rng.normal(size=(8, 6)), "value": rng.normal(size=(8, 6)), "next": rng.normal(size=(6, 3)),
               "chain": rng.normal(size=(6, 2))}
    weights["value"][:, 2] = 0.0  # an all-zero column
    nodes = [helper.make_node("MatMul", ["x", "query"], ["q"], name="query"),  # two products read the graph input
             helper.make_node("MatMul", ["x", "value"], ["v"], name="value"),
             helper.make_node("Add", ["q", "v"], ["sum"]),
             helper.make_node("MatMul", ["sum", "next"], ["y"], name="next"),  # one reads a node's output
             helper.make_node("MatMul", ["q", "chain"], ["z"], name="chain")]  # and one another product's
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, None, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, None, 3]), helper.make_tensor_value_info("z", TensorProto.FLOAT, [None, None, 2])],
        initializer=[numpy_helper.from_array(w.astype(np.float32), name) for name, w in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])

    def run(m, x, output="y"):
        return onnxruntime.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run([output], {"x": x})[0]

    x = rng.normal(size=(2, 5, 8)).astype(np.float32)
    x[0, 1] *= 50.0  # one token with large activations
    x[1, 3] = 0.0  # and one of zeros
    expected, chained = run(model, x), run(model, x, "z")
    quantize_per_row(model, ["query", "value", "next", "chain"])
    onnx.checker.check_model(model)  # every node after the nodes that compute its inputs
    assert sum(n.op_type == "MatMulIntegerToFloat" for n in model.graph.node) == 4
    assert not set(weights) & {t.name for t in model.graph.initializer}  # float32 weights gone
    np.testing.assert_allclose(run(model, x, "z"), chained, rtol=0.1, atol=0.05 * np.abs(chained).max())
    got = run(model, x)
    # Each token's error is relative to its own size: the large token does not coarsen the others.
    for sentence in range(2):
        for token in range(5):
            size = np.abs(expected[sentence, token]).max() + 1e-6
            assert np.abs(got[sentence, token] - expected[sentence, token]).max() <= 0.05 * size
    assert np.all(got[1, 3] == 0.0)
    # A sentence's result does not depend on what it is batched with: bit for bit the same alone.
    np.testing.assert_array_equal(run(model, x[1:]), got[1:])
    np.testing.assert_array_equal(run(model, np.concatenate([x[1:], 100 * x[:1]]))[:1], got[1:])


def test_smoothing_keeps_each_product_and_flattens_its_input():
    import onnxruntime
    from onnx import TensorProto, helper, numpy_helper

    from bner.model.quantize import activation_ranges, smooth

    rng = np.random.default_rng(0)
    nodes = [helper.make_node("MatMul", ["x", "a"], ["ya"], name="a"), helper.make_node("MatMul", ["x", "b"], ["yb"], name="b"),
             helper.make_node("MatMul", ["x", "shared"], ["ys"], name="s"),  # its weight is also read below
             helper.make_node("Add", ["shared", "shared"], ["twice"])]
    weights = {name: rng.normal(size=(6, 4)).astype(np.float32) for name in ("a", "b", "shared")}
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 6])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in ("ya", "yb", "ys", "twice")],
        initializer=[numpy_helper.from_array(w, name) for name, w in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])

    def run(x):
        return onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})

    x = rng.normal(size=(5, 6)).astype(np.float32)
    x[:, 2] *= 40.0  # an outlier channel
    before = run(x)
    ranges = activation_ranges(model, ["a", "b"], [{"x": x}])
    np.testing.assert_allclose(ranges["x"], np.abs(x).max(axis=0))
    assert smooth(model, ["a", "b"], ranges) == 1  # a and b share their input's smoothing
    for a, b in zip(before, run(x)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    smoothed = [n for n in model.graph.node if n.op_type == "Mul"]
    order = [n.name for n in model.graph.node]
    assert len(smoothed) == 1 and order.index("x/smooth") < min(order.index("a"), order.index("b"))  # before its products
    scale = 1 / numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == "x/smoothing"))
    spread = np.abs(x / scale).max(axis=0)
    assert spread.max() / spread.min() < np.abs(x).max(axis=0).max() / np.abs(x).max(axis=0).min()
    # A weight something else reads is not changed, nor is its product's input.
    assert smooth(model, ["s"], activation_ranges(model, ["s"], [{"x": x}])) == 0
    np.testing.assert_array_equal(numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == "shared")), weights["shared"])


def test_an_int8_export_holds_its_file_digest_check_and_card(int8_export):
    import onnx

    from bner.inference.loader import read_metadata

    metadata = read_metadata(f"{int8_export}/metadata.json")
    facts = metadata.onnx_int8
    assert facts["file"] == exports.INT8_FILE and facts["precision"] == "int8" and facts["opset"] == metadata.onnx["opset"]
    smoothing = facts["smoothing"]  # calibrated on the run's training sentences
    assert smoothing["inputs_smoothed"] > 0 and smoothing["sample_sentences"] > 0 and smoothing["alpha"] == 0.5
    check = facts["check"]
    assert check["kept"] and check["budget"] == 100 and sorted(check["splits"]) == ["dev", "test"]  # both held-out files
    for measured in check["splits"].values():
        assert measured["sentences"] == 60 and 0 <= measured["sentences_differing"] <= 60
        assert measured["f1_change"] == pytest.approx(measured["f1_int8"] - measured["f1_float32"], abs=0.011)
    assert metadata.training["export"]["int8"] == check
    ops = {node.op_type for node in onnx.load(f"{int8_export}/{exports.INT8_FILE}").graph.node}
    assert "MatMulIntegerToFloat" in ops and "Gemm" not in ops  # the attention projections are quantised too
    card = open(f"{int8_export}/README.md", encoding="utf-8").read()
    assert "`model.int8.onnx`" in card and "so it was kept" in card and "--runtime onnx-int8" in card
    assert f"calibrated on {smoothing['sample_sentences']:,} of the run's training sentences" in card


def test_the_int8_model_runs_only_when_asked_and_tags_as_float32_does_here(int8_export):
    import onnxruntime

    assert bner.load(int8_export).backend.name == "onnx"  # float32 by default
    tagger = bner.load(int8_export, runtime="onnx-int8")
    assert tagger.backend.name == "onnx-int8"
    entities = [(e.text, e.type, e.start, e.end) for e in tagger("Anna Kowalski visited Lisbon .")]
    assert entities == [("Anna Kowalski", "PER", 0, 13), ("Lisbon", "LOC", 22, 28)]
    # The logits stay close to float32's: the same argmax nearly everywhere.
    rng = np.random.default_rng(1)
    feed = {"input_ids": rng.integers(5, 50, size=(8, 20)).astype(np.int32), "attention_mask": np.ones((8, 20), np.int32),
            "token_type_ids": np.zeros((8, 20), np.int32)}
    logits = [onnxruntime.InferenceSession(f"{int8_export}/{name}", providers=["CPUExecutionProvider"]).run(["logits"], feed)[0]
              for name in (exports.ONNX_FILE, exports.INT8_FILE)]
    assert np.mean(logits[0].argmax(-1) == logits[1].argmax(-1)) > 0.95
    # Activations are scaled per token: end to end, a text's tags are the same alone and batched
    # (the unit test above shows each row's numbers bit for bit).
    texts = [["Anna", "Kowalski", "visited", "Lisbon", "."], ["Bob", "Smith", "met", "Maria", "Lopez", "in", "Porto", "yesterday", "."]] * 4
    alone = [tagger.tag_sentences([words])[0].tags for words in texts]
    assert [t.tags for t in tagger.tag_sentences(texts, batch_size=8)] == alone


def test_the_server_says_it_runs_int8_and_shows_its_check_not_the_float32_test_score(int8_export):
    from fastapi.testclient import TestClient

    from bner.serving.app import create_app
    from bner.serving.settings import ServingSettings

    client = TestClient(create_app(ServingSettings(model_dir=int8_export, runtime="onnx-int8")))
    model = client.get("/api/ner/model").json()
    assert model["runtime"] == "onnx-int8" and model["test_f1"] is None and model["int8_check"]["kept"]
    assert all("file" not in measured for measured in model["int8_check"]["splits"].values())  # no training paths
    answer = client.post("/api/ner/recognize", json={"text": "Anna Kowalski visited Lisbon ."}).json()
    assert [e["text"] for e in answer["entities"]] == ["Anna Kowalski", "Lisbon"]


def test_an_export_without_int8_refuses_that_runtime_with_what_to_do(trained, tmp_path):
    config, root = trained
    assert main(["export", str(root / "out"), "--export_dir", str(tmp_path)]) == 0
    with pytest.raises(ValueError, match="no int8 model here.*--export_int8"):
        bner.load(str(tmp_path / "bner" / "1"), runtime="onnx-int8")
    with pytest.raises(ValueError, match="runtime onnx-int8 applies to a model loaded in this process"):
        bner.load(str(tmp_path / "bner" / "1"), runtime="onnx-int8", host="localhost")


def test_an_int8_model_over_budget_is_not_kept_and_the_card_says_why(trained, tmp_path):
    _, root = trained
    measured = {"file": "dev.conll", "sentences": 60, "sentences_differing": 4, "f1_float32": 90.0, "f1_int8": 89.0, "f1_change": -1.0}
    verdict = {"kept": False, "budget": 0.3, "splits": {"dev": measured, "test": {**measured, "f1_int8": 90.0, "f1_change": 0.0}}}
    path = exports.export_tagger(str(root / "out" / "model"), str(tmp_path), "bner", int8_check=lambda folder: verdict)
    metadata = json.loads(open(f"{path}/metadata.json", encoding="utf-8").read())
    assert not (tmp_path / "bner" / "1" / exports.INT8_FILE).exists()
    assert metadata["onnx_int8"] == {} and metadata["training"]["export"]["int8"] == verdict
    card = open(f"{path}/README.md", encoding="utf-8").read()
    assert "An int8 model was asked for and not kept: on the run's dev file (60 sentences) F1 89.00 against 90.00 in float32" in card
    assert "on the run's test file (60 sentences) F1 90.00 against 90.00" in card
    assert "more than the budget of 0.3 points on the dev file." in card


def test_the_check_needs_the_runs_dev_or_test_file(int8_export, tmp_path):
    import shutil

    from bner.training.recipe import int8_check

    folder = tmp_path / "version"
    shutil.copytree(int8_export, folder)
    data = json.loads((folder / "metadata.json").read_text())
    for split in data["training"]["data_files"].values():
        split["path"] = str(tmp_path / "moved.conll")
    (folder / "metadata.json").write_text(json.dumps(data))
    lines = []
    verdict = int8_check(0.3, lines.append)(str(folder))
    assert not verdict["kept"] and "no longer where training read them" in verdict["reason"] and "not kept" in lines[0]


def test_the_calibration_samples_are_the_runs_training_sentences_as_tagged(int8_export, tmp_path):
    import shutil

    from bner.training import recipe

    samples, sentences = recipe.int8_samples(lambda line: None)(int8_export)
    training = bner.load(int8_export).metadata.training["data_files"]["train"]
    assert sentences == min(recipe.INT8_SAMPLE_SENTENCES, training["sentences"])
    assert sum(len(batch["input_ids"]) for batch in samples) >= sentences  # one window or more each
    assert all(sorted(batch) == sorted(("input_ids", "attention_mask", "token_type_ids")) for batch in samples)
    # A run whose training file is gone: no samples, said once, and the int8 model is made unsmoothed.
    folder = tmp_path / "version"
    shutil.copytree(int8_export, folder)
    data = json.loads((folder / "metadata.json").read_text())
    data["training"]["data_files"]["train"]["path"] = str(tmp_path / "moved.conll")
    (folder / "metadata.json").write_text(json.dumps(data))
    lines = []
    assert recipe.int8_samples(lines.append)(str(folder)) == ([], 0)
    assert "not smoothed" in lines[0] and "no longer where training read it" in lines[0]


def test_an_export_is_reused_for_int8_only_if_it_holds_one_within_the_budget_asked(trained, int8_export, tmp_path):
    _, root = trained
    model_dir = str(root / "out" / "model")
    exports.export_tagger(model_dir, str(tmp_path), "bner")
    assert exports.existing_export(model_dir, str(tmp_path), "bner") is not None
    assert exports.existing_export(model_dir, str(tmp_path), "bner", int8_budget=0.3) is None  # no int8 model: export again
    assert exports.existing_export(model_dir, str(root / "kept"), "bner", int8_budget=100) == int8_export
    tighter = -min(m["f1_change"] for m in bner.load(int8_export).metadata.onnx_int8["check"]["splits"].values()) - 0.01
    if tighter >= 0:  # a budget its measured change exceeds
        assert exports.existing_export(model_dir, str(root / "kept"), "bner", int8_budget=tighter) is None


def test_only_plain_matrices_are_chosen_for_quantisation():
    from onnx import TensorProto, helper, numpy_helper

    from bner.model.quantize import chosen_matmuls

    constants = [numpy_helper.from_array(np.ones(shape, np.float32), name) for name, shape in
                 (("matrix", (4, 5)), ("positions", (3, 4, 5)), ("head", (5, 2)))]
    nodes = [helper.make_node("MatMul", ["x", "matrix"], ["a"], name="layer_0/intermediate/MatMul"),
             helper.make_node("MatMul", ["x", "positions"], ["b"], name="relative/MatMul"),  # DeBERTa's 3-D constants
             helper.make_node("MatMul", ["a", "head"], ["c"], name="bert_tagger_1/logits_1/Tensordot/MatMul"),
             helper.make_node("MatMul", ["x", "a"], ["d"], name="attention/MatMul")]  # no constant
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])], [],
                              initializer=constants)
    assert chosen_matmuls(graph) == ["layer_0/intermediate/MatMul"]


def test_an_int8_model_that_fails_leaves_the_float32_export_whole(trained, tmp_path):
    _, root = trained

    def failing(folder):
        raise RuntimeError("MatmulInteger : b zero point is not valid")

    path = exports.export_tagger(str(root / "out" / "model"), str(tmp_path), "bner", int8_check=failing)
    metadata = json.loads(open(f"{path}/metadata.json", encoding="utf-8").read())
    assert metadata["onnx_int8"] == {} and not (tmp_path / "bner" / "1" / exports.INT8_FILE).exists()
    assert metadata["training"]["export"]["int8"]["reason"].startswith("it could not be made or run (MatmulInteger")
    assert "not kept: it could not be made or run" in open(f"{path}/README.md", encoding="utf-8").read()
    assert bner.load(path)("Anna Kowalski visited Lisbon .")  # the float32 model serves


@pytest.mark.parametrize("settings, message", [
    (dict(export_int8=True, export=False), "--export_int8 writes model.int8.onnx into the export: it needs --export"),
    (dict(int8_f1_budget=1.0), "--int8_f1_budget=1.0 applies to the int8 model: add --export_int8"),
])
def test_int8_settings_that_would_do_nothing_are_refused(settings, message):
    from bner.config import ConfigError

    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_settings(**settings).check()
