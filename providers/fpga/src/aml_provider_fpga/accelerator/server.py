"""The accelerator's gRPC front: KServe Open Inference Protocol v2 and TF-Serving ``Predict``.

One server hosts any number of loaded models. Both protocols run the same
:class:`~aml_provider_fpga.accelerator.graph.AcceleratedModel`:

* ``inference.GRPCInferenceService`` (ServerLive, ServerReady, ModelReady, ServerMetadata,
  ModelMetadata, ModelInfer): what ``tritonclient.grpc`` and other v2 clients call. Tensors
  travel as ``raw_input_contents``/``raw_output_contents`` (or typed ``contents`` on input);
  each response carries the modelled device latency as the parameter
  ``modelled_device_latency_ns`` and the block format as ``block_format``.
* ``tensorflow.serving.PredictionService/Predict``: what Brainwave's ``PredictionClient``
  calls. The model spec may be empty (the client never sets it) when one model is served; the
  input is ``images`` (a ``DT_STRING`` tensor of encoded images, decoded and preprocessed here,
  or a ``DT_FLOAT`` tensor fed as is); outputs are answered under their aliases. The modelled
  latency travels in the trailing metadata ``modelled-device-latency-ns``.

Keys: when the server has keys, every call must carry the metadata ``authorization: Bearer
<key>`` (checked in constant time against every key) or it is refused with UNAUTHENTICATED.
The key check is done here, in the gRPC server, because the cluster's front door speaks only
HTTP/1.1.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Sequence
from concurrent import futures

import attrs
import grpc
import numpy as np

from aml_core.runtime.security import KeyCheck

from .exceptions import AcceleratorError, InvalidInput
from .graph import AcceleratedModel, RunResult
from .protos import open_inference_v2, tfserving_predict

KSERVE_SERVICE = "inference.GRPCInferenceService"
TFSERVING_SERVICE = "tensorflow.serving.PredictionService"
SERVER_NAME = "aml-fpga-emulator"
SERVER_VERSION = "1"
#: Messages as large as the protocol allows (tritonclient uses INT32_MAX both ways).
MAX_MESSAGE_BYTES = 2**31 - 1

_V2_DATATYPES = {"FP32": np.float32, "FP64": np.float64, "FP16": np.float16,
                 "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
                 "UINT8": np.uint8, "BOOL": np.bool_}


@attrs.frozen
class ImagePreprocessing:
    """How an encoded image becomes the model's input tensor (the converted model says).

    The image is decoded, converted to ``mode`` (``"RGB"`` or ``"L"``), resized to
    ``height`` x ``width`` (bilinear), then ``value * scale + offset`` per channel, in
    ``layout`` ``"NHWC"`` or ``"NCHW"``, as one image (batch 1).
    """

    height: int
    width: int
    mode: str = attrs.field(default="RGB", validator=attrs.validators.in_(("RGB", "L", "BGR")))
    layout: str = attrs.field(default="NCHW", validator=attrs.validators.in_(("NCHW", "NHWC")))
    scale: float = 1.0
    offset: tuple[float, ...] = (0.0,)

    def to_tensor(self, encoded: bytes) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(io.BytesIO(encoded)) as image:
                image = image.convert("L" if self.mode == "L" else "RGB")
                image = image.resize((self.width, self.height), Image.Resampling.BILINEAR)
                pixels = np.asarray(image, dtype=np.float32)
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise InvalidInput(f"the image does not decode ({exc}); send a JPEG, PNG or BMP "
                               "file's bytes") from None
        if pixels.ndim == 2:
            pixels = pixels[:, :, None]
        if self.mode == "BGR":
            pixels = pixels[:, :, ::-1]
        pixels = pixels * self.scale + np.asarray(self.offset, np.float32)
        if self.layout == "NCHW":
            pixels = pixels.transpose(2, 0, 1)
        return np.ascontiguousarray(pixels[None], dtype=np.float32)


@attrs.define
class ServedModel:
    """A model the server hosts, with the names its clients use."""

    name: str
    model: AcceleratedModel
    version: str = "1"
    #: alias a TF-Serving client asks for -> the graph's output name
    output_aliases: dict[str, str] = attrs.field(factory=dict)
    #: the TF-Serving input name that carries images (or raw tensors) for the first input
    input_alias: str = "images"
    preprocessing: ImagePreprocessing | None = None

    def aliases(self) -> dict[str, str]:
        return self.output_aliases or {spec.name: spec.name for spec in self.model.outputs}


class _KeyInterceptor(grpc.ServerInterceptor):
    """Refuses every call without ``authorization: Bearer <key>`` when keys are set."""

    def __init__(self, check: KeyCheck) -> None:
        self._check = check

        def refuse(request, context):
            context.abort(grpc.StatusCode.UNAUTHENTICATED,
                          "missing or wrong key: send the metadata 'authorization: Bearer "
                          "<service key>' (PredictionClient's access_token)")

        self._refusal = grpc.unary_unary_rpc_method_handler(refuse)

    def intercept_service(self, continuation, handler_call_details):
        metadata = dict(handler_call_details.invocation_metadata or ())
        authorization = metadata.get("authorization")
        if isinstance(authorization, str):
            authorization = authorization.encode("utf-8")
        if self._check.accepts(authorization):
            return continuation(handler_call_details)
        return self._refusal


class AcceleratorServer:
    """A gRPC server for accelerated models; ``with AcceleratorServer(...) as server:``."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, keys: Sequence[str] = (),
                 credentials: grpc.ServerCredentials | None = None, max_workers: int = 4) -> None:
        self._models: dict[str, ServedModel] = {}
        self._lock = threading.Lock()
        check = KeyCheck(keys)
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="fpga-grpc"),
            interceptors=[_KeyInterceptor(check)] if check else [],
            options=[("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                     ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)])
        self._v2 = open_inference_v2()
        self._tf = tfserving_predict()
        self._server.add_generic_rpc_handlers([self._kserve_handlers(),
                                               self._tfserving_handlers()])
        address = f"{host}:{port}"
        self.port = (self._server.add_secure_port(address, credentials) if credentials
                     else self._server.add_insecure_port(address))
        if not self.port:
            raise OSError(f"cannot listen on {address}")
        self.host = host

    # -- lifecycle -------------------------------------------------------------------------

    def add_model(self, served: ServedModel) -> None:
        with self._lock:
            self._models[served.name] = served

    def start(self) -> AcceleratorServer:
        self._server.start()
        return self

    def stop(self, grace: float | None = None) -> None:
        self._server.stop(grace).wait()

    def wait(self) -> None:
        self._server.wait_for_termination()

    def __enter__(self) -> AcceleratorServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def _find(self, name: str, context) -> ServedModel:
        with self._lock:
            if not name and len(self._models) == 1:
                return next(iter(self._models.values()))
            served = self._models.get(name)
            known = sorted(self._models)
        if served is None:
            context.abort(grpc.StatusCode.NOT_FOUND,
                          f"no model {name!r} is served here; served models: {known}")
        return served

    @staticmethod
    def _run(served: ServedModel, inputs: dict[str, np.ndarray], context) -> RunResult:
        try:
            return served.model.run(inputs)
        except AcceleratorError as exc:
            context.abort(exc.status, str(exc))

    # -- KServe v2 -------------------------------------------------------------------------

    def _kserve_handlers(self):
        v2 = self._v2

        def unary(function, request_type, response_type):
            return grpc.unary_unary_rpc_method_handler(
                function, request_deserializer=request_type.FromString,
                response_serializer=response_type.SerializeToString)

        return grpc.method_handlers_generic_handler(KSERVE_SERVICE, {
            "ServerLive": unary(lambda r, c: v2.ServerLiveResponse(live=True),
                                v2.ServerLiveRequest, v2.ServerLiveResponse),
            "ServerReady": unary(lambda r, c: v2.ServerReadyResponse(ready=True),
                                 v2.ServerReadyRequest, v2.ServerReadyResponse),
            "ModelReady": unary(self._model_ready, v2.ModelReadyRequest, v2.ModelReadyResponse),
            "ServerMetadata": unary(
                lambda r, c: v2.ServerMetadataResponse(name=SERVER_NAME, version=SERVER_VERSION),
                v2.ServerMetadataRequest, v2.ServerMetadataResponse),
            "ModelMetadata": unary(self._model_metadata, v2.ModelMetadataRequest,
                                   v2.ModelMetadataResponse),
            "ModelInfer": unary(self._model_infer, v2.ModelInferRequest, v2.ModelInferResponse),
        })

    def _model_ready(self, request, context):
        with self._lock:
            served = self._models.get(request.name)
        ready = served is not None and request.version in ("", served.version)
        return self._v2.ModelReadyResponse(ready=ready)

    def _model_metadata(self, request, context):
        served = self._find(request.name, context)
        tensor = self._v2.ModelMetadataResponse_TensorMetadata
        return self._v2.ModelMetadataResponse(
            name=served.name, versions=[served.version],
            platform=f"fpga_emulator_{served.model.format.name.lower()}",
            inputs=[tensor(name=s.name, datatype="FP32", shape=s.shape)
                    for s in served.model.inputs],
            outputs=[tensor(name=s.name, datatype="FP32", shape=s.shape)
                     for s in served.model.outputs])

    def _model_infer(self, request, context):
        served = self._find(request.model_name, context)
        if request.raw_input_contents and len(request.raw_input_contents) != len(request.inputs):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"{len(request.raw_input_contents)} raw_input_contents for "
                          f"{len(request.inputs)} inputs: send one per input, in input order")
        inputs = {}
        for index, tensor in enumerate(request.inputs):
            inputs[tensor.name] = self._decode_v2(served, tensor, request, index, context)
        wanted = [o.name for o in request.outputs] or [s.name for s in served.model.outputs]
        known = {s.name for s in served.model.outputs}
        unknown = [name for name in wanted if name not in known]
        if unknown:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"unknown outputs {unknown}; the model has {sorted(known)}")
        result = self._run(served, inputs, context)
        response = self._v2.ModelInferResponse(model_name=served.name,
                                               model_version=served.version, id=request.id)
        response.parameters["modelled_device_latency_ns"].int64_param = \
            round(result.latency.total_seconds * 1e9)
        response.parameters["block_format"].string_param = served.model.format.name
        for name in wanted:
            array = np.ascontiguousarray(result.outputs[name], dtype=np.float32)
            response.outputs.add(name=name, datatype="FP32", shape=array.shape)
            response.raw_output_contents.append(array.tobytes())
        return response

    def _decode_v2(self, served, tensor, request, index, context) -> np.ndarray:
        spec = next((s for s in served.model.inputs if s.name == tensor.name), None)
        expected = f"expected FP32 shape {list(spec.shape)} (-1 = any size)" if spec else \
            f"the model's inputs are {[s.name for s in served.model.inputs]}"
        dtype = _V2_DATATYPES.get(tensor.datatype)
        if dtype is None or spec is None or tensor.datatype != "FP32":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"input {tensor.name!r} is {tensor.datatype}; {expected}")
        shape = tuple(tensor.shape)
        count = int(np.prod(shape)) if shape else 1
        if request.raw_input_contents:
            raw = request.raw_input_contents[index]
            if len(raw) != count * 4:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                              f"input {tensor.name!r} has {len(raw)} bytes for shape "
                              f"{list(shape)}; {expected}")
            return np.frombuffer(raw, dtype="<f4").reshape(shape)
        values = tensor.contents.fp32_contents
        if len(values) != count:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"input {tensor.name!r} has {len(values)} values for shape "
                          f"{list(shape)}; {expected}")
        return np.asarray(values, dtype=np.float32).reshape(shape)

    # -- TF-Serving Predict ----------------------------------------------------------------

    def _tfserving_handlers(self):
        return grpc.method_handlers_generic_handler(TFSERVING_SERVICE, {
            "Predict": grpc.unary_unary_rpc_method_handler(
                self._predict, request_deserializer=self._tf.PredictRequest.FromString,
                response_serializer=self._tf.PredictResponse.SerializeToString),
        })

    def _predict(self, request, context):
        served = self._find(request.model_spec.name, context)
        if served.input_alias not in request.inputs or len(request.inputs) != 1:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"send one input named {served.input_alias!r}; got "
                          f"{sorted(request.inputs)}")
        spec = served.model.inputs[0]
        try:
            array = self._decode_tensor(served, request.inputs[served.input_alias])
        except InvalidInput as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        result = self._run(served, {spec.name: array}, context)
        aliases = served.aliases()
        wanted = list(request.output_filter) or list(aliases)
        unknown = [alias for alias in wanted if alias not in aliases]
        if unknown:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"unknown output aliases {unknown}; the model answers {sorted(aliases)}")
        response = self._tf.PredictResponse()
        response.model_spec.name = served.name
        for alias in wanted:
            out = np.ascontiguousarray(result.outputs[aliases[alias]], dtype=np.float32)
            tensor = response.outputs[alias]
            tensor.dtype = self._tf.DataType["DT_FLOAT"]
            tensor.tensor_shape.dim.extend(
                self._tf.TensorShapeProto_Dim(size=d) for d in out.shape)
            tensor.tensor_content = out.astype("<f4").tobytes()
        context.set_trailing_metadata(
            (("modelled-device-latency-ns", str(round(result.latency.total_seconds * 1e9))),))
        return response

    def _decode_tensor(self, served: ServedModel, tensor) -> np.ndarray:
        types = self._tf.DataType
        if tensor.dtype == types["DT_STRING"]:
            if served.preprocessing is None:
                raise InvalidInput("this model takes tensors, not encoded images: send a "
                                   "DT_FLOAT tensor")
            if len(tensor.string_val) != 1:
                raise InvalidInput(f"send one encoded image per request, got "
                                   f"{len(tensor.string_val)}")
            return served.preprocessing.to_tensor(tensor.string_val[0])
        if tensor.dtype != types["DT_FLOAT"]:
            name = next((k for k, v in types.items() if v == tensor.dtype), tensor.dtype)
            raise InvalidInput(f"input is {name}; expected DT_FLOAT shape "
                               f"{list(served.model.inputs[0].shape)} (-1 = any size) "
                               "or DT_STRING encoded images")
        shape = tuple(d.size for d in tensor.tensor_shape.dim)
        count = int(np.prod(shape)) if shape else 1
        if tensor.tensor_content:
            values = np.frombuffer(tensor.tensor_content, dtype="<f4")
        else:
            values = np.asarray(tensor.float_val, dtype=np.float32)
        if values.size != count:
            raise InvalidInput(f"the tensor holds {values.size} values for shape {list(shape)}")
        return values.reshape(shape).astype(np.float32)


#: The converted-model package a server loads: the ONNX graph and how to serve it.
PACKAGE_MODEL = "model.onnx"
PACKAGE_MANIFEST = "accelerator.json"


def load_package(directory, *, name: str | None = None) -> ServedModel:
    """Load a converted-model folder (``model.onnx`` + ``accelerator.json``) to serve.

    The manifest holds ``format``, optional ``vector_dtype``, ``input_alias``,
    ``output_aliases`` (alias -> output name) and ``preprocessing`` (the fields of
    :class:`ImagePreprocessing`).
    """
    import json
    from pathlib import Path

    from .exceptions import InvalidModel

    folder = Path(directory)
    try:
        manifest = json.loads((folder / PACKAGE_MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidModel(f"{folder} is not a converted accelerator model: {PACKAGE_MANIFEST} "
                           f"cannot be read ({exc}); convert the model first") from None
    model = AcceleratedModel.load(folder / PACKAGE_MODEL, manifest.get("format", "MSFP16"),
                                  vector_dtype=manifest.get("vector_dtype", "float16"))
    preprocessing = manifest.get("preprocessing")
    if preprocessing is not None:
        preprocessing = ImagePreprocessing(**{
            **preprocessing, "offset": tuple(preprocessing.get("offset", (0.0,)))})
    return ServedModel(name=name or manifest.get("name", folder.name), model=model,
                       version=str(manifest.get("version", "1")),
                       output_aliases=dict(manifest.get("output_aliases", {})),
                       input_alias=manifest.get("input_alias", "images"),
                       preprocessing=preprocessing)
