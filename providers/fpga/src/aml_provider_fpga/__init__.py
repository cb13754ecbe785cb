"""aml-provider-fpga: convert ONNX models for a Brainwave-class FPGA accelerator, package them
into an image that serves them over gRPC, and score them with ``PredictionClient``.
See docs/fpga.md."""

from aml_core import Capabilities, TargetKind, hookimpl
from aml_provider_fpga import image as _image
from aml_provider_fpga.client import PredictionClient, PredictionError
from aml_provider_fpga.converter import (
    SUPPORTED_OPERATORS,
    AccelConversion,
    AccelOnnxConverter,
)
from aml_provider_fpga.image import KIND, AccelContainerImage, AccelImageConfiguration

__all__ = ["SUPPORTED_OPERATORS", "AccelContainerImage", "AccelConversion",
           "AccelImageConfiguration", "AccelOnnxConverter", "PredictionClient", "PredictionError"]

CAPABILITIES = Capabilities(package=True, update=False, logs=True)


@hookimpl
def aml_target_kinds(add):
    add(TargetKind(name=KIND, provider="aml-provider-fpga", capabilities=CAPABILITIES,
                   description="converted models on FPGA nodes of a Kubernetes cluster, over gRPC"))


@hookimpl
def aml_package(workspace, request):
    if request.kind != KIND:
        return None
    return _image.package(workspace, request)
