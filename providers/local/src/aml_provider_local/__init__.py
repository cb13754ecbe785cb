"""aml-provider-local: serve a model on this machine, no cloud account and no container engine needed.

Only hook implementations live here; the work is in :mod:`aml_provider_local.deploy`.
"""

from aml_core import Capabilities, TargetKind, hookimpl

from aml_provider_local import deploy as _deploy
from aml_provider_local.config import LocalWebserviceDeploymentConfiguration
from aml_provider_local.webservice import LocalWebservice

__all__ = ["LocalWebservice", "LocalWebserviceDeploymentConfiguration"]

KIND = _deploy.KIND
CAPABILITIES = Capabilities(package=False, provision=False, update=True, logs=True)


@hookimpl
def aml_target_kinds(add):
    add(TargetKind(
        name=KIND,
        provider="aml-provider-local",
        capabilities=CAPABILITIES,
        description="a scoring service on this machine (process engine)",
        webservice_class=LocalWebservice,
        deployment_config_class=LocalWebserviceDeploymentConfiguration,
    ))


@hookimpl
def aml_deploy(workspace, spec):
    if spec.kind != KIND:
        return None
    return _deploy.start(workspace, spec)


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
    return _deploy.update(workspace, service, spec)


@hookimpl
def aml_delete(workspace, service):
    if service.kind != KIND:
        return None
    return _deploy.delete(workspace, service)
