"""aml-provider-fpga: convert ONNX models for a Brainwave-class FPGA accelerator, package them
into an image that serves them over gRPC, and score them with ``PredictionClient``.
See docs/fpga.md."""

from aml_core import Capabilities, TargetKind, hookimpl
from aml_provider_fpga import deploy as _deploy
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

#: honest: images of converted models are packaged and deployed, logs and keys read, keys
#: rotated; no entry script (the runtime serves the models over gRPC), no in-place update,
#: provisioning (the AKS provider's), scaling, autoscale, tokens or traffic split
CAPABILITIES = Capabilities(package=True, update=False, logs=True, auth_keys=True, fpga=True,
                            entry_script=False)


@hookimpl
def aml_target_kinds(add):
    add(TargetKind(name=KIND, provider="aml-provider-fpga", capabilities=CAPABILITIES,
                   description="converted models on FPGA nodes of a Kubernetes cluster, over gRPC"))


@hookimpl
def aml_package(workspace, request):
    if request.kind != KIND:
        return None
    return _image.package(workspace, request)


@hookimpl
def aml_deploy(workspace, spec):
    if spec.kind != KIND:
        return None
    return _deploy.deploy(workspace, spec)


@hookimpl
def aml_status(workspace, service):
    if service.kind != KIND:
        return None
    return _deploy.status(service)


@hookimpl
def aml_logs(workspace, service, num_lines, init):
    if service.kind != KIND:
        return None
    return _deploy.logs(service, num_lines)


@hookimpl
def aml_delete(workspace, service):
    if service.kind != KIND:
        return None
    return _deploy.delete(service)


@hookimpl
def aml_auth(workspace, service, request):
    if service.kind != KIND:
        return None
    return _deploy.auth(service, request)
