"""PredictionClient against the emulated accelerator's gRPC server, and its retry rules."""

from __future__ import annotations

import io
import threading
from concurrent import futures
from pathlib import Path

import grpc
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from aml_provider_fpga.accelerator import AcceleratedModel
from aml_provider_fpga.accelerator.server import AcceleratorServer, ImagePreprocessing, ServedModel
from aml_provider_fpga import PredictionClient, PredictionError

KEY = "primary-key-123"


def two_by_two_graph():
    """x [N, 1, 2, 2] -> flatten -> Gemm to 3 -> Softmax."""
    weights = numpy_helper.from_array(
        np.arange(12, dtype=np.float32).reshape(4, 3) / 10, "w")
    nodes = [helper.make_node("Flatten", ["x"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "w"], ["logits"], name="fc"),
             helper.make_node("Softmax", ["logits"], ["probs"], name="softmax", axis=1)]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 1, 2, 2])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [None, 3])], [weights])
    return helper.make_model(graph)


def two_by_two_model() -> AcceleratedModel:
    return AcceleratedModel(two_by_two_graph(), "MSFP16")


@pytest.fixture(scope="module")
def model():
    return two_by_two_model()


@pytest.fixture(scope="module")
def server(model):
    served = ServedModel(name="svc", model=model, output_aliases={"output_alias": "probs"},
                         preprocessing=ImagePreprocessing(height=2, width=2, mode="L",
                                                          scale=1 / 255))
    with AcceleratorServer(keys=[KEY]) as running:
        running.add_model(served)
        yield running


@pytest.fixture
def client(server):
    with PredictionClient("127.0.0.1", server.port, access_token=KEY,
                          service_name="svc") as c:
        yield c


def test_score_numpy_array_matches_the_accelerator(client, model):
    batch = np.random.default_rng(0).normal(size=(5, 1, 2, 2)).astype(np.float32)
    got = client.score_numpy_array(batch)
    np.testing.assert_array_equal(got, model.run({"x": batch}).outputs["probs"])


def png(pixels) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(pixels, np.uint8), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def test_score_file_and_score_image_decode_on_the_service(client, model, tmp_path: Path):
    pixels = [[0, 255], [128, 64]]
    path = tmp_path / "digit.png"
    path.write_bytes(png(pixels))
    expected = model.run({"x": (np.asarray(pixels, np.float32) / 255)[None, None]})
    np.testing.assert_array_equal(client.score_file(path), expected.outputs["probs"])
    np.testing.assert_array_equal(client.score_image(Image.open(path)), expected.outputs["probs"])
    np.testing.assert_array_equal(client.score_image(png(pixels), output_alias="output_alias"),
                                  expected.outputs["probs"])


def test_a_wrong_shape_is_invalid_argument_not_retried_naming_the_shape(server):
    sleeps: list[float] = []
    client = PredictionClient("127.0.0.1", server.port, access_token=KEY, sleep=sleeps.append)
    with pytest.raises(PredictionError) as caught:
        client.score_numpy_array(np.zeros((1, 3, 2, 2), np.float32))
    assert caught.value.status == grpc.StatusCode.INVALID_ARGUMENT
    assert "shape [-1, 1, 2, 2]" in str(caught.value)
    assert len(caught.value.request_ids) == 1 and sleeps == []


def test_an_image_that_does_not_decode_is_invalid_argument(client, tmp_path):
    path = tmp_path / "not-an-image.jpg"
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(PredictionError, match="does not decode"):
        client.score_file(path)


def test_a_wrong_token_is_refused_at_once(server):
    client = PredictionClient("127.0.0.1", server.port, access_token="nope")
    with pytest.raises(PredictionError) as caught:
        client.score_numpy_array(np.zeros((1, 1, 2, 2), np.float32))
    assert caught.value.status == grpc.StatusCode.UNAUTHENTICATED
    assert "nope" not in str(caught.value) and "nope" not in repr(client)


class FlakyPredict:
    """A Predict service that fails with UNAVAILABLE ``failures`` times, then echoes a tensor."""

    def __init__(self, failures: int) -> None:
        from aml_provider_fpga.accelerator.protos import tfserving_predict

        self.failures = failures
        self.request_ids: list[str] = []
        self.messages = tfserving_predict()
        self.lock = threading.Lock()

    def predict(self, request, context):
        with self.lock:
            self.request_ids.append(dict(context.invocation_metadata())["x-ms-client-request-id"])
            failing = len(self.request_ids) <= self.failures
        if failing:
            context.abort(grpc.StatusCode.UNAVAILABLE, "replica restarting")
        response = self.messages.PredictResponse()
        response.outputs["out"].CopyFrom(request.inputs["images"])
        return response


@pytest.fixture
def flaky():
    def start(failures):
        service = FlakyPredict(failures)
        handler = grpc.method_handlers_generic_handler("tensorflow.serving.PredictionService", {
            "Predict": grpc.unary_unary_rpc_method_handler(
                service.predict,
                request_deserializer=service.messages.PredictRequest.FromString,
                response_serializer=service.messages.PredictResponse.SerializeToString)})
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        server.add_generic_rpc_handlers([handler])
        service.port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        return service

    servers: list[grpc.Server] = []
    yield start
    for server in servers:
        server.stop(None)


def test_unavailable_is_retried_with_exponential_backoff(flaky):
    service = flaky(failures=2)
    sleeps: list[float] = []
    client = PredictionClient("127.0.0.1", service.port, backoff_seconds=0.5, sleep=sleeps.append)
    got = client.score_numpy_array(np.array([[1.5, 2.5]], np.float32))
    np.testing.assert_array_equal(got, [[1.5, 2.5]])
    assert sleeps == [0.5, 1.0]
    assert len(set(service.request_ids)) == 3


def test_five_failures_raise_listing_every_request_id(flaky):
    service = flaky(failures=99)
    sleeps: list[float] = []
    client = PredictionClient("127.0.0.1", service.port, sleep=sleeps.append)
    with pytest.raises(PredictionError) as caught:
        client.score_numpy_array(np.zeros((1, 2), np.float32))
    assert caught.value.status == grpc.StatusCode.UNAVAILABLE
    assert caught.value.request_ids == service.request_ids and len(service.request_ids) == 5
    for request_id in service.request_ids:
        assert request_id in str(caught.value)
    assert sleeps == [0.1, 0.2, 0.4, 0.8]


def test_defaults_follow_the_documents():
    assert PredictionClient("svc.example").port == 80
    assert PredictionClient("svc.example", use_ssl=True).port == 443


def test_the_accelerator_runtime_over_tls_with_a_key_file(tmp_path, model):
    """``python -m aml_provider_fpga.accelerator`` as a node runs it: keys from a file, TLS from PEM files."""
    import json
    import os
    import subprocess
    import sys

    import onnx

    from aml_emulator.cluster.tls import generate

    package = tmp_path / "converted"
    package.mkdir()
    onnx.save(two_by_two_graph(), str(package / "model.onnx"))
    (package / "accelerator.json").write_text(json.dumps(
        {"format": "MSFP16", "output_aliases": {"output_alias": "probs"}}))
    ca, cert, key = generate(tmp_path / "tls")
    keys = tmp_path / "keys"
    keys.write_text(f"{KEY}\nsecondary-key\n")
    keys.chmod(0o600)
    env = {**os.environ, "AML_SCORING_KEYS_FILE": str(keys), "AML_TLS_CERT_FILE": str(cert),
           "AML_TLS_KEY_FILE": str(key)}
    process = subprocess.Popen([sys.executable, "-m", "aml_provider_fpga.accelerator", str(package),
                                "--host", "127.0.0.1", "--port", "0"],
                               stdout=subprocess.PIPE, text=True, env=env)
    try:
        port = int(process.stdout.readline().rsplit(":", 1)[1])
        batch = np.ones((2, 1, 2, 2), np.float32)
        with PredictionClient("127.0.0.1", port, use_ssl=True, access_token="secondary-key",
                              root_certificates=ca.read_bytes()) as client:
            np.testing.assert_array_equal(client.score_numpy_array(batch),
                                          model.run({"x": batch}).outputs["probs"])
        with PredictionClient("127.0.0.1", port, use_ssl=True, access_token="wrong",
                              root_certificates=ca.read_bytes()) as client, \
                pytest.raises(PredictionError, match="UNAUTHENTICATED"):
            client.score_numpy_array(batch)
    finally:
        process.terminate()
        process.wait(timeout=30)
