"""aml-provider-functions: a model packaged as an Azure Functions app (``azureml.contrib.functions``):
``package`` and the per-trigger helpers build the image (packaging.py); the Functions host that
runs inside it is :mod:`aml_provider_functions.host`; ``FunctionsWebservice`` deploys it as a
function app through azure-mgmt-web (deploy.py). Only hook implementations live here."""

from aml_core import Capabilities, TargetKind, hookimpl
from aml_provider_functions.config import KIND, FunctionsDeploymentConfiguration
from aml_provider_functions.packaging import (BLOB_TRIGGER, HTTP_TRIGGER, SERVICE_BUS_QUEUE_TRIGGER, package,
                                              package_blob, package_http, package_service_bus_queue)
from aml_provider_functions.webservice import FunctionsWebservice

__all__ = ["BLOB_TRIGGER", "HTTP_TRIGGER", "SERVICE_BUS_QUEUE_TRIGGER", "FunctionsDeploymentConfiguration",
           "FunctionsWebservice", "package", "package_blob", "package_http", "package_service_bus_queue"]

#: one function app per service. Its keys are the Functions host's, not AML's primary/secondary
#: pair (FunctionsWebservice.get_function_keys / get_host_keys read them through ARM; nothing here
#: regenerates them), so no auth_keys; updates go through the staging slot (Standard plans and
#: above); no token auth, replicas or traffic split
CAPABILITIES = Capabilities(package=True, provision=False, update=True, logs=True, auth_keys=False,
                            auth_token=False, scale=False, autoscale=False, traffic_split=False)


def _deploy():
    from aml_provider_functions import deploy

    return deploy


@hookimpl
def aml_target_kinds(add):
    add(TargetKind(name=KIND, provider="aml-provider-functions", capabilities=CAPABILITIES,
                   description="the model as an Azure Functions app (HTTP, blob or Service Bus queue trigger)",
                   webservice_class=FunctionsWebservice, deployment_config_class=FunctionsDeploymentConfiguration))


@hookimpl
def aml_deploy(workspace, spec):
    return _deploy().deploy(workspace, spec) if spec.kind == KIND else None


@hookimpl
def aml_update(workspace, service, spec):
    return _deploy().deploy(workspace, spec, existing=service) if service.kind == KIND else None


@hookimpl
def aml_status(workspace, service):
    return _deploy().status(workspace, service) if service.kind == KIND else None


@hookimpl
def aml_logs(workspace, service, num_lines, init):
    return _deploy().logs(service, num_lines) if service.kind == KIND else None


@hookimpl
def aml_delete(workspace, service):
    return _deploy().delete(workspace, service) if service.kind == KIND else None
