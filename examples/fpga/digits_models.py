"""A featurizer + classifier head over scikit-learn's digits, built with no download.

* The featurizer is a small CNN written with ``onnx.helper``: two 3x3 convolutions whose
  filters are k-means centroids of image patches (learned from the training images with
  scikit-learn, no gradient descent needed), ReLU, max pooling, and a batch normalisation
  with the training set's statistics (which the accelerator folds into the second conv).
* The classifier head is a scikit-learn ``MLPClassifier`` fitted on the features and exported
  with skl2onnx; only its probability branch (MatMul, Add, Relu, Softmax) is kept: the label
  (an ArgMax) is taken on the host, as the documents' samples do.
* ``onnx.compose`` joins the two into one graph, input ``images`` [N, 1, 8, 8] (pixels 0..16),
  output ``probabilities`` [N, 10].
"""

from __future__ import annotations

import attrs
import numpy as np
import onnx
from numpy.lib.stride_tricks import sliding_window_view
from onnx import TensorProto, compose, helper, numpy_helper

FEATURES = "features"
OUTPUT = "probabilities"
INPUT = "images"


@attrs.frozen
class DigitsData:
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


def load_digits_split(seed: int = 0) -> DigitsData:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = digits.images.astype(np.float32)[:, None]  # [N, 1, 8, 8], pixels 0..16
    train_x, test_x, train_y, test_y = train_test_split(
        images, digits.target, test_size=0.25, random_state=seed, stratify=digits.target)
    return DigitsData(train_x, train_y, test_x, test_y)


def _patch_filters(activations: np.ndarray, count: int, seed: int) -> np.ndarray:
    """k-means centroids of zero-mean 3x3 patches: [count, channels, 3, 3] conv filters."""
    from sklearn.cluster import MiniBatchKMeans

    padded = np.pad(activations, ((0, 0), (0, 0), (1, 1), (1, 1)))
    patches = sliding_window_view(padded, (3, 3), axis=(2, 3))  # N, C, H, W, 3, 3
    patches = patches.transpose(0, 2, 3, 1, 4, 5).reshape(-1, activations.shape[1] * 9)
    rng = np.random.default_rng(seed)
    patches = patches[rng.choice(len(patches), size=min(20000, len(patches)), replace=False)]
    patches = patches - patches.mean(axis=1, keepdims=True)
    patches = patches[np.linalg.norm(patches, axis=1) > 1e-3]
    kmeans = MiniBatchKMeans(n_clusters=count, random_state=seed, n_init=3).fit(patches)
    centroids = kmeans.cluster_centers_
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True) + 1e-6
    return centroids.reshape(count, activations.shape[1], 3, 3).astype(np.float32)


def _featurizer_graph(w1, w2, bn_mean, bn_var) -> onnx.ModelProto:
    c2 = w2.shape[0]
    inits = [numpy_helper.from_array(a, n) for a, n in (
        (np.float32([1 / 16]), "pixel_scale"), (w1, "conv1_w"), (w2, "conv2_w"),
        (np.ones(c2, np.float32), "bn_gamma"), (np.zeros(c2, np.float32), "bn_beta"),
        (bn_mean, "bn_mean"), (bn_var, "bn_var"))]
    # Pixels 0..16 become 0..1 through a 1x1 convolution, which the accelerator runs.
    inits.append(numpy_helper.from_array(np.full((1, 1, 1, 1), 1 / 16, np.float32), "scale_w"))
    nodes = [
        helper.make_node("Conv", [INPUT, "scale_w"], ["scaled"], name="scale_pixels"),
        helper.make_node("Conv", ["scaled", "conv1_w"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2],
                         strides=[2, 2]),
        helper.make_node("Conv", ["p1", "conv2_w"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c2", "bn_gamma", "bn_beta", "bn_mean",
                                                "bn_var"], ["bn2"], name="bn2"),
        helper.make_node("Relu", ["bn2"], ["r2"], name="relu2"),
        helper.make_node("MaxPool", ["r2"], ["p2"], name="pool2", kernel_shape=[2, 2],
                         strides=[2, 2]),
        helper.make_node("Flatten", ["p2"], [FEATURES], name="flatten"),
    ]
    graph = helper.make_graph(
        nodes, "digits_featurizer",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, [None, 1, 8, 8])],
        [helper.make_tensor_value_info(FEATURES, TensorProto.FLOAT, [None, c2 * 4])],
        [i for i in inits if i.name != "pixel_scale"])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def _keep_outputs(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """A copy answering only ``names``, without the nodes they do not need."""
    pruned = onnx.ModelProto()
    pruned.CopyFrom(model)
    needed, kept = set(names), []
    for node in reversed(pruned.graph.node):
        if needed & set(node.output):
            kept.append(node)
            needed |= set(node.input)
    del pruned.graph.node[:]
    pruned.graph.node.extend(reversed(kept))
    declared = {output.name: output for output in model.graph.output}
    del pruned.graph.output[:]
    pruned.graph.output.extend(
        declared.get(name) or helper.make_tensor_value_info(name, TensorProto.FLOAT, None)
        for name in names)
    return pruned


def _run(model: onnx.ModelProto, images: np.ndarray) -> np.ndarray:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # pruned prefixes leave unused weights: not worth a warning
    session = onnxruntime.InferenceSession(model.SerializeToString(), options,
                                           providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: images})[0]


def build_featurizer(data: DigitsData, seed: int = 0) -> onnx.ModelProto:
    scaled = data.train_images / 16
    w1 = _patch_filters(scaled, 16, seed)
    conv1 = _featurizer_graph(w1, np.zeros((1, 16, 3, 3), np.float32),
                              np.zeros(1, np.float32), np.ones(1, np.float32))
    # Activations after pool1, to learn conv2's filters from (a prefix of the same graph).
    pooled = _run(_keep_outputs(conv1, ["p1"]), data.train_images)
    w2 = _patch_filters(pooled, 32, seed + 1)
    conv2_out = _run(_keep_outputs(_featurizer_graph(
        w1, w2, np.zeros(32, np.float32), np.ones(32, np.float32)), ["c2"]), data.train_images)
    mean = conv2_out.mean(axis=(0, 2, 3)).astype(np.float32)
    var = conv2_out.var(axis=(0, 2, 3)).astype(np.float32) + 1e-3
    return _featurizer_graph(w1, w2, mean, var)


def build_classifier_head(features: np.ndarray, labels: np.ndarray,
                          seed: int = 0) -> onnx.ModelProto:
    """An MLP fitted by scikit-learn, exported by skl2onnx, probability branch only."""
    from skl2onnx import to_onnx
    from sklearn.neural_network import MLPClassifier

    mlp = MLPClassifier(hidden_layer_sizes=(64,), solver="lbfgs", alpha=1e-3, max_iter=400,
                        random_state=seed)
    mlp.fit(features, labels)
    exported = to_onnx(mlp, features[:1].astype(np.float32), options={"zipmap": False},
                       target_opset=13)
    return _keep_outputs(exported, [OUTPUT])


def build_digits_model(seed: int = 0) -> tuple[onnx.ModelProto, DigitsData]:
    """The composed featurizer + head and the split it was trained on."""
    data = load_digits_split(seed)
    featurizer = build_featurizer(data, seed)
    features = _run(featurizer, data.train_images)
    head = build_classifier_head(features, data.train_labels, seed)
    head = compose.add_prefix(head, "head_")
    head_input, head_output = head.graph.input[0].name, head.graph.output[0].name
    featurizer = onnx.version_converter.convert_version(featurizer, head.opset_import[0].version) \
        if featurizer.opset_import[0].version != head.opset_import[0].version else featurizer
    head.ir_version = featurizer.ir_version
    composed = compose.merge_models(featurizer, head, io_map=[(FEATURES, head_input)])
    composed.graph.output[0].name = head_output
    return _rename_output(composed, head_output, OUTPUT), data


def _rename_output(model: onnx.ModelProto, old: str, new: str) -> onnx.ModelProto:
    for node in model.graph.node:
        node.output[:] = [new if o == old else o for o in node.output]
    for output in model.graph.output:
        if output.name == old:
            output.name = new
    return model
