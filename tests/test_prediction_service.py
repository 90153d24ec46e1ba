"""The TF Serving stand-in speaks the real protocol and serves a real bner export faithfully."""

from __future__ import annotations

import os
import shutil
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from tests.cli import run_task, tiny_training_flags
from tests.conftest import write_synthetic_data
from tests.tf_serving import running_prediction_service

OUTPUTS = ("label_ids", "scores", "logits")


@pytest.fixture(scope="module")
def export_base(tiny_model, tmp_path_factory):
    """``<export>/bner`` with versions 1 (trained) and 2 (a copy, as a newer export would be), plus a stray temp folder."""
    root = tmp_path_factory.mktemp("prediction_service")
    data = write_synthetic_data(root / "data", train=48, dev=16, test=16)
    out = root / "out"
    run_task(*tiny_training_flags(tiny_model, data, str(out), "--num_train_epochs=1"), "--do_train")
    base = out / "export" / "bner"
    shutil.copytree(base / "1", base / "2")  # exporting the same model again reuses version 1
    assert sorted(os.listdir(base)) == ["1", "2"]
    (base / ".tmp-deadbeef-3").mkdir()  # a half-written version: never a version
    return base


@pytest.fixture(scope="module")
def server(export_base):
    with running_prediction_service(export_base) as (host, port, process):
        channel = grpc.insecure_channel(f"{host}:{port}")
        yield prediction_service_pb2_grpc.PredictionServiceStub(channel), model_service_pb2_grpc.ModelServiceStub(channel)
        channel.close()


@pytest.fixture(scope="module")
def local_signatures(export_base):
    return {v: tf.saved_model.load(str(export_base / str(v))).signatures["serving_default"] for v in (1, 2)}


def features(batch: int = 3, length: int = 12, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, 40, size=(batch, length)).astype(np.int32)
    lengths = rng.integers(3, length + 1, size=batch)
    mask = (np.arange(length)[None, :] < lengths[:, None]).astype(np.int32)
    ids[:, 0] = 2
    ids[np.arange(batch), lengths - 1] = 3
    ids *= mask
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


def request(inputs=None, name="bner", version=None, label=None, signature=None, output_filter=()):
    req = predict_pb2.PredictRequest()
    req.model_spec.name = name
    if version is not None:
        req.model_spec.version.value = version
    if label is not None:
        req.model_spec.version_label = label
    if signature is not None:
        req.model_spec.signature_name = signature
    for key, value in (features() if inputs is None else inputs).items():
        req.inputs[key].CopyFrom(tf.make_tensor_proto(value))
    req.output_filter.extend(output_filter)
    return req


def decoded(response) -> dict[str, np.ndarray]:
    return {key: tf.make_ndarray(proto) for key, proto in response.outputs.items()}


def rpc_error(call, req) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call(req, timeout=30)
    return caught.value


def test_predict_equals_the_savedmodel_run_in_process(server, local_signatures):
    predict, _ = server
    inputs = features(batch=4, length=16, seed=1)
    response = predict.Predict(request(inputs), timeout=30)
    assert (response.model_spec.name, response.model_spec.version.value, response.model_spec.signature_name) == (
        "bner", 2, "serving_default")
    got = decoded(response)
    want = {k: v.numpy() for k, v in local_signatures[2](**{k: tf.constant(v) for k, v in inputs.items()}).items()}
    assert set(got) == set(OUTPUTS)
    for key in OUTPUTS:
        assert got[key].dtype == want[key].dtype and got[key].shape == want[key].shape, key
    np.testing.assert_array_equal(got["label_ids"], want["label_ids"])
    np.testing.assert_allclose(got["scores"], want["scores"], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got["logits"], want["logits"], rtol=1e-6, atol=1e-6)
    # Typed value fields, as TF Serving's Predict writes them.
    assert response.outputs["label_ids"].int_val and response.outputs["scores"].float_val
    assert not response.outputs["scores"].tensor_content


def test_output_filter(server):
    predict, _ = server
    only = predict.Predict(request(output_filter=["label_ids"]), timeout=30)
    assert list(only.outputs) == ["label_ids"]
    two = predict.Predict(request(output_filter=["scores", "label_ids"]), timeout=30)
    assert set(two.outputs) == {"scores", "label_ids"}
    error = rpc_error(predict.Predict, request(output_filter=["probabilities"]))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "output tensor alias not found in signature: probabilities" in error.details()
    error = rpc_error(predict.Predict, request(output_filter=["scores", "scores"]))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "duplicate" in error.details()


def test_unknown_model_is_not_found(server):
    predict, status = server
    error = rpc_error(predict.Predict, request(name="other"))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert error.details() == "Servable not found for request: Latest(other)"
    error = rpc_error(status.GetModelStatus, get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "other"}))
    assert error.code() == grpc.StatusCode.NOT_FOUND


def test_unknown_signature_fails_as_tf_serving_does(server):
    predict, _ = server
    error = rpc_error(predict.Predict, request(signature="classify"))
    # TF Serving's predict_util.cc answers FAILED_PRECONDITION here, not INVALID_ARGUMENT.
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error.details() == 'Serving signature key "classify" not found.'


@pytest.mark.parametrize("change", ["missing", "extra", "int64", "rank1", "float"])
def test_bad_inputs_are_invalid_argument(server, change):
    predict, _ = server
    inputs = features()
    if change == "missing":
        del inputs["token_type_ids"]
    elif change == "extra":
        inputs["position_ids"] = inputs["input_ids"]
    elif change == "int64":
        inputs["input_ids"] = inputs["input_ids"].astype(np.int64)
    elif change == "rank1":
        inputs = {k: v[0] for k, v in inputs.items()}
    else:
        inputs["attention_mask"] = inputs["attention_mask"].astype(np.float32)
    error = rpc_error(predict.Predict, request(inputs))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    if change in ("missing", "extra"):
        assert "input size does not match signature" in error.details()


def test_version_selection(server, local_signatures):
    predict, status = server
    assert predict.Predict(request(), timeout=30).model_spec.version.value == 2
    assert predict.Predict(request(label="stable"), timeout=30).model_spec.version.value == 2
    inputs = features(seed=2)
    first = predict.Predict(request(inputs, version=1), timeout=30)
    assert first.model_spec.version.value == 1
    want = local_signatures[1](**{k: tf.constant(v) for k, v in inputs.items()})
    np.testing.assert_allclose(decoded(first)["logits"], want["logits"].numpy(), rtol=1e-6, atol=1e-6)
    statuses = status.GetModelStatus(get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "bner"}), timeout=30)
    assert {(s.version, s.state) for s in statuses.model_version_status} == {
        (1, get_model_status_pb2.ModelVersionStatus.AVAILABLE), (2, get_model_status_pb2.ModelVersionStatus.AVAILABLE)}
    # A later version loaded on demand does not change what "latest" means here.
    assert predict.Predict(request(), timeout=30).model_spec.version.value == 2

    error = rpc_error(predict.Predict, request(version=7))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert error.details() == "Servable not found for request: Specific(bner, 7)"
    error = rpc_error(predict.Predict, request(label="canary"))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "Unrecognized servable version label: canary"
    error = rpc_error(predict.Predict, request(version=3))  # .tmp-deadbeef-3 is not version 3
    assert error.code() == grpc.StatusCode.NOT_FOUND


def test_model_status_and_metadata(server):
    predict, status = server
    spec = {"name": "bner", "version": {"value": 2}}
    reply = status.GetModelStatus(get_model_status_pb2.GetModelStatusRequest(model_spec=spec), timeout=30)
    [only] = reply.model_version_status
    assert only.version == 2 and only.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
    assert only.status.error_code == 0

    metadata = predict.GetModelMetadata(
        get_model_metadata_pb2.GetModelMetadataRequest(model_spec={"name": "bner"}, metadata_field=["signature_def"]),
        timeout=30,
    )
    assert metadata.model_spec.version.value == 2
    signatures = get_model_metadata_pb2.SignatureDefMap()
    assert metadata.metadata["signature_def"].Unpack(signatures)
    serving = signatures.signature_def["serving_default"]
    assert set(serving.inputs) == {"input_ids", "attention_mask", "token_type_ids"}
    assert set(serving.outputs) == set(OUTPUTS)
    assert serving.inputs["input_ids"].dtype == tf.int32.as_datatype_enum
    error = rpc_error(predict.GetModelMetadata, get_model_metadata_pb2.GetModelMetadataRequest(
        model_spec={"name": "bner"}, metadata_field=["graph"]))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_new_versions_sigterm_and_restart_on_the_same_port(export_base, tmp_path):
    base = tmp_path / "bner"
    shutil.copytree(export_base, base)
    with running_prediction_service(base, args=["--file_system_poll_wait_seconds=0.2"]) as (host, port, process):
        channel = grpc.insecure_channel(f"{host}:{port}")
        predict = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        assert predict.Predict(request(), timeout=30).model_spec.version.value == 2
        # Publish version 3 the way bner's export does: complete folder, then rename.
        shutil.copytree(base / "2", base / ".tmp-0000-3")
        os.replace(base / ".tmp-0000-3", base / "3")
        deadline = time.monotonic() + 30
        while predict.Predict(request(), timeout=30).model_spec.version.value != 3:
            assert time.monotonic() < deadline, "version 3 was not picked up"
            time.sleep(0.1)

        process.terminate()  # SIGTERM
        assert process.wait(20) == 0
        error = rpc_error(predict.Predict, request())
        assert error.code() == grpc.StatusCode.UNAVAILABLE

        restart = ["--version_labels=stable=2", "--tensor_encoding=content"]
        with running_prediction_service(base, port=port, args=restart) as (_, again, _):
            assert again == port
            # The old channel reconnects to the new server.
            latest = predict.Predict(request(), timeout=30, wait_for_ready=True)
            assert latest.model_spec.version.value == 3
            assert latest.outputs["scores"].tensor_content and not latest.outputs["scores"].float_val
            assert predict.Predict(request(label="stable"), timeout=30).model_spec.version.value == 2
        channel.close()
    assert "Shutting down" in process.log_text and "Stopped" in process.log_text
