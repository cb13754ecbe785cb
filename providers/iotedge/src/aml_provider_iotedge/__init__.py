"""aml-provider-iotedge: models deployed as IoT Edge modules, wired by routes, through an IoT hub.

Only hook implementations live here; the work is in :mod:`aml_provider_iotedge.deploy`.
"""

from aml_core import Capabilities, TargetKind, hookimpl

from aml_provider_iotedge import deploy as _deploy
from aml_provider_iotedge.config import (
    IotBaseModuleSettings,
    IotModuleSettings,
    IotServiceDeploymentConfiguration,
)
from aml_provider_iotedge.images import publish_sensor_image
from aml_provider_iotedge.webservice import IotWebservice

__all__ = ["IotBaseModuleSettings", "IotModuleSettings", "IotServiceDeploymentConfiguration", "IotWebservice",
           "publish_sensor_image"]

KIND = _deploy.KIND
#: an IoT Edge module: updatable and with logs; no keys or tokens (messages come through
#: routes on the device), no scaling, no traffic split, no accelerators
CAPABILITIES = Capabilities(package=True, provision=False, update=True, logs=True)


@hookimpl
def aml_target_kinds(add):
    add(TargetKind(
        name=KIND,
        provider="aml-provider-iotedge",
        capabilities=CAPABILITIES,
        description="a module on an IoT Edge device, fed by edge hub routes",
        webservice_class=IotWebservice,
        deployment_config_class=IotServiceDeploymentConfiguration,
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
    return _deploy.delete(service)
