"""Models the accelerator tests build: no download, weights from a seeded generator."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def small_cnn(rng: np.random.Generator) -> onnx.ModelProto:
    """Conv+BN+Relu, MaxPool, a residual Add, Concat, GlobalAveragePool, Flatten, Gemm, Softmax."""
    def init(name, *shape, scale=0.3):
        return numpy_helper.from_array((rng.normal(size=shape) * scale).astype(np.float32), name)

    inits = [
        init("w1", 8, 1, 3, 3), init("b1", 8),
        init("gamma", 8, scale=1.0), init("beta", 8), init("mean", 8),
        numpy_helper.from_array(rng.uniform(0.5, 2, 8).astype(np.float32), "var"),
        init("w2", 8, 8, 3, 3), init("b2", 8), init("w3", 4, 16, 1, 1),
        init("fc_w", 4, 10), init("fc_b", 10),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "gamma", "beta", "mean", "var"], ["bn1"],
                         name="bn1"),
        helper.make_node("Relu", ["bn1"], ["r1"], name="relu1"),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2],
                         strides=[2, 2]),
        helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c2", "p1"], ["res"], name="residual"),
        helper.make_node("Relu", ["res"], ["r2"], name="relu2"),
        helper.make_node("Concat", ["r2", "p1"], ["cat"], name="concat", axis=1),
        helper.make_node("Conv", ["cat", "w3"], ["c3"], name="conv3"),
        helper.make_node("AveragePool", ["c3"], ["ap"], name="avgpool", kernel_shape=[2, 2],
                         strides=[1, 1], pads=[0, 0, 1, 1]),
        helper.make_node("GlobalAveragePool", ["ap"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], name="fc"),
        helper.make_node("Softmax", ["logits"], ["probabilities"], name="softmax", axis=1),
    ]
    graph = helper.make_graph(
        nodes, "small_cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1, 8, 8])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 10])],
        inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
