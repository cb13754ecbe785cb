"""aml-provider-aci: scoring services on Azure Container Instances (or the emulator's), through
azure-mgmt-containerinstance. Only hook implementations live here; see deploy.py and config.py."""

from aml_core import Capabilities, TargetKind, hookimpl
from aml_provider_aci import deploy as _deploy
from aml_provider_aci.config import KIND, AciServiceDeploymentConfiguration
from aml_provider_aci.webservice import AciWebservice

__all__ = ["AciServiceDeploymentConfiguration", "AciWebservice"]

#: one container group per service: no replicas to scale, no endpoint versions to split
#: traffic between, no token auth (ACI has no front door to issue tokens); keys are checked
#: by the scoring runtime inside the container
CAPABILITIES = Capabilities(package=False, provision=False, update=True, logs=True, auth_keys=True,
                            auth_token=False, scale=False, autoscale=False, traffic_split=False)


@hookimpl
def aml_target_kinds(add):
    add(TargetKind(name=KIND, provider="aml-provider-aci", capabilities=CAPABILITIES,
                   description="single-container scoring services on Azure Container Instances (dev/test)",
                   webservice_class=AciWebservice, deployment_config_class=AciServiceDeploymentConfiguration))


@hookimpl
def aml_deploy(workspace, spec):
    if spec.kind != KIND:
        return None
    return _deploy.deploy(workspace, spec)


@hookimpl
def aml_update(workspace, service, spec):
    if service.kind != KIND:
        return None
    return _deploy.deploy(workspace, spec, existing=service)


@hookimpl
def aml_status(workspace, service):
    if service.kind != KIND:
        return None
    return _deploy.status(workspace, service)


@hookimpl
def aml_logs(workspace, service, num_lines, init):
    if service.kind != KIND:
        return None
    return _deploy.logs(service, num_lines)


@hookimpl
def aml_delete(workspace, service):
    if service.kind != KIND:
        return None
    return _deploy.delete(workspace, service)


@hookimpl
def aml_auth(workspace, service, request):
    if service.kind != KIND:
        return None
    return _deploy.auth(workspace, service, request)
