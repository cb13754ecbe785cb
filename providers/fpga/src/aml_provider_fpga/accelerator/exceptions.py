"""Accelerator errors: each carries the gRPC status it is answered with and a stable code."""

from __future__ import annotations

import grpc


class AcceleratorError(Exception):
    """An error of the emulated accelerator; ``status`` is the gRPC code a server answers."""

    code = "AcceleratorError"
    status = grpc.StatusCode.INTERNAL


class UnsupportedOperator(AcceleratorError):
    """The graph has an operator the accelerator cannot run; the message names op and node."""

    code = "UnsupportedOperator"
    status = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, op_type: str, node_name: str, reason: str = "") -> None:
        from .graph import SUPPORTED_OPERATORS

        self.op_type = op_type
        self.node_name = node_name
        detail = reason or (
            "the accelerator runs only " + ", ".join(sorted(SUPPORTED_OPERATORS))
        )
        super().__init__(
            f"operator {op_type!r} of node {node_name!r} is not supported by the accelerator: "
            f"{detail}. Move it out of the accelerated graph (run it on the host before or "
            f"after) and convert again."
        )


class UnknownFormat(AcceleratorError):
    """A block format name the accelerator does not know."""

    code = "UnknownFormat"
    status = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"unknown block format {name!r}; choose one of {', '.join(known)}")


class InvalidInput(AcceleratorError):
    """A request tensor of the wrong name, shape or dtype, or an image that does not decode."""

    code = "InvalidInput"
    status = grpc.StatusCode.INVALID_ARGUMENT


class InvalidModel(AcceleratorError):
    """A model file that is not a loadable ONNX graph of the supported shape."""

    code = "InvalidModel"
    status = grpc.StatusCode.INVALID_ARGUMENT
