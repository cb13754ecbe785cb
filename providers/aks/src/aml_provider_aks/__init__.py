"""aml-provider-aks: provision or attach a Kubernetes cluster (AKS, or the emulator's) and
serve models on it. Only hook implementations live here; see provision.py and deploy.py."""

from aml_core import Capabilities, TargetKind, hookimpl

from aml_provider_aks import deploy as _deploy
from aml_provider_aks import provision as _provision
from aml_provider_aks.config import KIND, AksServiceDeploymentConfiguration
from aml_provider_aks.webservice import AksCompute, AksWebservice


class AksEndpoint:  # noqa: D101 - named in the public API, not built yet
    def __init__(self, *args, **kwargs):
        raise NotImplementedError("AksEndpoint is not implemented yet in aml-provider-aks (use AksWebservice).")


__all__ = ["AksCompute", "AksEndpoint", "AksWebservice", "AksServiceDeploymentConfiguration"]

CAPABILITIES = Capabilities(package=False, provision=True, update=True, logs=True, auth_keys=True, auth_token=True)


@hookimpl
def aml_target_kinds(add):
    add(TargetKind(name=KIND, provider="aml-provider-aks", capabilities=CAPABILITIES,
                   description="scoring services on a Kubernetes cluster (AKS or the emulator)",
                   webservice_class=AksWebservice, deployment_config_class=AksServiceDeploymentConfiguration))


@hookimpl
def aml_provision(workspace, request):
    if request.kind != KIND:
        return None
    return _provision.provision(workspace, request)


@hookimpl
def aml_compute_delete(workspace, compute, detach):
    if compute.kind != KIND:
        return None
    return _provision.release(workspace, compute, detach)


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
def aml_update(workspace, service, spec):
    if service.kind != KIND:
        return None
    return _deploy.deploy(workspace, spec, existing=service)


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
