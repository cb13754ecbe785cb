"""Load an ONNX graph onto the emulated accelerator and run it with the hardware's numerics.

Numerics (the point of the emulator):

* before every dot product (Conv, Gemm, MatMul) both operands are quantised to the configured
  block format along the reduction dimension (for a convolution the reduction runs over
  kernel rows, kernel columns, then input channels, so a block holds neighbouring channels of
  one kernel tap, as the hardware's native vectors do); weights are quantised once, at load;
* the products are accumulated in float32 (the wide accumulator);
* every vector operation (bias, activations, pooling, batch norm, elementwise add, softmax)
  runs on values rounded to the vector unit's precision (``vector_dtype``, float16 unless
  configured) and its result is rounded to it again.

Batch normalisation right after a convolution is folded into the convolution's weights and
bias at load time, as a model converter does; anywhere else it runs as a per-channel affine
vector operation.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import attrs
import ml_dtypes
import numpy as np
import onnx
from numpy.lib.stride_tricks import sliding_window_view
from onnx import numpy_helper

from .exceptions import InvalidInput, InvalidModel, UnsupportedOperator
from .formats import BlockFormat, get_format
from .latency import STRATIX10_280, AcceleratorPart, LatencyReport, LayerCost

DOT_PRODUCT_OPERATORS = frozenset({"Conv", "Gemm", "MatMul"})
VECTOR_OPERATORS = frozenset({
    "Add", "Relu", "LeakyRelu", "Clip", "Sigmoid", "Tanh", "MaxPool", "AveragePool",
    "GlobalAveragePool", "GlobalMaxPool", "BatchNormalization", "Softmax",
})
#: Operators that only move data: no arithmetic, so no precision to emulate.
LAYOUT_OPERATORS = frozenset({"Concat", "Flatten", "Reshape", "Transpose", "Identity", "Dropout",
                              "Cast"})
SUPPORTED_OPERATORS = DOT_PRODUCT_OPERATORS | VECTOR_OPERATORS | LAYOUT_OPERATORS

VECTOR_DTYPES = {"float16": np.float16, "bfloat16": ml_dtypes.bfloat16, "float32": np.float32}


@attrs.frozen
class TensorSpec:
    """A graph input or output: its name, element type and shape (-1 for a variable dim)."""

    name: str
    datatype: str
    shape: tuple[int, ...]


@attrs.frozen
class RunResult:
    """What one request returns: the outputs, the modelled device latency, host wall time."""

    outputs: dict[str, np.ndarray] = attrs.field(eq=False)
    latency: LatencyReport
    host_seconds: float


@attrs.frozen
class _Node:
    name: str
    op_type: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attributes: dict[str, Any] = attrs.field(eq=False)


def _spec(value_info: onnx.ValueInfoProto) -> TensorSpec:
    tensor_type = value_info.type.tensor_type
    shape = tuple(
        dim.dim_value if dim.HasField("dim_value") else -1 for dim in tensor_type.shape.dim
    )
    datatype = onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type).name.upper()
    return TensorSpec(name=value_info.name, datatype=datatype, shape=shape)


class AcceleratedModel:
    """An ONNX graph checked, folded and loaded for the accelerator in one block format."""

    def __init__(self, model: onnx.ModelProto, block_format: str | BlockFormat = "MSFP16", *,
                 vector_dtype: str = "float16", part: AcceleratorPart = STRATIX10_280) -> None:
        self.format = block_format if isinstance(block_format, BlockFormat) \
            else get_format(block_format)
        if vector_dtype not in VECTOR_DTYPES:
            raise InvalidModel(f"vector_dtype {vector_dtype!r} is not one of "
                               f"{', '.join(VECTOR_DTYPES)}")
        self.vector_dtype = VECTOR_DTYPES[vector_dtype]
        self.part = part
        self._opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
                           13)
        self._constants: dict[str, np.ndarray] = {
            init.name: numpy_helper.to_array(init) for init in model.graph.initializer
        }
        nodes = []
        for node in model.graph.node:
            if node.domain not in ("", "ai.onnx"):
                raise UnsupportedOperator(f"{node.domain}.{node.op_type}", node.name)
            attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            if node.op_type == "Constant":
                self._constants[node.output[0]] = numpy_helper.to_array(attributes["value"])
                continue
            if node.op_type not in SUPPORTED_OPERATORS:
                raise UnsupportedOperator(node.op_type, node.name or node.output[0])
            if node.op_type == "Cast" and attributes.get("to") != onnx.TensorProto.FLOAT:
                # Exporters (skl2onnx) put a Cast to float at a head's input: a no-op here.
                raise UnsupportedOperator("Cast", node.name or node.output[0],
                                          "only casts to float32 run (the accelerator has no "
                                          "other element type)")
            nodes.append(_Node(node.name or node.output[0], node.op_type, tuple(node.input),
                               tuple(node.output), attributes))
        self.inputs = [_spec(v) for v in model.graph.input if v.name not in self._constants]
        self.outputs = [_spec(v) for v in model.graph.output]
        for spec in self.inputs:
            if spec.datatype != "FLOAT32":
                raise InvalidModel(f"input {spec.name!r} is {spec.datatype}; the accelerator "
                                   "takes FLOAT32 inputs (cast on the host before the graph)")
        self._nodes = self._fold_batch_norm(nodes)
        for node in self._nodes:
            if node.op_type == "Softmax" and not self._only_moved_to_outputs(node.outputs[0]):
                raise UnsupportedOperator("Softmax", node.name,
                                          "Softmax runs only as the graph's final operation")
        self._quantized_weights: dict[tuple[str, int], np.ndarray] = {}

    def _only_moved_to_outputs(self, name: str) -> bool:
        """Does ``name`` reach the graph's outputs through data movement alone?"""
        consumers = [node for node in self._nodes if name in node.inputs]
        if not consumers:
            return name in {spec.name for spec in self.outputs}
        return all(node.op_type in LAYOUT_OPERATORS
                   and all(self._only_moved_to_outputs(out) for out in node.outputs)
                   for node in consumers)

    @classmethod
    def load(cls, source: str | Path | bytes, block_format: str | BlockFormat = "MSFP16",
             **options: Any) -> AcceleratedModel:
        """Load from a path or serialized bytes; a file that is not ONNX is refused clearly."""
        try:
            model = onnx.load_from_string(source) if isinstance(source, bytes) \
                else onnx.load(str(source))
        except Exception as exc:  # onnx raises DecodeError, OSError, ValueError...
            raise InvalidModel(f"not a loadable ONNX model: {exc}") from exc
        return cls(model, block_format, **options)

    # -- loading ---------------------------------------------------------------------------

    def _fold_batch_norm(self, nodes: list[_Node]) -> list[_Node]:
        consumers = Counter(name for node in nodes for name in node.inputs)
        producer = {node.outputs[0]: index for index, node in enumerate(nodes)}
        folded: list[_Node | None] = list(nodes)
        for index, node in enumerate(nodes):
            if node.op_type != "BatchNormalization":
                continue
            conv_index = producer.get(node.inputs[0])
            if conv_index is None or nodes[conv_index].op_type != "Conv":
                continue
            conv = folded[conv_index]
            if consumers[node.inputs[0]] != 1 or conv is None or conv.inputs[1] not in \
                    self._constants or not all(n in self._constants for n in node.inputs[1:5]):
                continue
            gamma, beta, mean, var = (self._constants[n].astype(np.float32)
                                      for n in node.inputs[1:5])
            factor = gamma / np.sqrt(var + node.attributes.get("epsilon", 1e-5))
            weights = self._constants[conv.inputs[1]].astype(np.float32)
            bias = self._constants[conv.inputs[2]].astype(np.float32) \
                if len(conv.inputs) > 2 and conv.inputs[2] else np.zeros(weights.shape[0],
                                                                          np.float32)
            weight_name, bias_name = f"{conv.name}/folded_weights", f"{conv.name}/folded_bias"
            self._constants[weight_name] = weights * factor[:, None, None, None]
            self._constants[bias_name] = (bias - mean) * factor + beta
            folded[conv_index] = attrs.evolve(conv, inputs=(conv.inputs[0], weight_name,
                                                            bias_name), outputs=node.outputs)
            folded[index] = None
        return [node for node in folded if node is not None]

    @property
    def operators(self) -> Counter:
        """How many nodes of each operator the loaded (folded) graph runs."""
        return Counter(node.op_type for node in self._nodes)

    # -- running ---------------------------------------------------------------------------

    def validate(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Check names, dtypes and shapes of a request; the error names what was expected."""
        expected = {spec.name: spec for spec in self.inputs}
        missing = sorted(set(expected) - set(inputs))
        unknown = sorted(set(inputs) - set(expected))
        if missing or unknown:
            raise InvalidInput(
                f"the model takes inputs {', '.join(self._describe(s) for s in self.inputs)}; "
                f"missing {missing}, unexpected {unknown}")
        checked = {}
        for name, value in inputs.items():
            spec = expected[name]
            array = np.asarray(value)
            if array.dtype != np.float32:
                raise InvalidInput(f"input {name!r} is {array.dtype}, expected "
                                   f"{self._describe(spec)}")
            if len(array.shape) != len(spec.shape) or any(
                    want not in (-1, got) for want, got in zip(spec.shape, array.shape)):
                raise InvalidInput(f"input {name!r} has shape {list(array.shape)}, expected "
                                   f"{self._describe(spec)}")
            checked[name] = array
        return checked

    @staticmethod
    def _describe(spec: TensorSpec) -> str:
        dims = ", ".join("-1" if d < 0 else str(d) for d in spec.shape)
        return f"{spec.name!r} {spec.datatype} shape [{dims}] (-1 = any size)"

    def run(self, inputs: dict[str, np.ndarray]) -> RunResult:
        started = time.perf_counter()
        checked = self.validate(inputs)
        values: dict[str, np.ndarray] = dict(self._constants)
        values.update(checked)
        layers: list[LayerCost] = []
        for node in self._nodes:
            args = [values[name] if name else None for name in node.inputs]
            result, cost = getattr(self, f"_op_{node.op_type}")(node, *args)
            values[node.outputs[0]] = result
            layers.append(LayerCost(node.name, node.op_type, *cost))
        outputs = {spec.name: values[spec.name].astype(np.float32) for spec in self.outputs}
        transfer = sum(a.nbytes for a in checked.values()) + sum(
            a.nbytes for a in outputs.values())
        return RunResult(outputs=outputs, latency=self.part.estimate(layers, transfer),
                         host_seconds=time.perf_counter() - started)

    def _vector(self, array: np.ndarray) -> np.ndarray:
        """Round to the vector unit's precision (float32 arrays in and out)."""
        return np.asarray(array, dtype=np.float32).astype(self.vector_dtype).astype(np.float32)

    def _weights(self, node: _Node, position: int, array: np.ndarray, axis: int) -> np.ndarray:
        """Quantise a dot-product operand, once per stored weight, along its reduction axis."""
        name = node.inputs[position]
        if name not in self._constants:
            return self.format.quantize(array, axis)
        key = (name, axis)
        if key not in self._quantized_weights:
            self._quantized_weights[key] = self.format.quantize(array, axis)
        return self._quantized_weights[key]

    # -- dot products (quantised operands, float32 accumulation) ---------------------------

    def _op_Conv(self, node, x, w, b=None):
        a = node.attributes
        if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET", b"VALID", "VALID"):
            raise UnsupportedOperator("Conv", node.name, "auto_pad SAME_* is not supported; "
                                      "export the model with explicit pads")
        if x.ndim != 4:
            raise UnsupportedOperator("Conv", node.name, "only 2-D convolutions run")
        groups = a.get("group", 1)
        out_channels, group_channels, kh, kw = w.shape
        sh, sw = a.get("strides", [1, 1])
        dh, dw = a.get("dilations", [1, 1])
        pt, pl, pb, pr = a.get("pads", [0, 0, 0, 0])
        padded = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
        eh, ew = (kh - 1) * dh + 1, (kw - 1) * dw + 1
        n = x.shape[0]
        oh = (padded.shape[2] - eh) // sh + 1
        ow = (padded.shape[3] - ew) // sw + 1
        windows = sliding_window_view(padded, (eh, ew), axis=(2, 3))
        windows = windows[:, :, : (oh - 1) * sh + 1: sh, : (ow - 1) * sw + 1: sw, ::dh, ::dw]
        per_group = out_channels // groups
        # Reduction order (kh, kw, C): a block holds neighbouring channels of one kernel tap.
        weights = self._weights(node, 1, w.transpose(0, 2, 3, 1).reshape(out_channels, -1), 1)
        result = np.empty((n, oh, ow, out_channels), np.float32)
        for g in range(groups):
            cols = windows[:, g * group_channels:(g + 1) * group_channels]
            cols = cols.transpose(0, 2, 3, 4, 5, 1).reshape(n * oh * ow, -1)
            wg = weights[g * per_group:(g + 1) * per_group]
            result[..., g * per_group:(g + 1) * per_group] = (
                self.format.quantize(cols, 1) @ wg.T).reshape(n, oh, ow, per_group)
        if b is not None:
            result = result + b.astype(np.float32)
        macs = n * oh * ow * out_channels * group_channels * kh * kw
        return self._vector(result.transpose(0, 3, 1, 2)), (macs, result.size)

    def _op_Gemm(self, node, a_in, b_in, c=None):
        a = node.attributes
        left = a_in.T if a.get("transA", 0) else a_in
        right_stored = self._weights(node, 1, b_in, 1 if a.get("transB", 0) else 0)
        right = right_stored.T if a.get("transB", 0) else right_stored
        result = a.get("alpha", 1.0) * (self.format.quantize(left, 1) @ right)
        if c is not None:
            result = result + a.get("beta", 1.0) * c.astype(np.float32)
        macs = left.shape[0] * left.shape[1] * right.shape[1]
        return self._vector(result), (macs, result.size)

    def _op_MatMul(self, node, left, right):
        product = self.format.quantize(left, -1) @ self._weights(node, 1, right, -2)
        macs = int(np.prod(product.shape)) * left.shape[-1]
        return self._vector(product), (macs, product.size)

    # -- vector operations (reduced precision) ---------------------------------------------

    def _elementwise(self, result):
        result = self._vector(result)
        return result, (0, result.size)

    def _op_Add(self, node, left, right):
        return self._elementwise(self._vector(left) + self._vector(right))

    def _op_Relu(self, node, x):
        return self._elementwise(np.maximum(self._vector(x), 0))

    def _op_LeakyRelu(self, node, x):
        v = self._vector(x)
        return self._elementwise(np.where(v >= 0, v, node.attributes.get("alpha", 0.01) * v))

    def _op_Clip(self, node, x, low=None, high=None):
        low = node.attributes.get("min", -np.inf) if low is None else low
        high = node.attributes.get("max", np.inf) if high is None else high
        return self._elementwise(np.clip(self._vector(x), low, high))

    def _op_Sigmoid(self, node, x):
        return self._elementwise(1 / (1 + np.exp(-self._vector(x))))

    def _op_Tanh(self, node, x):
        return self._elementwise(np.tanh(self._vector(x)))

    def _op_BatchNormalization(self, node, x, gamma, beta, mean, var):
        shape = (1, -1) + (1,) * (x.ndim - 2)
        factor = gamma / np.sqrt(var + node.attributes.get("epsilon", 1e-5))
        return self._elementwise(self._vector(x) * factor.reshape(shape)
                                 + (beta - mean * factor).reshape(shape))

    def _pool(self, node, x, pad_value):
        a = node.attributes
        if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET", b"VALID", "VALID") or \
                a.get("ceil_mode", 0):
            raise UnsupportedOperator(node.op_type, node.name,
                                      "only explicit pads and floor rounding are supported")
        kh, kw = a["kernel_shape"]
        sh, sw = a.get("strides", [1, 1])
        pt, pl, pb, pr = a.get("pads", [0, 0, 0, 0])
        padded = np.pad(self._vector(x), ((0, 0), (0, 0), (pt, pb), (pl, pr)),
                        constant_values=pad_value)
        return sliding_window_view(padded, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw], \
            (pt, pl, pb, pr)

    def _op_MaxPool(self, node, x):
        windows, _ = self._pool(node, x, -np.inf)
        return self._elementwise(windows.max(axis=(4, 5)))

    def _op_AveragePool(self, node, x):
        windows, pads = self._pool(node, x, 0.0)
        total = windows.sum(axis=(4, 5))
        if node.attributes.get("count_include_pad", 0) or not any(pads):
            counts = windows.shape[4] * windows.shape[5]
        else:
            ones = np.ones((1, 1) + x.shape[2:], np.float32)
            mask, _ = self._pool(node, ones, 0.0)
            counts = mask.sum(axis=(4, 5))
        return self._elementwise(total / counts)

    def _op_GlobalAveragePool(self, node, x):
        return self._elementwise(self._vector(x).mean(axis=(2, 3), keepdims=True))

    def _op_GlobalMaxPool(self, node, x):
        return self._elementwise(self._vector(x).max(axis=(2, 3), keepdims=True))

    def _op_Softmax(self, node, x):
        default_axis = -1 if self._opset >= 13 else 1
        axis = node.attributes.get("axis", default_axis)
        v = self._vector(x)
        if self._opset < 13:  # the old Softmax flattens from `axis` on
            flat = v.reshape(int(np.prod(v.shape[:axis])), -1)
            e = np.exp(flat - flat.max(axis=1, keepdims=True))
            return self._elementwise((e / e.sum(axis=1, keepdims=True)).reshape(v.shape))
        e = np.exp(v - v.max(axis=axis, keepdims=True))
        return self._elementwise(e / e.sum(axis=axis, keepdims=True))

    # -- layout (no arithmetic) ------------------------------------------------------------

    def _op_Concat(self, node, *parts):
        return np.concatenate(parts, axis=node.attributes["axis"]), (0, 0)

    def _op_Flatten(self, node, x):
        axis = node.attributes.get("axis", 1)
        return x.reshape(int(np.prod(x.shape[:axis])), -1), (0, 0)

    def _op_Reshape(self, node, x, shape):
        target = [x.shape[i] if d == 0 and not node.attributes.get("allowzero", 0) else int(d)
                  for i, d in enumerate(shape)]
        return x.reshape(target), (0, 0)

    def _op_Transpose(self, node, x):
        return x.transpose(node.attributes.get("perm", None)), (0, 0)

    def _op_Identity(self, node, x):
        return x, (0, 0)

    def _op_Cast(self, node, x):
        return x.astype(np.float32), (0, 0)

    def _op_Dropout(self, node, x, *_):
        return x, (0, 0)


__all__ = ["AcceleratedModel", "RunResult", "TensorSpec", "SUPPORTED_OPERATORS"]
