"""``PredictionClient``: score an accelerated model over gRPC (TF-Serving ``Predict``).

Follows azureml-accel-models' client: an insecure channel on port 80 by default (443 with
``use_ssl``), the service key or token sent as ``authorization: Bearer <access_token>``, the
service named in ``x-ms-aml-grpc-service-route``, an empty model spec, the input called
``images``, and up to 5 attempts with exponential back-off.

Where this client is stricter than the original (documented in docs/fpga.md): besides
``INVALID_ARGUMENT``, the answers that cannot change on a retry (``UNAUTHENTICATED``,
``PERMISSION_DENIED``, ``NOT_FOUND``, ``UNIMPLEMENTED``) are not retried either. Every
attempt carries its own ``x-ms-client-request-id``, and the error raised lists them all.
"""

from __future__ import annotations

import io
import os
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

import grpc
import numpy as np

from aml_core.errors import AmlError, InvalidConfig

from .accelerator.protos import tfserving_predict

PREDICT_METHOD = "/tensorflow.serving.PredictionService/Predict"
MAX_ATTEMPTS = 5
#: Answers a retry cannot change.
NOT_RETRIED = frozenset({grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNAUTHENTICATED,
                         grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.NOT_FOUND,
                         grpc.StatusCode.UNIMPLEMENTED})

_NUMPY_TO_TF = {np.dtype(np.float32): "DT_FLOAT", np.dtype(np.float64): "DT_DOUBLE",
                np.dtype(np.int32): "DT_INT32", np.dtype(np.int64): "DT_INT64",
                np.dtype(np.uint8): "DT_UINT8", np.dtype(np.int8): "DT_INT8",
                np.dtype(np.int16): "DT_INT16", np.dtype(np.float16): "DT_HALF",
                np.dtype(np.bool_): "DT_BOOL"}


class PredictionError(AmlError):
    """A scoring call failed; ``status`` is the gRPC code, ``request_ids`` every attempt's id."""

    code = "PredictionError"

    def __init__(self, message: str, status: grpc.StatusCode, request_ids: list[str]) -> None:
        super().__init__(f"{message} (status {status.name}; request ids: "
                         f"{', '.join(request_ids)})")
        self.status = status
        self.request_ids = request_ids


class PredictionClient:
    """A gRPC client of one accelerated service."""

    def __init__(self, address: str, port: int | None = None, use_ssl: bool = False,
                 access_token: str = "", service_name: str = "",
                 channel_shutdown_timeout: timedelta = timedelta(minutes=2), *,
                 root_certificates: bytes | None = None, timeout: float = 60.0,
                 backoff_seconds: float = 0.1,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if not address:
            raise InvalidConfig("PredictionClient needs the service's address (its scoring "
                                "host name or IP)")
        self.address = address
        self.port = port if port is not None else (443 if use_ssl else 80)
        self.use_ssl = use_ssl
        self._access_token = access_token
        self.service_name = service_name
        self._channel_shutdown_timeout = channel_shutdown_timeout.total_seconds()
        self._root_certificates = root_certificates
        self._timeout = timeout
        self._backoff = backoff_seconds
        self._sleep = sleep
        self._channel: grpc.Channel | None = None
        self._channel_used = 0.0
        self._messages = tfserving_predict()

    def __repr__(self) -> str:  # never the token
        return (f"PredictionClient({self.address!r}, port={self.port}, use_ssl={self.use_ssl}, "
                f"service_name={self.service_name!r})")

    # -- public scoring API ----------------------------------------------------------------

    def score_numpy_array(self, array: np.ndarray, input_name: str = "images",
                          output_alias: str | None = None) -> Any:
        """Score one tensor; returns the ndarray of the output (or a dict of all outputs)."""
        return self.score_numpy_arrays({input_name: np.asarray(array)}, output_alias)

    def score_numpy_arrays(self, arrays: Mapping[str, np.ndarray],
                           output_alias: str | None = None) -> Any:
        request = self._messages.PredictRequest()
        for name, array in arrays.items():
            self._fill_tensor(request.inputs[name], np.asarray(array))
        return self._predict(request, output_alias)

    def score_file(self, path: str | os.PathLike, input_name: str = "images",
                   output_alias: str | None = None) -> Any:
        """Send a file's bytes (an encoded image) as one ``DT_STRING`` tensor of shape [1]."""
        with open(path, "rb") as handle:
            return self._score_bytes(handle.read(), input_name, output_alias)

    def score_image(self, image: Any, input_name: str = "images",
                    output_alias: str | None = None) -> Any:
        """Score an image: a path, encoded bytes, or a Pillow image (sent as PNG)."""
        if isinstance(image, (bytes, bytearray)):
            return self._score_bytes(bytes(image), input_name, output_alias)
        if isinstance(image, (str, os.PathLike)):
            return self.score_file(image, input_name, output_alias)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return self._score_bytes(buffer.getvalue(), input_name, output_alias)

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    def __enter__(self) -> PredictionClient:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- internals -------------------------------------------------------------------------

    def _score_bytes(self, data: bytes, input_name: str, output_alias: str | None) -> Any:
        request = self._messages.PredictRequest()
        tensor = request.inputs[input_name]
        tensor.dtype = self._messages.DataType["DT_STRING"]
        tensor.tensor_shape.dim.add(size=1)
        tensor.string_val.append(data)
        return self._predict(request, output_alias)

    def _fill_tensor(self, tensor, array: np.ndarray) -> None:
        name = _NUMPY_TO_TF.get(array.dtype)
        if name is None:
            raise InvalidConfig(f"arrays of {array.dtype} cannot be sent; use one of "
                                f"{sorted(str(d) for d in _NUMPY_TO_TF)}")
        tensor.dtype = self._messages.DataType[name]
        for size in array.shape:
            tensor.tensor_shape.dim.add(size=size)
        tensor.tensor_content = np.ascontiguousarray(array).astype(
            array.dtype.newbyteorder("<")).tobytes()

    def _to_numpy(self, tensor) -> np.ndarray:
        types = {v: k for k, v in self._messages.DataType.items()}
        dtype = {v: k for k, v in _NUMPY_TO_TF.items()}.get(types.get(tensor.dtype))
        if dtype is None:
            raise PredictionError(f"the service answered an unsupported tensor type "
                                  f"{types.get(tensor.dtype, tensor.dtype)}",
                                  grpc.StatusCode.INTERNAL, [])
        shape = [d.size for d in tensor.tensor_shape.dim]
        if tensor.tensor_content:
            values = np.frombuffer(tensor.tensor_content, dtype=dtype.newbyteorder("<"))
        else:
            values = np.asarray(tensor.float_val or tensor.double_val or tensor.int_val
                                or tensor.int64_val, dtype=dtype)
        return values.astype(dtype).reshape(shape)

    def _get_channel(self) -> grpc.Channel:
        now = time.monotonic()
        if self._channel is not None and now - self._channel_used > self._channel_shutdown_timeout:
            self.close()  # an idle channel may have been dropped by a load balancer
        if self._channel is None:
            target = f"{self.address}:{self.port}"
            options = [("grpc.max_receive_message_length", 2**31 - 1),
                       ("grpc.max_send_message_length", 2**31 - 1)]
            if self.use_ssl:
                credentials = grpc.ssl_channel_credentials(self._root_certificates)
                self._channel = grpc.secure_channel(target, credentials, options=options)
            else:
                self._channel = grpc.insecure_channel(target, options=options)
        self._channel_used = now
        return self._channel

    def _metadata(self, request_id: str) -> list[tuple[str, str]]:
        metadata = [("x-ms-client-request-id", request_id)]
        if self._access_token:
            metadata.append(("authorization", f"Bearer {self._access_token}"))
        if self.service_name:
            metadata.append(("x-ms-aml-grpc-service-route",
                             f"/api/v1/service/{self.service_name}"))
        return metadata

    def _predict(self, request, output_alias: str | None) -> Any:
        if output_alias:
            request.output_filter.append(output_alias)
        request_ids: list[str] = []
        while True:
            request_id = str(uuid.uuid4())
            request_ids.append(request_id)
            call = self._get_channel().unary_unary(
                PREDICT_METHOD, request_serializer=self._messages.PredictRequest.SerializeToString,
                response_deserializer=self._messages.PredictResponse.FromString)
            try:
                response = call(request, metadata=self._metadata(request_id),
                                timeout=self._timeout)
            except grpc.RpcError as error:
                status = error.code()
                if status in NOT_RETRIED or len(request_ids) == MAX_ATTEMPTS:
                    raise PredictionError(
                        f"scoring {self.address}:{self.port} failed after {len(request_ids)} "
                        f"attempt(s): {error.details()}", status, request_ids) from None
                self._sleep(self._backoff * 2 ** (len(request_ids) - 1))
                continue
            outputs = {alias: self._to_numpy(t) for alias, t in response.outputs.items()}
            if len(outputs) == 1:
                return next(iter(outputs.values()))
            return outputs
