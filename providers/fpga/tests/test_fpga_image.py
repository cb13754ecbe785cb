"""``AccelContainerImage``: the converted models and the accelerator runtime in one image,
built with the core's OCI packaging, stored in the workspace, and run as an engine runs it."""

from __future__ import annotations

import io
import json
import socket
import tarfile
import time

import numpy as np
import onnx
import pytest
from aml_core.engines import ProcessEngine
from aml_core.images import Image
from aml_core.oci import parse_layout_location, read_layout
from aml_core.oci.image import LABEL_ENVIRONMENT
from aml_core.oci.testing import free_port
from aml_provider_fpga import (
    AccelContainerImage,
    AccelOnnxConverter,
    PredictionClient,
    PredictionError,
)
from aml_provider_fpga.image import ENTRYPOINT, LABEL_TARGET_KIND
from onnx import TensorProto, helper, numpy_helper

from aml_core import InvalidConfig, Model, Workspace


def small_classifier() -> onnx.ModelProto:
    rng = np.random.default_rng(7)
    weights = numpy_helper.from_array(rng.normal(size=(4, 3)).astype(np.float32), "w")
    nodes = [helper.make_node("MatMul", ["images", "w"], ["logits"], name="fc"),
             helper.make_node("Softmax", ["logits"], ["probabilities"], name="softmax")]
    graph = helper.make_graph(nodes, "small",
                              [helper.make_tensor_value_info("images", TensorProto.FLOAT, [None, 4])],
                              [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT,
                                                             [None, 3])], [weights])
    return helper.make_model(graph)


def converted_model(ws, tmp_path):
    path = tmp_path / "small.onnx"
    onnx.save(small_classifier(), str(path))
    source = Model.register(ws, path, "small")
    conversion = AccelOnnxConverter.convert_onnx_model(
        ws, source, "images", "probabilities", block_format="MSFP16",
        output_aliases={"output_alias": "probabilities"})
    conversion.wait_for_completion()
    return conversion.result


@pytest.fixture
def ws(tmp_path):
    return Workspace.create(tmp_path / "ws")


def layer_paths(image) -> set[str]:
    (layer,) = image.layers
    with tarfile.open(fileobj=io.BytesIO(layer.read()), mode="r:gz") as tar:
        return set(tar.getnames())


def test_image_create_packages_the_models_and_the_runtime(ws, tmp_path):
    converted = converted_model(ws, tmp_path)
    config = AccelContainerImage.image_configuration(tags={"team": "vision"})
    image = Image.create(ws, "small-accel", [converted], config)
    image.wait_for_creation()
    assert image.id == "small-accel:1" and image.creation_state == "Succeeded"
    assert image.tags == {"team": "vision"}
    assert image.record.details["target_kind"] == "fpga"
    built = stored(image)
    assert built.digest == image.digest
    paths = layer_paths(built)
    model_dir = "var/azureml-app/azureml-models/small.accel/1/converted"
    assert {f"{model_dir}/model.onnx", f"{model_dir}/accelerator.json",
            "opt/aml/lib/aml_provider_fpga/accelerator/server.py",
            "opt/aml/lib/aml_core/__init__.py"} <= paths
    assert not any(p.startswith("opt/aml/lib/aml_emulator") for p in paths)
    labels = built.labels()
    assert labels[LABEL_TARGET_KIND] == "fpga"
    requirements = json.loads(labels[LABEL_ENVIRONMENT])["requirements"]
    assert any(r.startswith("ml-dtypes") for r in requirements)
    assert built.config_json()["config"]["Entrypoint"] == list(ENTRYPOINT)
    # the documents' spelling gives the same image content
    again = AccelContainerImage.create(ws, "small-accel", [converted], config)
    assert again.version == 2 and again.digest == image.digest


def test_a_model_that_was_not_converted_is_refused_with_the_fix(ws, tmp_path):
    path = tmp_path / "raw.onnx"
    onnx.save(small_classifier(), str(path))
    raw = Model.register(ws, path, "raw")
    with pytest.raises(InvalidConfig, match="convert_onnx_model"):
        Image.create(ws, "raw-accel", [raw], AccelContainerImage.image_configuration())


def test_the_image_serves_its_model_with_the_accelerators_numerics(ws, tmp_path):
    """Run the image as the emulator's kubelet does (the process engine unpacks it and remaps
    its paths) and score it with PredictionClient."""
    from aml_provider_fpga.accelerator import AcceleratedModel

    converted = converted_model(ws, tmp_path)
    image = Image.create(ws, "small-accel", [converted], AccelContainerImage.image_configuration())
    built = stored(image)
    port = free_port()
    container = ProcessEngine(cache_dir=tmp_path / "cache").run(
        built, name="accel", port=port, env={"AML_SCORING_KEYS": "s3cret"})
    try:
        deadline = time.monotonic() + 60
        while not _accepts(port):
            if container.wait(0) is not None:
                pytest.fail(f"the runtime exited: {container.logs()}")
            assert time.monotonic() < deadline, f"the runtime never listened: {container.logs()}"
            time.sleep(0.2)
        client = PredictionClient("127.0.0.1", port, access_token="s3cret", service_name="small")
        batch = np.random.default_rng(1).normal(size=(2, 4)).astype(np.float32)
        scores = client.score_numpy_array(batch)
        local = AcceleratedModel.load(tmp_path / "small.onnx", "MSFP16")
        expected = local.run({"images": batch}).outputs["probabilities"]
        np.testing.assert_array_equal(np.asarray(scores), expected)
        wrong_key = PredictionClient("127.0.0.1", port, access_token="nope", service_name="small")
        with pytest.raises(PredictionError, match="UNAUTHENTICATED"):
            wrong_key.score_numpy_array(batch)
    finally:
        container.stop()


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def stored(image):
    """The image as the workspace's embedded OCI layout holds it."""
    directory, tag = parse_layout_location(image.image_location)
    return read_layout(directory, tag=tag)
