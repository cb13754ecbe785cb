"""aml-provider-appservice: scoring services as App Service web apps (the packaged image as a
Linux web app's container), through azure-mgmt-web. Only hook implementations live here; see
deploy.py and config.py."""

from aml_core import Capabilities, TargetKind, hookimpl
from aml_provider_appservice import deploy as _deploy
from aml_provider_appservice.config import KIND, AppServiceDeploymentConfiguration
from aml_provider_appservice.webservice import AppServiceWebservice

__all__ = ["AppServiceDeploymentConfiguration", "AppServiceWebservice"]

#: one web app per service: the plan's workers are not this target's to scale, there are no
#: endpoint versions to split traffic between, and no token auth (nothing issues tokens);
#: keys are checked by the scoring runtime inside the container
CAPABILITIES = Capabilities(package=False, provision=False, update=True, logs=True, auth_keys=True,
                            auth_token=False, scale=False, autoscale=False, traffic_split=False)


@hookimpl
def aml_target_kinds(add):
    add(TargetKind(name=KIND, provider="aml-provider-appservice", capabilities=CAPABILITIES,
                   description="the packaged image as an App Service web app (Linux, container)",
                   webservice_class=AppServiceWebservice, deployment_config_class=AppServiceDeploymentConfiguration))


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
