"""Deploy, inspect and delete function apps through azure-mgmt-web: the documents' ``az
functionapp create --deployment-container-image-name`` + ``config container set`` + ``appsettings
set`` steps as one ARM definition.

A service is one ``functionapp,linux,container`` site on a Linux App Service plan (reused when it
exists, created otherwise) whose container is the function app image (``linuxFxVersion =
DOCKER|<registry>/<image>:<tag>``), pulled with the workspace registry's credentials, with the app
settings the host reads: ``AzureWebJobsStorage``, the trigger's connection setting
(``TriggerConnectionString`` / ``ServiceBusConnection``), ``FUNCTIONS_EXTENSION_VERSION`` and
``FUNCTIONS_WORKER_RUNTIME``. Keys are the platform's: ARM's host and function list-keys.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable

import attrs
import requests

from aml_core.errors import InvalidConfig, NotFound, ProvisioningFailed
from aml_core.records import DeploymentSpec, ServiceRecord, utcnow
from aml_core.workspace import Workspace

from aml_azure_common.webapps import read_log_stream
from aml_provider_functions.config import KIND, FunctionsDeploymentConfiguration
from aml_provider_functions.packaging import (BLOB_TRIGGER, FUNCTION_NAMES, HOST_PORT, HTTP_TRIGGER,
                                              SERVICE_BUS_CONNECTION, SERVICE_BUS_QUEUE_TRIGGER, STORAGE_CONNECTION)

SITE_KIND = "functionapp,linux,container"
STAGING = "staging"
#: pricing tiers whose plans have deployment slots (Standard, Premium)
SLOT_TIERS = ("S", "P")
READY_TIMEOUT = float(os.environ.get("AML_FUNCTIONS_READY_TIMEOUT", "300"))
_POLL = 0.1


def _profile():
    from aml_core.profiles import CloudProfile

    return CloudProfile.load()


def _client(profile=None):
    from azure.mgmt.web import WebSiteManagementClient

    from aml_azure_common import management_client

    return management_client(WebSiteManagementClient, profile)


def _config_of(spec: DeploymentSpec) -> FunctionsDeploymentConfiguration:
    config = spec.deployment_config
    if not isinstance(config, FunctionsDeploymentConfiguration):
        raise InvalidConfig(f"Function app deployments need FunctionsWebservice.deploy_configuration(...), got "
                            f"{type(config).__name__}.")
    return config


def _ensure_plan(client: Any, resource_group: str, config: FunctionsDeploymentConfiguration, location: str,
                 progress: Callable[[str], None]) -> tuple[Any, bool]:
    from azure.core.exceptions import ResourceNotFoundError

    from aml_azure_common import arm_errors, wait_for

    name = config.effective_plan_name
    try:
        with arm_errors(f"Reading App Service plan {name!r}"):
            plan = client.app_service_plans.get(resource_group, name)
    except NotFound as exc:
        if not isinstance(exc.__cause__, ResourceNotFoundError):
            raise
        plan = None
    if plan is not None:
        if not plan.reserved:
            raise InvalidConfig(f"App Service plan {name!r} is a Windows plan; a container function app needs a "
                                f"Linux plan. Pass another plan_name (a new one is created as Linux).")
        return plan, False
    what = f"Creating Linux App Service plan {name!r} ({config.effective_sku})"
    with arm_errors(what, fix="Check plan_name and sku."):
        plan = wait_for(client.app_service_plans.begin_create_or_update(resource_group, name, {
            "location": location, "kind": "linux", "sku": {"name": config.effective_sku},
            "properties": {"reserved": True}}), what=what, progress=progress)
    return plan, True


def app_settings(config: FunctionsDeploymentConfiguration, registry: Any, profile: Any,
                 current: dict[str, str] | None = None) -> dict[str, str]:
    """The function app's settings; refuses a trigger whose connection string is missing.
    ``current`` (an update) supplies connection strings the configuration does not repeat."""
    current = current or {}
    storage = (config.storage_connection_string or current.get("AzureWebJobsStorage")
               or profile.extra.get("storage_connection_string"))
    if not storage:
        raise InvalidConfig("A function app needs a storage account for its host (AzureWebJobsStorage): pass "
                            "storage_connection_string= to FunctionsWebservice.deploy_configuration (on the "
                            "emulator, start it with the storage service: `aml emulator start` with storage).")
    settings = {"AzureWebJobsStorage": storage, "FUNCTIONS_EXTENSION_VERSION": "~4",
                "FUNCTIONS_WORKER_RUNTIME": "python", "WEBSITES_ENABLE_APP_SERVICE_STORAGE": "false",
                "WEBSITES_PORT": str(HOST_PORT)}
    if config.trigger == BLOB_TRIGGER:
        settings[STORAGE_CONNECTION] = config.trigger_connection_string or current.get(STORAGE_CONNECTION) or storage
    if config.trigger == SERVICE_BUS_QUEUE_TRIGGER:
        service_bus = (config.service_bus_connection_string or current.get(SERVICE_BUS_CONNECTION)
                       or profile.extra.get("service_bus_connection_string"))
        if not service_bus:
            raise InvalidConfig("The Service Bus queue trigger needs service_bus_connection_string= (the namespace's "
                                "connection string) in FunctionsWebservice.deploy_configuration.")
        settings[SERVICE_BUS_CONNECTION] = service_bus
    if registry is not None:
        settings["DOCKER_REGISTRY_SERVER_URL"] = f"https://{registry.address}"
        if registry.username:
            settings["DOCKER_REGISTRY_SERVER_USERNAME"] = registry.username
            settings["DOCKER_REGISTRY_SERVER_PASSWORD"] = registry.password
    return settings


def _image(workspace: Workspace, spec: DeploymentSpec, config: FunctionsDeploymentConfiguration,
           progress: Callable[[str], None]) -> tuple[str, Any]:
    """The function app image: the spec's (``deploy_from_image``) or one packaged now."""
    from aml_core.images import build_and_store, deployment_image, workspace_registry

    from aml_provider_functions.packaging import _with_host_packages, add_function_app

    if spec.image is not None:
        return deployment_image(workspace, spec, progress)
    record = build_and_store(workspace, spec.models, _with_host_packages(spec.inference_config),
                             image_name=spec.name, progress=progress,
                             finish=lambda image: add_function_app(image, config.trigger, config.trigger_options))
    return record.location, workspace_registry(workspace)


def _scoring_uri(config: FunctionsDeploymentConfiguration, host: str) -> str | None:
    return f"https://{host}/api/{FUNCTION_NAMES[HTTP_TRIGGER]}" if config.trigger == HTTP_TRIGGER else None


def deploy(workspace: Workspace, spec: DeploymentSpec, *, existing: ServiceRecord | None = None) -> ServiceRecord:
    from aml_azure_common import arm_errors, wait_for

    progress = spec.progress or (lambda text: None)
    config = _config_of(spec)
    if not workspace.container_registry.startswith("profile:"):
        raise InvalidConfig(f"A function app pulls its image from a registry it can reach, but workspace "
                            f"{workspace.name!r} keeps images in its embedded store. Create it with "
                            f"Workspace.create(path, container_registry='profile:emulator') (or your Azure profile).")
    profile = _profile()
    client = _client(profile)
    resource_group = profile.resource_group
    location = config.location or profile.extra.get("location") or "westus"
    app = existing.details["app"] if existing is not None else config.app_name_for(spec.name)
    image, registry = _image(workspace, spec, config, progress)
    current = {}
    if existing is not None:
        with arm_errors(f"Reading the settings of function app {app!r}"):
            current = dict(client.web_apps.list_application_settings(resource_group, app).properties or {})
    settings = app_settings(config, registry, profile, current)
    plan, plan_created = _ensure_plan(client, resource_group, config, location, progress)
    body = {"location": location, "kind": SITE_KIND, "tags": {**(config.tags or {}), "aml.service": spec.name},
            "properties": {"serverFarmId": plan.id, "httpsOnly": True, "reserved": True,
                           "siteConfig": {"linuxFxVersion": f"DOCKER|{image}", "alwaysOn": True,
                                          "appSettings": [{"name": k, "value": v} for k, v in settings.items()]}}}
    auth = config.trigger_options.get("auth_level") if config.trigger == HTTP_TRIGGER else None
    record = ServiceRecord(name=spec.name, kind=KIND, state="Transitioning", models=tuple(m.id for m in spec.models),
                           auth_mode="key" if auth in ("function", "admin") else "none",
                           tags=dict(config.tags or {}),
                           details={"resource_group": resource_group, "app": app, "plan": plan.name,
                                    "plan_created": plan_created if existing is None
                                    else existing.details.get("plan_created", False),
                                    "image": image, "trigger": config.trigger, "auth_level": auth,
                                    "function": FUNCTION_NAMES[config.trigger],
                                    "ca_bundle": os.path.expanduser(profile.ca_bundle) if profile.ca_bundle else None})
    try:
        if existing is None or plan.sku.name[:1].upper() not in SLOT_TIERS:
            what = f"{'Updating' if existing else 'Creating'} function app {app!r} on plan {plan.name!r}"
            if existing is not None:
                progress(f"Plan {plan.name!r} ({plan.sku.name}) has no deployment slots: function app {app!r} is "
                         f"updated in place and restarts (S1 or above updates without downtime)")
            with arm_errors(what):
                wait_for(client.web_apps.begin_create_or_update(resource_group, app, body), what=what,
                         progress=progress)
            site = _wait_running(client, resource_group, app, profile.connection_verify, progress)
        else:
            site = _swap_in(client, resource_group, app, body, profile.connection_verify, progress)
    except ProvisioningFailed as exc:
        if existing is not None:
            raise ProvisioningFailed(f"{exc} The function app keeps running its previous version.") from exc
        exc.record = attrs.evolve(record, state="Failed", error=str(exc))
        raise
    return attrs.evolve(record, state="Healthy", scoring_uri=_scoring_uri(config, site.default_host_name),
                        details={**record.details, "default_host_name": site.default_host_name},
                        created_time=existing.created_time if existing else record.created_time,
                        updated_time=utcnow())


def _swap_in(client: Any, resource_group: str, app: str, body: dict[str, Any], verify: Any,
             progress: Callable[[str], None]) -> Any:
    """The new version starts in the staging slot, answers, then swaps into production: the
    old version serves until then, and stays in staging (swap again to roll back)."""
    from aml_azure_common import arm_errors, wait_for

    what = f"Starting the new version in slot {STAGING!r} of function app {app!r}"
    with arm_errors(what):
        wait_for(client.web_apps.begin_create_or_update_slot(resource_group, app, STAGING, body), what=what,
                 progress=progress)
    _wait_running(client, resource_group, app, verify, progress, slot=STAGING)
    what = f"Swapping slot {STAGING!r} into production of function app {app!r}"
    with arm_errors(what):
        wait_for(client.web_apps.begin_swap_slot_with_production(
            resource_group, app, {"targetSlot": STAGING, "preserveVnet": True}), what=what, progress=progress)
    return client.web_apps.get(resource_group, app)


def _wait_running(client: Any, resource_group: str, app: str, verify: Any, progress: Callable[[str], None],
                  slot: str | None = None) -> Any:
    """Call the host's root until it answers; fail with the log stream's reasons when the
    platform shows the container cannot start."""
    get = (lambda: client.web_apps.get(resource_group, app)) if slot is None else \
        (lambda: client.web_apps.get_slot(resource_group, app, slot))
    site = get()
    url = f"https://{site.default_host_name}/"
    progress(f"Waiting for the Functions host at {url}")
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=5, verify=verify).status_code == 200:
                return site
        except requests.RequestException:
            pass
        site = get()
        if site.availability_state == "Limited":
            log = read_log_stream(client, resource_group, app, verify, slot=slot, what="function app")
            reasons = [line for line in log.splitlines() if "ERROR" in line] or log.splitlines()[-5:]
            raise ProvisioningFailed(f"Function app {app!r} cannot start its container: {' '.join(reasons)[-1500:]} "
                                     f"Call service.get_logs() for more.")
        time.sleep(_POLL)
    raise ProvisioningFailed(f"Function app {app!r} did not answer at {url} within {READY_TIMEOUT:.0f} s; call "
                             f"service.get_logs() (AML_FUNCTIONS_READY_TIMEOUT sets the limit).")


def status(workspace: Workspace, service: ServiceRecord) -> ServiceRecord:
    from azure.core.exceptions import ResourceNotFoundError

    from aml_azure_common import arm_errors

    details = service.details
    try:
        with arm_errors(f"Reading function app {details['app']!r}"):
            site = _client().web_apps.get(details["resource_group"], details["app"])
    except NotFound as exc:
        if isinstance(exc.__cause__, ResourceNotFoundError):
            return attrs.evolve(service, state="Failed", error="its function app is gone from Azure; deploy it again")
        raise
    if site.state != "Running":
        state, error = "Unhealthy", f"the function app is {site.state} (start it: az functionapp start)"
    elif site.availability_state == "Limited":
        state, error = "Unhealthy", "the function app's container is not running; see get_logs()"
    else:
        state, error = "Healthy", None
    return attrs.evolve(service, state=state, error=error)


def logs(service: ServiceRecord, num_lines: int) -> str:
    profile = _profile()
    details = service.details
    text = read_log_stream(_client(profile), details["resource_group"], details["app"], profile.connection_verify,
                           what="function app")
    return "".join(text.splitlines(keepends=True)[-num_lines:]) if num_lines else ""


def delete(workspace: Workspace, service: ServiceRecord) -> bool:
    from azure.core.exceptions import ResourceNotFoundError

    from aml_azure_common import arm_errors

    details = service.details
    try:
        with arm_errors(f"Deleting function app {details['app']!r}"):
            _client().web_apps.delete(details["resource_group"], details["app"],
                                      delete_empty_server_farm=bool(details.get("plan_created")))
    except NotFound as exc:
        if isinstance(exc.__cause__, ResourceNotFoundError):
            return False
        raise
    return True


def host_keys(service: ServiceRecord) -> Any:
    """ARM's ``host/default/listkeys``: ``master_key``, ``function_keys``, ``system_keys``."""
    from aml_azure_common import arm_errors

    details = service.details
    with arm_errors(f"Listing the host keys of function app {details['app']!r}"):
        return _client().web_apps.list_host_keys(details["resource_group"], details["app"])


def function_keys(service: ServiceRecord) -> dict[str, str]:
    """ARM's ``functions/<function>/listkeys`` of the app's function."""
    from aml_azure_common import arm_errors

    details = service.details
    with arm_errors(f"Listing the keys of function {details['function']!r} of function app {details['app']!r}"):
        found = _client().web_apps.list_function_keys(details["resource_group"], details["app"], details["function"])
    return dict(found.properties or {})
