"""aml-provider-aks: provision or attach a Kubernetes cluster (AKS, or the emulator's) and
serve models on it. Only hook implementations live here; see provision.py, deploy.py and scale.py."""

from aml_core import Capabilities, TargetKind, hookimpl
from aml_provider_aks import deploy as _deploy
from aml_provider_aks import endpoint as _endpoint
from aml_provider_aks import provision as _provision
from aml_provider_aks import scale as _scale
from aml_provider_aks.config import (
    ENDPOINT_KIND,
    KIND,
    AksEndpointDeploymentConfiguration,
    AksServiceDeploymentConfiguration,
)
from aml_provider_aks.endpoint import AksEndpoint
from aml_provider_aks.webservice import AksCompute, AksWebservice

__all__ = [
    "AksCompute",
    "AksEndpoint",
    "AksEndpointDeploymentConfiguration",
    "AksServiceDeploymentConfiguration",
    "AksWebservice",
]

CAPABILITIES = Capabilities(package=False, provision=True, update=True, logs=True, auth_keys=True, auth_token=True,
                            scale=True, autoscale=True)
#: an endpoint deploys onto an AksCompute; its versions scale through update_version()
ENDPOINT_CAPABILITIES = Capabilities(package=False, update=True, logs=True, auth_keys=True, auth_token=True,
                                     traffic_split=True)
KINDS = (KIND, ENDPOINT_KIND)


@hookimpl
def aml_target_kinds(add):
    add(TargetKind(name=KIND, provider="aml-provider-aks", capabilities=CAPABILITIES,
                   description="scoring services on a Kubernetes cluster (AKS or the emulator)",
                   webservice_class=AksWebservice, deployment_config_class=AksServiceDeploymentConfiguration,
                   compute_class=AksCompute))
    add(TargetKind(name=ENDPOINT_KIND, provider="aml-provider-aks", capabilities=ENDPOINT_CAPABILITIES,
                   description="endpoints with up to 6 versions and a traffic share each, on a Kubernetes cluster",
                   webservice_class=AksEndpoint, deployment_config_class=AksEndpointDeploymentConfiguration))


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
    if spec.kind == ENDPOINT_KIND:
        return _endpoint.deploy(workspace, spec)
    if spec.kind != KIND:
        return None
    return _deploy.deploy(workspace, spec)


@hookimpl
def aml_status(workspace, service):
    if service.kind not in KINDS:
        return None
    return _deploy.status(service)


@hookimpl
def aml_logs(workspace, service, num_lines, init):
    if service.kind not in KINDS:
        return None
    return _deploy.logs(service, num_lines)


@hookimpl
def aml_update(workspace, service, spec):
    if service.kind == ENDPOINT_KIND:
        return _endpoint.deploy(workspace, spec, existing=service)
    if service.kind != KIND:
        return None
    return _deploy.deploy(workspace, spec, existing=service)


@hookimpl
def aml_delete(workspace, service):
    if service.kind not in KINDS:
        return None
    return _deploy.delete(service)


@hookimpl
def aml_auth(workspace, service, request):
    if service.kind not in KINDS:
        return None
    return _deploy.auth(service, request)


@hookimpl
def aml_traffic(workspace, service, split):
    if service.kind != ENDPOINT_KIND:
        return None
    return _endpoint.traffic(workspace, service, split)


@hookimpl
def aml_scale(workspace, service, request, deployment_config):
    if service.kind != KIND:
        return None
    return _scale.scale(workspace, service, request, deployment_config)
