"""The TF-Serving Predict messages the client sends, from ``tfserving_predict.proto`` beside
this module, compiled by grpcio-tools into ``tfserving_predict.binpb`` (regenerate with
``python -m grpc_tools.protoc -I. -I<grpc_tools>/_proto --include_imports
--descriptor_set_out=tfserving_predict.binpb tfserving_predict.proto``; a test checks it).

Like azureml-accel-models, the client carries its own copy of the protocol; the classes are
built in a private descriptor pool so they never collide with another library's (TF-Serving's
own ``tensorflow.serving`` messages, for one).
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from types import SimpleNamespace

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory


@cache
def tfserving_predict() -> SimpleNamespace:
    """PredictRequest, PredictResponse, TensorProto, TensorShapeProto(_Dim), DataType."""
    data = (resources.files(__name__) / "tfserving_predict.binpb").read_bytes()
    files = descriptor_pb2.FileDescriptorSet.FromString(data)
    pool = descriptor_pool.DescriptorPool()
    for file_proto in files.file:
        pool.Add(file_proto)
    own = files.file[-1]
    names: dict[str, object] = {}
    for message in own.message_type:
        full = f"{own.package}.{message.name}"
        names[message.name] = message_factory.GetMessageClass(pool.FindMessageTypeByName(full))
        for nested in message.nested_type:
            names[f"{message.name}_{nested.name}"] = message_factory.GetMessageClass(
                pool.FindMessageTypeByName(f"{full}.{nested.name}"))
    for enum in own.enum_type:
        names[enum.name] = {value.name: value.number for value in enum.value}
    return SimpleNamespace(**names)
