"""The accelerator over gRPC: the real tritonclient (KServe v2) and TF-Serving Predict."""

from __future__ import annotations

import io

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from fpga_testing import small_cnn
from PIL import Image
from tritonclient.utils import InferenceServerException

from aml_provider_fpga.accelerator import AcceleratedModel
from aml_provider_fpga.accelerator.protos import tfserving_predict
from aml_provider_fpga.accelerator.server import AcceleratorServer, ImagePreprocessing, ServedModel

KEY = "s3cret-key"


@pytest.fixture(scope="module")
def model():
    return AcceleratedModel(small_cnn(np.random.default_rng(7)), "MSFP16")


@pytest.fixture(scope="module")
def server(model):
    served = ServedModel(name="digits", model=model, output_aliases={"output_alias":
                                                                     "probabilities"},
                         preprocessing=ImagePreprocessing(height=8, width=8, mode="L",
                                                          scale=1 / 255))
    with AcceleratorServer(keys=[KEY]) as running:
        running.add_model(served)
        yield running


@pytest.fixture
def client(server):
    with triton.InferenceServerClient(server.address) as tc:
        yield tc


AUTH = {"authorization": f"Bearer {KEY}"}


def test_tritonclient_sees_a_live_ready_server_and_model(client):
    assert client.is_server_live(headers=AUTH)
    assert client.is_server_ready(headers=AUTH)
    assert client.is_model_ready("digits", headers=AUTH)
    assert not client.is_model_ready("nothing", headers=AUTH)
    metadata = client.get_model_metadata("digits", headers=AUTH, as_json=True)
    assert metadata["inputs"] == [{"name": "x", "datatype": "FP32", "shape": ["-1", "1", "8",
                                                                            "8"]}]
    assert metadata["platform"] == "fpga_emulator_msfp16"


def test_tritonclient_infers_the_same_as_in_process(client, model):
    images = np.random.default_rng(2).normal(size=(3, 1, 8, 8)).astype(np.float32)
    request = triton.InferInput("x", list(images.shape), "FP32")
    request.set_data_from_numpy(images)
    result = client.infer("digits", [request], request_id="req-1", headers=AUTH)
    np.testing.assert_array_equal(result.as_numpy("probabilities"),
                                  model.run({"x": images}).outputs["probabilities"])
    response = result.get_response()
    assert response.id == "req-1"
    assert response.parameters["block_format"].string_param == "MSFP16"
    assert response.parameters["modelled_device_latency_ns"].int64_param > 0


def test_tritonclient_wrong_shape_is_invalid_argument_naming_the_shape(client):
    request = triton.InferInput("x", [1, 1, 9, 8], "FP32")
    request.set_data_from_numpy(np.zeros((1, 1, 9, 8), np.float32))
    with pytest.raises(InferenceServerException) as caught:
        client.infer("digits", [request], headers=AUTH)
    assert caught.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "shape [-1, 1, 8, 8]" in caught.value.message()


def test_tritonclient_wrong_dtype_is_invalid_argument(client):
    request = triton.InferInput("x", [1, 1, 8, 8], "INT32")
    request.set_data_from_numpy(np.zeros((1, 1, 8, 8), np.int32))
    with pytest.raises(InferenceServerException, match="expected FP32 shape"):
        client.infer("digits", [request], headers=AUTH)


def test_a_call_without_the_key_is_unauthenticated(client):
    with pytest.raises(InferenceServerException) as caught:
        client.is_server_live(headers={"authorization": "Bearer wrong"})
    assert caught.value.status() == "StatusCode.UNAUTHENTICATED"
    with pytest.raises(InferenceServerException, match="authorization: Bearer"):
        client.is_server_live()


def predict(server, request, key=KEY):
    messages = tfserving_predict()
    with grpc.insecure_channel(server.address) as channel:
        call = channel.unary_unary("/tensorflow.serving.PredictionService/Predict",
                                   request_serializer=messages.PredictRequest.SerializeToString,
                                   response_deserializer=messages.PredictResponse.FromString)
        response, state = call.with_call(request, metadata=[("authorization", f"Bearer {key}")])
        return response, dict(state.trailing_metadata())


def png_of(digit: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(digit.astype(np.uint8), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def test_predict_with_an_empty_model_spec_decodes_the_image(server, model):
    messages = tfserving_predict()
    pixels = np.random.default_rng(4).integers(0, 256, (8, 8))
    request = messages.PredictRequest()
    request.inputs["images"].dtype = messages.DataType["DT_STRING"]
    request.inputs["images"].string_val.append(png_of(pixels))
    response, trailing = predict(server, request)
    out = response.outputs["output_alias"]
    got = np.frombuffer(out.tensor_content, "<f4").reshape([d.size for d in
                                                             out.tensor_shape.dim])
    expected = model.run({"x": (pixels / 255).astype(np.float32)[None, None]})
    np.testing.assert_array_equal(got, expected.outputs["probabilities"])
    assert int(trailing["modelled-device-latency-ns"]) > 0


def test_predict_a_float_tensor_of_the_wrong_shape_names_the_expected_shape(server):
    messages = tfserving_predict()
    request = messages.PredictRequest()
    tensor = request.inputs["images"]
    tensor.dtype = messages.DataType["DT_FLOAT"]
    tensor.tensor_shape.dim.extend([messages.TensorShapeProto_Dim(size=s) for s in (1, 3, 8)])
    tensor.tensor_content = np.zeros((1, 3, 8), "<f4").tobytes()
    with pytest.raises(grpc.RpcError) as caught:
        predict(server, request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "shape [-1, 1, 8, 8]" in caught.value.details()


def test_predict_an_image_that_does_not_decode_is_invalid_argument(server):
    messages = tfserving_predict()
    request = messages.PredictRequest()
    request.inputs["images"].dtype = messages.DataType["DT_STRING"]
    request.inputs["images"].string_val.append(b"GIF89a but not really")
    with pytest.raises(grpc.RpcError) as caught:
        predict(server, request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "does not decode" in caught.value.details()


def test_predict_with_a_wrong_key_is_unauthenticated(server):
    messages = tfserving_predict()
    with pytest.raises(grpc.RpcError) as caught:
        predict(server, messages.PredictRequest(), key="guess")
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


def model_infer(server, request):
    from aml_provider_fpga.accelerator.protos import open_inference_v2

    messages = open_inference_v2()
    with grpc.insecure_channel(server.address) as channel:
        call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer",
                                   request_serializer=messages.ModelInferRequest.SerializeToString,
                                   response_deserializer=messages.ModelInferResponse.FromString)
        return call(request, metadata=[("authorization", f"Bearer {KEY}")])


def test_typed_fp32_contents_are_accepted_and_outputs_come_back_raw(server, model):
    from aml_provider_fpga.accelerator.protos import open_inference_v2

    messages = open_inference_v2()
    image = np.linspace(-1, 1, 64, dtype=np.float32).reshape(1, 1, 8, 8)
    request = messages.ModelInferRequest(model_name="digits", id="typed")
    tensor = request.inputs.add(name="x", datatype="FP32", shape=[1, 1, 8, 8])
    tensor.contents.fp32_contents.extend(image.ravel().tolist())
    response = model_infer(server, request)
    assert [o.name for o in response.outputs] == ["probabilities"]
    got = np.frombuffer(response.raw_output_contents[0], "<f4").reshape(1, 10)
    np.testing.assert_array_equal(got, model.run({"x": image}).outputs["probabilities"])


def test_an_unknown_requested_output_or_model_is_refused(server):
    from aml_provider_fpga.accelerator.protos import open_inference_v2

    messages = open_inference_v2()
    request = messages.ModelInferRequest(model_name="digits")
    request.inputs.add(name="x", datatype="FP32", shape=[1, 1, 8, 8])
    request.raw_input_contents.append(np.zeros(64, "<f4").tobytes())
    request.outputs.add(name="logits")
    with pytest.raises(grpc.RpcError) as caught:
        model_infer(server, request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "unknown outputs ['logits']" in caught.value.details()
    request.model_name = "resnet"
    with pytest.raises(grpc.RpcError) as caught:
        model_infer(server, request)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert "served models: ['digits']" in caught.value.details()


def test_a_folder_that_is_not_a_converted_model_is_refused(tmp_path):
    from aml_provider_fpga.accelerator import InvalidModel
    from aml_provider_fpga.accelerator.server import load_package

    with pytest.raises(InvalidModel, match="accelerator.json cannot be read.*convert the model"):
        load_package(tmp_path)
