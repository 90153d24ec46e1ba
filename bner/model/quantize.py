"""An int8 copy of an export's ONNX model, for faster CPU serving, run by ONNX Runtime.

What is quantised, and why (``bench/runtime_equality.py`` measures what it costs in F1,
``bench/serve_load.py`` what it gains; docs/benchmarks.md has the figures):

- every matrix product of the encoder whose weight is a constant: the attention projections
  and both feed-forward matrices of each layer. tf2onnx writes the attention projections as
  ``Gemm`` nodes, so they are first written as the ``MatMul`` (and ``Add`` of the bias) they compute;
- weights int8 per output channel, in 7 bits: on CPUs without VNNI, ONNX Runtime multiplies
  uint8 activations by int8 weights with an instruction that adds pairs of products in 16 bits,
  which full 8-bit weights can saturate (255 × 127 × 2 > 32,767; with 7 bits, 255 × 63 × 2 fits);
- activations quantised at run time with one scale per token (per row of the product's input),
  symmetric around zero: a token's numbers depend on that token alone;
- before that, where sample inputs are given (the export passes a few hundred of the run's
  training sentences), each input's channels are smoothed (SmoothQuant, Xiao et al. 2023): a
  few channels carry much larger values than the rest, and one scale per token would spend its
  range on them. Each channel is divided by ``s = max|x|^0.5 / max|w|^0.5`` and the matching
  weight row multiplied by it: the same product in float32, with the spread shared between
  activations and weights (which have a scale per output channel);
- the classifier head (``logits``) and the embedding tables stay float32: the head is small
  and decides every tag (an embedding projection, as ELECTRA and ALBERT have, is a matrix
  product like the others and is quantised).

The attention's own products (query by key, probabilities by value) and everything else stay float32.

Why bner writes the quantised graph itself rather than calling ONNX Runtime's
``quantize_dynamic``: that quantises each product's input with one scale for the whole call,
so one token's large activations coarsen every other token's, and a text's answer depends on
the texts batched with it (measured: 20 to 47 of about 1,000 sentences tagged differently one
per call than 32 per call; docs/benchmarks.md). No ONNX Runtime operator or quantisation mode
with int8 weights scales per row, so each product becomes a few standard ONNX operators (the
row's largest magnitude, the scale, the uint8 rows) and ONNX Runtime's public
``MatMulIntegerToFloat`` (com.microsoft), which multiplies the integers and applies the
weights' per-channel scales; the row scales are applied after it. The uint8 rows rely on
ONNX Runtime's Cast truncating toward zero, as C++ does.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

import numpy as np

# What metadata.json and the model card say of the quantised file.
QUANTIZATION = ("int8: the encoder's attention projections and feed-forward matrices, weights per output channel in 7 bits, "
                "activations per token at run time; embedding tables and classifier head float32")
SMOOTHING = 0.5  # how much of each channel's spread moves from the activations to the weights (SmoothQuant's alpha)
# The classifier head's nodes, by the layer name bner.model.network gives it (tf2onnx keeps
# TensorFlow's names, which may add a "_1" to it).
HEAD = re.compile(r"(^|/)logits(_\d+)?/")
WEIGHT_BITS = 7
# Activations as uint8 around a zero point of 128: each row's largest magnitude maps to ±127.
ZERO_POINT = 128
MICROSOFT = "com.microsoft"


def quantize(source: str, target: str, samples: Sequence[dict[str, np.ndarray]] = ()) -> dict:
    """Write an int8 copy of the ONNX model ``source`` to ``target`` (same inputs and outputs).

    ``samples``: model inputs (batches) whose activations set the smoothing; without them, none.
    Returns what was done: the matrix products quantised, the inputs smoothed, the samples read.
    """
    import onnx

    model = prepared(source, target + ".folded")
    chosen = chosen_matmuls(model.graph)
    if not chosen:
        raise ValueError(f"{source}: no matrix product with a constant weight to quantise (not a bner export?)")
    smoothed = smooth(model, chosen, activation_ranges(model, chosen, samples)) if samples else 0
    quantize_per_row(model, chosen)
    quantised = sum(node.op_type == "MatMulIntegerToFloat" for node in model.graph.node)
    if quantised != len(chosen):
        raise ValueError(f"{source}: {quantised} of the {len(chosen)} matrix products chosen were quantised")
    onnx.checker.check_model(model)
    onnx.save(model, target)
    return {"products": quantised, "inputs_smoothed": smoothed, "sample_batches": len(samples)}


def prepared(source: str, scratch: str):
    """``source`` after ONNX Runtime's basic rewrites, with its plain ``Gemm`` nodes written as ``MatMul``.

    The basic rewrites (constant folding above all) are saved as a plain ONNX file that any CPU
    runs, at ``scratch``, then read back and removed: tf2onnx leaves some weights behind a
    Reshape, which would hide them from quantisation.
    """
    import onnx
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = scratch
    options.log_severity_level = 4
    try:
        onnxruntime.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        model = onnx.load(scratch)
    finally:
        if os.path.exists(scratch):
            os.remove(scratch)
    gemms_as_matmuls(model.graph)
    return model


def chosen_matmuls(graph) -> list[str]:
    """The matrix products to quantise: each ``MatMul`` by a constant 2-D weight, except the head's.

    Per-channel quantisation needs a plain [in, out] matrix: DeBERTa's relative-position
    embeddings, once projected and folded, are 3-D constants, so they stay float32.
    """
    matrices = {tensor.name for tensor in graph.initializer if len(tensor.dims) == 2}
    return [node.name for node in graph.node
            if node.op_type == "MatMul" and node.input[1] in matrices and not HEAD.search(node.name)]


def activation_ranges(model, chosen: list[str], samples: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Each chosen product's input: its largest magnitude per channel (last axis) over ``samples``
    (the padding's pieces left out), the float32 model run by ONNX Runtime with those inputs as
    extra outputs."""
    import onnx
    import onnxruntime
    from onnx import helper

    nodes = {node.name: node for node in model.graph.node}
    names = sorted({nodes[name].input[0] for name in chosen})
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.output.extend(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None) for name in names)
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 4
    session = onnxruntime.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    inputs = [i.name for i in session.get_inputs()]
    ranges: dict[str, np.ndarray] = {}
    for batch in samples:
        mask = batch.get("attention_mask")
        real = None if mask is None else np.asarray(mask).reshape(-1) > 0
        for name, value in zip(names, session.run(names, {k: batch[k] for k in inputs})):
            rows = np.abs(value).reshape(-1, value.shape[-1])
            if real is not None and len(rows) == len(real):  # one row per piece: the padding's rows are left out
                rows = rows[real]
            if len(rows):
                largest = rows.max(axis=0)
                ranges[name] = largest if name not in ranges else np.maximum(ranges[name], largest)
    return ranges


def smooth(model, chosen: list[str], ranges: dict[str, np.ndarray], alpha: float = SMOOTHING) -> int:
    """Divide each chosen product's input channels by ``s = range**alpha / max|weight row|**(1 - alpha)``
    and multiply the weights' rows by ``s``: the same products, with flatter inputs. Returns how
    many inputs were smoothed.

    An input is left as it is where one of its products' weights is read by anything else (it
    would change that reader) or its range does not match the weights' rows; a channel where
    either maximum is 0 keeps ``s = 1``. The division is a ``Mul`` node between the input and its
    products.
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    weights = {tensor.name: tensor for tensor in graph.initializer}
    nodes = {node.name: node for node in graph.node}
    products: dict[str, list] = {}
    for name in chosen:
        products.setdefault(nodes[name].input[0], []).append(nodes[name])
    readers: dict[str, set[str]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, set()).add(node.name)
    muls = []
    for x, group in products.items():
        names = {node.name for node in group}
        matrices = [numpy_helper.to_array(weights[node.input[1]]) for node in group]
        if x not in ranges or any(readers[node.input[1]] - names for node in group) \
                or any(m.shape[0] != ranges[x].shape[0] for m in matrices):
            continue
        largest_row = np.max([np.abs(m).max(axis=1) for m in matrices], axis=0)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            scale = ranges[x] ** alpha / largest_row ** (1 - alpha)
        scale = np.where((ranges[x] > 0) & (largest_row > 0) & np.isfinite(scale) & (scale > 0), scale, 1.0)
        if np.all(scale == 1.0):
            continue
        for node, matrix in zip(group, matrices):
            weights[node.input[1]].CopyFrom(numpy_helper.from_array((matrix * scale[:, None]).astype(np.float32), node.input[1]))
        inverse, smoothed = f"{x}/smoothing", f"{x}/smoothed"
        graph.initializer.append(numpy_helper.from_array((1.0 / scale).astype(np.float32), inverse))
        muls.append(helper.make_node("Mul", [x, inverse], [smoothed], name=f"{x}/smooth"))
        for node in group:
            node.input[0] = smoothed
    graph.node.extend(muls)
    sort_nodes(graph)
    return len(muls)


def quantize_per_row(model, chosen: list[str]) -> None:
    """Replace the ``MatMul`` nodes named ``chosen`` in ``model`` by int8 products, activations scaled per row.

    Products that read the same input (a layer's query, key and value projections) share its
    quantisation. Each input ``x`` (any rank; rows along its last axis) becomes
    ``q = uint8(x / s + 128.5)`` with ``s = max(|x|) / 127`` per row: ``x / s`` lies in
    [-127, 127], so adding 128.5 and truncating rounds it to the nearest of 1..255. Each product is
    then ``MatMulIntegerToFloat(q, w, 1, w_scale, 128) * s``, ``w = round(weight / w_scale)`` in
    7 bits per output column.
    """
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if not any(o.domain == MICROSOFT for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MICROSOFT, 1))
    weights = {tensor.name: tensor for tensor in graph.initializer}
    nodes = {node.name: node for node in graph.node}
    readers: dict[str, list] = {}
    for name in chosen:
        readers.setdefault(nodes[name].input[0], []).append(nodes[name])
    float_weights = {nodes[name].input[1] for name in chosen}

    prefix = "int8"
    constants = {f"{prefix}/inverse_127": np.array(1 / 127, np.float32),
                 f"{prefix}/smallest_scale": np.array(np.finfo(np.float32).tiny, np.float32),
                 f"{prefix}/offset": np.array(ZERO_POINT + 0.5, np.float32),
                 f"{prefix}/one": np.array(1.0, np.float32),
                 f"{prefix}/zero_point": np.array(ZERO_POINT, np.uint8),
                 f"{prefix}/last_axis": np.array([-1], np.int64)}
    graph.initializer.extend(numpy_helper.from_array(value, name) for name, value in constants.items())
    largest = 2 ** (WEIGHT_BITS - 1) - 1  # 63
    written: set[str] = set()
    new_nodes = []
    for x, products in readers.items():
        p = f"{x}/{prefix}"
        # ReduceMax takes its axes as an attribute before opset 18, as an input since.
        reduce = (helper.make_node("ReduceMax", [f"{p}/abs", f"{prefix}/last_axis"], [f"{p}/max"], keepdims=1) if opset >= 18
                  else helper.make_node("ReduceMax", [f"{p}/abs"], [f"{p}/max"], axes=[-1], keepdims=1))
        new = [helper.make_node("Abs", [x], [f"{p}/abs"]), reduce,
               helper.make_node("Mul", [f"{p}/max", f"{prefix}/inverse_127"], [f"{p}/raw_scale"]),
               # A row of zeros gets the smallest normal scale: its values stay 0 and the inverse finite.
               helper.make_node("Max", [f"{p}/raw_scale", f"{prefix}/smallest_scale"], [f"{p}/scale"]),
               helper.make_node("Reciprocal", [f"{p}/scale"], [f"{p}/inverse"]),
               helper.make_node("Mul", [x, f"{p}/inverse"], [f"{p}/scaled"]),
               helper.make_node("Add", [f"{p}/scaled", f"{prefix}/offset"], [f"{p}/shifted"]),
               helper.make_node("Cast", [f"{p}/shifted"], [f"{p}/uint8"], to=TensorProto.UINT8)]
        for node in products:
            weight_name = node.input[1]
            int8_name, scale_name = f"{weight_name}/{prefix}", f"{weight_name}/{prefix}_scale"
            if weight_name not in written:
                weight = numpy_helper.to_array(weights[weight_name]).astype(np.float32)
                scale = np.abs(weight).max(axis=0) / largest
                scale = np.where(scale > 0, scale, 1.0).astype(np.float32)  # an all-zero column stays zero
                integers = np.clip(np.rint(weight / scale), -largest, largest).astype(np.int8)
                graph.initializer.extend([numpy_helper.from_array(integers, int8_name), numpy_helper.from_array(scale, scale_name)])
                written.add(weight_name)
            out = node.output[0]
            new += [helper.make_node("MatMulIntegerToFloat", [f"{p}/uint8", int8_name, f"{prefix}/one", scale_name, f"{prefix}/zero_point"],
                                     [f"{out}/{prefix}"], name=f"{node.name}/{prefix}", domain=MICROSOFT),
                    helper.make_node("Mul", [f"{out}/{prefix}", f"{p}/scale"], [out], name=f"{node.name}/{prefix}_rows")]
        new_nodes.append(new)

    replaced = set(chosen)
    kept = [node for node in graph.node if node.name not in replaced]
    del graph.node[:]
    graph.node.extend(kept + [node for group in new_nodes for node in group])
    sort_nodes(graph)
    # The float32 weights go, unless something else still reads them, and so do the constants unused.
    needed = {name for node in graph.node for name in node.input}
    unused = (float_weights | set(constants)) - needed
    remaining = [tensor for tensor in graph.initializer if tensor.name not in unused]
    del graph.initializer[:]
    graph.initializer.extend(remaining)


def sort_nodes(graph) -> None:
    """Order ``graph``'s nodes so that each comes after the nodes that compute its inputs (ONNX
    requires it), keeping their present order wherever it already allows."""
    import heapq

    def reads(node) -> set[str]:  # its inputs, and those of the graphs it holds (If, Loop)
        names = set(node.input)
        for attribute in node.attribute:
            for sub in [attribute.g, *attribute.graphs]:
                for inner in sub.node:
                    names |= reads(inner)
        return names

    nodes = list(graph.node)
    writer = {output: i for i, node in enumerate(nodes) for output in node.output if output}
    waiting = [{writer[name] for name in reads(node) if name in writer and writer[name] != i} for i, node in enumerate(nodes)]
    readers: dict[int, list[int]] = {}
    for i, before in enumerate(waiting):
        for j in before:
            readers.setdefault(j, []).append(i)
    ready = [i for i, before in enumerate(waiting) if not before]
    heapq.heapify(ready)
    ordered = []
    while ready:
        i = heapq.heappop(ready)
        ordered.append(nodes[i])
        for j in readers.get(i, ()):
            waiting[j].discard(i)
            if not waiting[j]:
                heapq.heappush(ready, j)
    if len(ordered) != len(nodes):
        raise ValueError("the graph has a cycle: its nodes cannot be ordered")
    del graph.node[:]
    graph.node.extend(ordered)


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
