"""Protocol messages the accelerator serves, from the .proto files beside this module.

grpcio-tools compiles each .proto into a descriptor set (``<name>.binpb``, committed;
``python -m aml_provider_fpga.accelerator.protos`` regenerates them and a test checks they match their
sources). Message classes are built from those descriptors in a *private* descriptor pool:
clients such as tritonclient register the same ``inference.*`` names in protobuf's default pool
from their own files, and two files defining one symbol cannot share a pool. Services are bound
with grpc's generic handlers, so no service stubs are generated.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from types import SimpleNamespace

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory


def load_messages(descriptor_set: bytes) -> SimpleNamespace:
    """Every message class of a descriptor set, by short name, from a pool of its own.

    Nested messages are named with underscores (``ModelInferRequest_InferInputTensor``) and
    enums appear as their value-name → number mapping.
    """
    files = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set)
    pool = descriptor_pool.DescriptorPool()
    for file_proto in files.file:
        pool.Add(file_proto)
    classes: dict[str, object] = {}
    own = files.file[-1]  # --include_imports lists dependencies first, the compiled file last

    def collect(prefix: str, full_prefix: str, messages) -> None:
        for message in messages:
            full_name = f"{full_prefix}.{message.name}"
            descriptor = pool.FindMessageTypeByName(full_name)
            classes[f"{prefix}{message.name}"] = message_factory.GetMessageClass(descriptor)
            collect(f"{prefix}{message.name}_", full_name, message.nested_type)

    collect("", own.package, own.message_type)
    for enum in own.enum_type:
        classes[enum.name] = {value.name: value.number for value in enum.value}
    return SimpleNamespace(**classes)


@cache
def open_inference_v2() -> SimpleNamespace:
    """The KServe Open Inference Protocol v2 messages (package ``inference``)."""
    return load_messages((resources.files(__name__) / "open_inference_v2.binpb").read_bytes())


@cache
def tfserving_predict() -> SimpleNamespace:
    """The TF-Serving Predict messages (package ``tensorflow.serving``)."""
    return load_messages((resources.files(__name__) / "tfserving_predict.binpb").read_bytes())
