"""Where the model runs: a Keras model, the export's ONNX model or SavedModel in this process, or TensorFlow Serving over gRPC.

A backend turns a batch of int32 model inputs (``input_ids``, ``attention_mask``,
``token_type_ids``: ``[batch, length]``) into per-piece label probabilities
(``[batch, length, labels]``, the softmax of the export's ``logits`` output): what the
valid-sequence decoder needs. Everything before and after, from raw text to entities,
decoding included, is :class:`bner.inference.tagger.Tagger`'s shared code, so every backend returns
the same entities. None of them imports Keras unless it runs a Keras model.
"""

from __future__ import annotations

import logging
import os
import time

import numpy as np

from bner import io
from bner.errors import first_line
from bner.model.metadata import INPUTS, SIGNATURE

log = logging.getLogger(__name__)
OUTPUTS = ("logits",)
RUNTIMES = ("auto", "onnx", "onnx-int8", "tensorflow")
RUNTIME_HELP = ("what runs an export in this process: onnx (its model.onnx, ONNX Runtime), onnx-int8 (its model.int8.onnx, "
                "where it was exported with --export_int8: faster on CPUs, its F1 cost in the model card), "
                "tensorflow (its SavedModel), or auto (onnx where the export has model.onnx and onnxruntime is installed, "
                "else tensorflow)")


class BackendUnavailable(RuntimeError):
    """The model cannot answer now (server down, timing out); the request may be retried."""


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


def probabilities_of(logits) -> np.ndarray:
    return softmax(np.asarray(logits, dtype=np.float32))


class KerasBackend:
    """A Keras tagger network, through Keras' compiled prediction step (any backend).

    Training's dev evaluation runs the model being trained this way; ``bner.load`` of a
    trained-model folder builds one from its weights.
    """

    name = "keras"

    def __init__(self, model):
        import keras

        self.model = model
        # XLA (JAX; TensorFlow on GPUs, where Keras compiles by default) compiles each input
        # shape; TensorFlow's plain predict function takes any shape.
        self.static_shapes = keras.backend.backend() != "tensorflow" or bool(getattr(model, "jit_compile", False))
        self.num_labels = int(model.output_shape[-1])

        self.model_seconds = 0.0  # time spent in the network's forward passes (training's dev pause reports it)

    def piece_probabilities(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        started = time.perf_counter()
        logits = self.model.predict_on_batch(inputs)
        self.model_seconds += time.perf_counter() - started
        return probabilities_of(logits)


class OnnxBackend:
    """The export's ``model.onnx`` (or its int8 copy, ``name`` ``onnx-int8``), run by ONNX Runtime in
    this process: no TensorFlow, no Keras.

    The file is checked against the SHA-256 that metadata.json gives before ONNX Runtime
    reads it, so a damaged or swapped file fails at load, never later.
    """

    name = "onnx"
    static_shapes = False  # the graph takes any batch and length

    def __init__(self, version_folder: str, facts: dict, name: str = "onnx"):
        import onnxruntime

        self.name = name
        path = io.within(version_folder, facts["file"])
        options = onnxruntime.SessionOptions()
        # Fatal only: its start-up warnings say nothing a user can act on, and an error in a run
        # reaches the caller as an exception, which bner reports in its own words, once.
        options.log_severity_level = 4
        # ONNX Runtime reads the file itself: given the bytes instead, the process keeps a second
        # copy of the weights (the sample model: 292 MB resident against 169 MB).
        with io.local_copy(path) as local:
            if not os.path.isfile(local):
                raise ValueError(f"{path}: file not found (metadata.json names it)")
            if io.file_sha256(local) != facts.get("sha256"):
                raise ValueError(f"{path}: its SHA-256 is not the one metadata.json gives (a damaged or replaced file)")
            try:
                self._session = onnxruntime.InferenceSession(local, options, providers=["CPUExecutionProvider"])
            except Exception as e:  # noqa: BLE001 — ONNX Runtime raises its own exception types for a bad graph
                raise ValueError(f"{path}: ONNX Runtime cannot load it ({first_line(e)})") from None
        inputs = {i.name: i for i in self._session.get_inputs()}
        outputs = {o.name: o for o in self._session.get_outputs()}
        if sorted(inputs) != sorted(INPUTS) or "logits" not in outputs:
            raise ValueError(f"{path}: expected inputs {', '.join(INPUTS)} and a logits output (not a bner export?)")
        odd = [f"{name} is {i.type}" for name, i in inputs.items() if i.type != "tensor(int32)" or len(i.shape) != 2]
        if odd or len(outputs["logits"].shape) != 3:
            problem = odd[0] if odd else f"logits have {len(outputs['logits'].shape)} dimensions"
            raise ValueError(f"{path}: expected int32 [batch, pieces] inputs and [batch, pieces, labels] logits, but {problem}")
        last = outputs["logits"].shape[-1]
        self.num_labels = last if isinstance(last, int) else None
        self.model_seconds = 0.0

    def piece_probabilities(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        started = time.perf_counter()
        feed = {k: np.ascontiguousarray(inputs[k], dtype=np.int32) for k in INPUTS}
        logits = self._session.run(["logits"], feed)[0]
        self.model_seconds += time.perf_counter() - started
        return probabilities_of(logits)


class RecordingBackend:
    """``backend``, keeping the inputs of every model call it answers (``inputs``): what a tagger
    really feeds its model (windows, document context, span markers), as samples to calibrate on."""

    def __init__(self, backend):
        self.backend, self.inputs = backend, []

    def __getattr__(self, name: str):
        return getattr(self.backend, name)

    def piece_probabilities(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        self.inputs.append({k: np.array(v) for k, v in inputs.items()})
        return self.backend.piece_probabilities(inputs)


class SavedModelBackend:
    """The exported SavedModel, run in this process (TensorFlow only, no Keras)."""

    name = "in-process"
    static_shapes = False  # the signature takes any batch and length

    def __init__(self, version_folder: str, signature_name: str = SIGNATURE):
        import tensorflow as tf

        with io.local_copy(version_folder) as local:
            try:
                self._loaded = tf.saved_model.load(local)
            except Exception as e:  # noqa: BLE001 — TensorFlow raises many types for a damaged SavedModel
                raise ValueError(f"{version_folder}: cannot load the SavedModel ({first_line(e)})") from None
        if signature_name not in self._loaded.signatures:
            raise ValueError(
                f"{version_folder}: the SavedModel has no signature {signature_name!r} "
                f"(it has {', '.join(self._loaded.signatures) or 'none'})"
            )
        self._signature = self._loaded.signatures[signature_name]
        self._tf = tf
        logits = self._signature.structured_outputs.get("logits")
        if logits is None:
            raise ValueError(f"{version_folder}: the signature {signature_name!r} has no logits output (not a bner export?)")
        inputs = self._signature.structured_input_signature[1]
        if sorted(inputs) != sorted(INPUTS):
            raise ValueError(f"{version_folder}: the signature {signature_name!r} takes {', '.join(sorted(inputs)) or 'nothing'}, "
                             f"not {', '.join(INPUTS)} (not a bner export?)")
        odd = [f"{name} is {spec.dtype.name}" for name, spec in inputs.items() if spec.dtype != tf.int32 or spec.shape.rank != 2]
        if odd or logits.shape.rank != 3:
            problem = odd[0] if odd else f"logits have {logits.shape.rank} dimensions"
            raise ValueError(f"{version_folder}: expected int32 [batch, pieces] inputs and [batch, pieces, labels] logits, "
                             f"but {problem}")
        self.num_labels = int(logits.shape[-1]) if logits.shape[-1] is not None else None
        self.model_seconds = 0.0

    def piece_probabilities(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        started = time.perf_counter()
        logits = self._signature(**{k: self._tf.constant(inputs[k]) for k in INPUTS})["logits"].numpy()
        self.model_seconds += time.perf_counter() - started
        return probabilities_of(logits)


class TFServingBackend:
    """TensorFlow Serving's ``PredictionService.Predict`` over gRPC.

    Inputs are padded with zeros to the export's ``max_seq_length``: TF Serving's own
    batching can then merge requests, and it is never asked to pad them itself (its
    ``pad_variable_length_inputs`` pads with each tensor's first element, which would
    make padding visible to attention). gRPC channels reconnect on their own, so the
    service recovers when TF Serving comes back; meanwhile calls fail fast with
    :class:`BackendUnavailable`.
    """

    name = "tf-serving"
    static_shapes = True  # padded to pad_to anyway: few distinct shapes for TF Serving's batching
    num_labels = None  # known to TF Serving only; checked through each answer's label ids

    def __init__(
        self,
        host: str,
        port: int = 8500,
        model_name: str = "bner",
        version: int | None = None,
        version_label: str | None = None,
        signature_name: str = SIGNATURE,
        timeout_seconds: float = 10.0,
        pad_to: int = 0,
        max_message_bytes: int = 64 * 1024 * 1024,
    ):
        import grpc
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        self.pad_to = pad_to  # the export's max_seq_length
        self.target = f"{host}:{port}"
        self.model_name, self.version, self.version_label = model_name, version, version_label
        self.signature_name, self.timeout = signature_name, timeout_seconds
        options = [("grpc.max_send_message_length", max_message_bytes), ("grpc.max_receive_message_length", max_message_bytes)]
        self._channel = grpc.insecure_channel(self.target, options=options)
        self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._grpc = grpc

    def _request(self, inputs: dict[str, np.ndarray]):
        from tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest()
        request.model_spec.name = self.model_name
        request.model_spec.signature_name = self.signature_name
        if self.version is not None:
            request.model_spec.version.value = self.version
        elif self.version_label:
            request.model_spec.version_label = self.version_label
        for name in INPUTS:
            request.inputs[name].CopyFrom(to_tensor_proto(np.ascontiguousarray(inputs[name], dtype=np.int32)))
        request.output_filter.extend(OUTPUTS)
        return request

    def piece_probabilities(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        length = inputs["input_ids"].shape[1]
        fixed = max(length, self.pad_to)
        padded = {k: np.pad(v, ((0, 0), (0, fixed - length))) for k, v in inputs.items()}
        try:
            response = self._stub.Predict(self._request(padded), timeout=self.timeout)
        except self._grpc.RpcError as e:
            code = e.code()
            if code in (self._grpc.StatusCode.UNAVAILABLE, self._grpc.StatusCode.DEADLINE_EXCEEDED, self._grpc.StatusCode.CANCELLED):
                raise BackendUnavailable(f"TensorFlow Serving at {self.target} is not answering ({code.name}: {e.details()})") from None
            raise BackendUnavailable(f"TensorFlow Serving at {self.target} refused the request ({code.name}: {e.details()})") from None
        return probabilities_of(from_tensor_proto(response.outputs["logits"])[:, :length])


# TensorProto conversion by hand: a few lines of NumPy instead of TensorFlow's
# make_tensor_proto/make_ndarray, which cost a graph-free but slow Python path per call.
_DTYPES = {np.dtype(np.int32): 3, np.dtype(np.float32): 1, np.dtype(np.int64): 9}  # tensorflow.DataType enum
_NUMPY = {v: k for k, v in _DTYPES.items()}


def to_tensor_proto(array: np.ndarray):
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2  # noqa: F401

    proto = tensor_pb2.TensorProto(dtype=_DTYPES[array.dtype])
    proto.tensor_shape.CopyFrom(tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in array.shape]))
    proto.tensor_content = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
    return proto


def from_tensor_proto(proto) -> np.ndarray:
    dtype = _NUMPY.get(proto.dtype)
    if dtype is None:
        raise BackendUnavailable(f"TensorFlow Serving returned an unexpected dtype {proto.dtype}")
    shape = [d.size for d in proto.tensor_shape.dim]
    if proto.tensor_content:
        return np.frombuffer(proto.tensor_content, dtype=dtype.newbyteorder("<")).astype(dtype).reshape(shape)
    values = proto.int_val if dtype.kind == "i" and dtype.itemsize == 4 else proto.int64_val if dtype.kind == "i" else proto.float_val
    array = np.asarray(values, dtype=dtype)
    return np.broadcast_to(array, shape).copy() if array.size == 1 else array.reshape(shape)
