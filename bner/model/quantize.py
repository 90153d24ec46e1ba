"""An int8 copy of an export's ONNX model, for faster CPU serving: ONNX Runtime's dynamic quantisation.

What is quantised, and why (``bench/runtime_equality.py`` measures what it costs in F1,
``bench/serve_load.py`` what it gains; docs/benchmarks.md has the figures):

- every matrix product of the encoder whose weight is a constant: the attention projections
  and both feed-forward matrices of each layer. tf2onnx writes the attention projections as
  ``Gemm`` nodes, which ONNX Runtime's dynamic quantisation leaves in float32 (it quantises
  ``MatMul``), so they are first written as the ``MatMul`` (and ``Add`` of the bias) they compute;
- weights int8 per output channel, in 7 bits (``reduce_range``): on CPUs without VNNI, ONNX
  Runtime multiplies uint8 activations by int8 weights with instructions that add pairs of
  products in 16 bits, which can saturate with full 8-bit weights;
- activations quantised per call at run time (dynamic): no calibration data is needed;
- the classifier head (``logits``) and the embedding tables stay float32: the head is small
  and decides every tag (an embedding projection, as ELECTRA and ALBERT have, is a matrix
  product like the others and is quantised).

The attention's own products (query by key, probabilities by value) and everything else stay float32.
"""

from __future__ import annotations

import logging
import os
import re

# What metadata.json and the model card say of the quantised file.
QUANTIZATION = ("dynamic int8 (ONNX Runtime): the encoder's attention projections and feed-forward matrices, "
                "weights per output channel in 7 bits; embedding tables and classifier head float32")
# The classifier head's nodes, by the layer name bner.model.network gives it (tf2onnx keeps
# TensorFlow's names, which may add a "_1" to it).
HEAD = re.compile(r"(^|/)logits(_\d+)?/")


def quantize(source: str, target: str) -> None:
    """Write an int8 copy of the ONNX model ``source`` to ``target`` (same inputs and outputs)."""
    import onnx
    import onnxruntime
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # ONNX Runtime's basic rewrites first (constant folding above all), saved as a plain ONNX
    # file that any CPU runs: tf2onnx leaves some weights behind a Reshape, which would hide
    # them from quantisation.
    folded = target + ".folded"
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = folded
    options.log_severity_level = 4
    try:
        onnxruntime.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        model = onnx.load(folded)
    finally:
        if os.path.exists(folded):
            os.remove(folded)
    gemms_as_matmuls(model.graph)
    chosen = chosen_matmuls(model.graph)
    if not chosen:
        raise ValueError(f"{source}: no matrix product with a constant weight to quantise (not a bner export?)")
    rewritten = target + ".float32"
    onnx.save(model, rewritten)
    root = logging.getLogger()
    root.addFilter(not_the_preprocessing_advice)
    try:
        quantize_dynamic(rewritten, target, weight_type=QuantType.QInt8, per_channel=True, reduce_range=True,
                         op_types_to_quantize=["MatMul"], nodes_to_quantize=chosen)
    finally:
        root.removeFilter(not_the_preprocessing_advice)
        os.remove(rewritten)
    quantised = sum(node.op_type in ("MatMulInteger", "DynamicQuantizeMatMul") for node in onnx.load(target).graph.node)
    if quantised != len(chosen):
        os.remove(target)
        raise ValueError(f"{source}: ONNX Runtime quantised {quantised} of the {len(chosen)} matrix products chosen")


def chosen_matmuls(graph) -> list[str]:
    """The matrix products to quantise: each ``MatMul`` by a constant 2-D weight, except the head's.

    Per-channel quantisation needs a plain [in, out] matrix: DeBERTa's relative-position
    embeddings, once projected and folded, are 3-D constants that ONNX Runtime cannot quantise
    that way, so they stay float32.
    """
    matrices = {tensor.name for tensor in graph.initializer if len(tensor.dims) == 2}
    return [node.name for node in graph.node
            if node.op_type == "MatMul" and node.input[1] in matrices and not HEAD.search(node.name)]


def not_the_preprocessing_advice(record: logging.LogRecord) -> bool:
    """A logging filter: quantize_dynamic logs a warning advising shape pre-processing, which is
    for models whose shapes need inferring before fusion; nothing a user could act on here.
    Every other record passes."""
    return "pre-processing before quantization" not in record.getMessage()


def gemms_as_matmuls(graph) -> None:
    """Write each ``Gemm`` of a 2-D input by a constant weight as ``MatMul`` (+ ``Add`` of its bias).

    The same values: ``Gemm`` computes ``alpha * A @ op(B) + beta * C``; only the plain case
    (``alpha`` 1, ``A`` not transposed, ``beta`` 0 or 1) is rewritten, ``B`` transposed once
    here when ``transB`` asks for it. Other ``Gemm`` nodes are left as they are.
    """
    from onnx import helper, numpy_helper

    constants = {tensor.name: tensor for tensor in graph.initializer}
    nodes, used, replaced = [], set(), set()
    for node in graph.node:
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        with_bias = len(node.input) > 2 and bool(node.input[2]) and attributes.get("beta", 1.0) != 0.0
        plain = (node.op_type == "Gemm" and node.domain in ("", "ai.onnx") and node.input[1] in constants
                 and attributes.get("alpha", 1.0) == 1.0 and not attributes.get("transA", 0)
                 and (not with_bias or attributes.get("beta", 1.0) == 1.0))
        if not plain:
            nodes.append(node)
            continue
        name = node.input[1]
        if attributes.get("transB", 0):
            name = f"{node.input[1]}/transposed"
            replaced.add(node.input[1])
            if name not in used:
                weight = numpy_helper.to_array(constants[node.input[1]])
                graph.initializer.append(numpy_helper.from_array(weight.T.copy(), name))
        used.add(name)
        product = f"{node.output[0]}/product" if with_bias else node.output[0]
        label = node.name or node.output[0]  # node names are optional; output names are unique
        nodes.append(helper.make_node("MatMul", [node.input[0], name], [product], name=f"{label}/matmul"))
        if with_bias:
            nodes.append(helper.make_node("Add", [product, node.input[2]], [node.output[0]], name=f"{label}/bias"))
    del graph.node[:]
    graph.node.extend(nodes)
    # The weights now stored transposed go, unless something else still reads them.
    needed = {name for node in graph.node for name in node.input}
    kept = [tensor for tensor in graph.initializer if tensor.name not in replaced or tensor.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(kept)
