"""Deploy, inspect, update and delete App Service web apps through azure-mgmt-web.

A service is one Linux web app (``app,linux,container``) on an App Service plan that is
reused when it exists and created (Linux, ``reserved``, the configured SKU) when it does not.
The web app's container is the service's packaged image, ``linuxFxVersion =
DOCKER|<registry>/<image>:<tag>``, pulled with the ``DOCKER_REGISTRY_SERVER_URL`` /
``_USERNAME`` / ``_PASSWORD`` app settings (the workspace registry's credentials), and
``WEBSITES_PORT=5001``, the scoring runtime's port — the settings the documents' ``Model.package``
+ web app flow sets by hand.

App Service has no front door that checks keys, so with ``auth_enabled`` the keys are an app
setting, ``AML_SCORING_KEYS``, which the scoring runtime in the container checks; the app
settings are where another process finds them again (``get_keys``).

An update never fails a request of a client that keeps calling: the new image starts in the
``staging`` slot, is called until it answers, and is then swapped with production; the old
version stays in ``staging`` (swap again to roll back). A plan below Standard has no slots, so
there the web app is updated in place and restarts (said in the progress output).
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable

import attrs
import requests

from aml_core.errors import AuthError, InvalidConfig, NotFound, ProvisioningFailed
from aml_core.records import AuthRequest, AuthResult, DeploymentSpec, ServiceRecord, utcnow
from aml_core.workspace import Workspace

from aml_azure_common.webapps import read_log_stream
from aml_provider_appservice.config import KIND, SLOT_TIERS, AppServiceDeploymentConfiguration

#: the port the scoring runtime serves on inside the image (azureml's convention)
SCORING_PORT = 5001
STAGING = "staging"
SITE_KIND = "app,linux,container"
#: seconds a new container gets to answer (init() loads the model)
READY_TIMEOUT = float(os.environ.get("AML_APPSERVICE_READY_TIMEOUT", "300"))
_POLL = 0.1
_SITE_CHECK_EVERY = 1.0
KEYS_SETTING = "AML_SCORING_KEYS"
#: tag of the plans this provider created: one goes when its last web app is deleted
MANAGED_TAG = "aml.managed"


def _profile():
    from aml_core.profiles import CloudProfile

    return CloudProfile.load()


def _client(profile=None):
    from azure.mgmt.web import WebSiteManagementClient

    from aml_azure_common import management_client

    return management_client(WebSiteManagementClient, profile)


def _config_of(spec: DeploymentSpec) -> AppServiceDeploymentConfiguration:
    config = spec.deployment_config
    if not isinstance(config, AppServiceDeploymentConfiguration):
        raise InvalidConfig(f"App Service deployments need AppServiceWebservice.deploy_configuration(...), got "
                            f"{type(config).__name__}.")
    return config


def _ca_bundle(profile) -> str | None:
    return os.path.expanduser(profile.ca_bundle) if profile.ca_bundle else None


# -- the plan and the web app's definition ------------------------------------------------------


def ensure_plan(client: Any, resource_group: str, config: AppServiceDeploymentConfiguration, location: str,
                progress: Callable[[str], None]) -> tuple[Any, bool]:
    """The plan named in ``config``, created as a Linux plan when missing; ``(plan, created)``."""
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
            raise InvalidConfig(f"App Service plan {name!r} is a Windows plan; a container web app needs a Linux "
                                f"plan. Pass another plan_name (a new one is created as Linux).")
        progress(f"Using App Service plan {name!r} ({plan.sku.name})")
        return plan, False
    what = f"Creating Linux App Service plan {name!r} ({config.effective_sku}) in resource group {resource_group!r}"
    with arm_errors(what, fix="Check plan_name and sku."):
        plan = wait_for(client.app_service_plans.begin_create_or_update(resource_group, name, {
            "location": location, "kind": "linux", "sku": {"name": config.effective_sku},
            "tags": {MANAGED_TAG: "true"}, "properties": {"reserved": True}}), what=what, progress=progress)
    return plan, True


def app_settings(registry: Any, config: AppServiceDeploymentConfiguration, keys: dict[str, str] | None) -> dict[str, str]:
    """The web app's settings: the registry to pull from, the container's port, key auth."""
    settings = {"WEBSITES_PORT": str(SCORING_PORT), "WEBSITES_ENABLE_APP_SERVICE_STORAGE": "false",
                "AML_APP_INSIGHTS_ENABLED": str(bool(config.enable_app_insights)).lower()}
    if registry is not None:
        settings["DOCKER_REGISTRY_SERVER_URL"] = f"https://{registry.address}"
        if registry.username:
            settings["DOCKER_REGISTRY_SERVER_USERNAME"] = registry.username
            settings["DOCKER_REGISTRY_SERVER_PASSWORD"] = registry.password
    if keys:
        settings[KEYS_SETTING] = f"{keys['primary']},{keys['secondary']}"
    return settings


def site_body(plan_id: str, image: str, settings: dict[str, str], location: str,
              config: AppServiceDeploymentConfiguration, service: str) -> dict[str, Any]:
    """The web app (or slot) definition, REST shape, as the SDK accepts it."""
    return {"location": location, "kind": SITE_KIND, "tags": {**(config.tags or {}), "aml.service": service},
            "properties": {"serverFarmId": plan_id, "httpsOnly": True, "reserved": True,
                           "siteConfig": {"linuxFxVersion": f"DOCKER|{image}", "alwaysOn": True,
                                          "appSettings": [{"name": k, "value": v} for k, v in settings.items()]}}}


# -- waiting and reading ------------------------------------------------------------------------


def _get(client: Any, resource_group: str, app: str, slot: str | None) -> Any:
    return client.web_apps.get(resource_group, app) if slot is None else \
        client.web_apps.get_slot(resource_group, app, slot)


def _wait_serving(client: Any, resource_group: str, app: str, slot: str | None, verify: Any,
                  progress: Callable[[str], None]) -> Any:
    """Call the web app (or slot) until its container answers; fail as soon as App Service
    shows it cannot start, with the log stream's lines saying why."""
    site = _get(client, resource_group, app, slot)
    health = f"https://{site.default_host_name}/"
    progress(f"Waiting for the scoring server at {health}")
    deadline = time.monotonic() + READY_TIMEOUT
    next_check = time.monotonic() + _SITE_CHECK_EVERY
    while time.monotonic() < deadline:
        try:
            if requests.get(health, timeout=5, verify=verify).status_code == 200:
                return site
        except requests.RequestException:
            pass
        if site.availability_state == "Limited" or time.monotonic() >= next_check:
            site = _get(client, resource_group, app, slot)
            if site.availability_state == "Limited":
                log = read_log_stream(client, resource_group, app, verify, slot=slot)
                reasons = [line for line in log.splitlines() if "ERROR" in line] or log.splitlines()[-5:]
                raise ProvisioningFailed(f"Web app {app!r}{' slot ' + slot if slot else ''} cannot start its "
                                         f"container: {' '.join(reasons)[-1500:]} Call service.get_logs() for more.")
            next_check = time.monotonic() + _SITE_CHECK_EVERY
        time.sleep(_POLL)
    raise ProvisioningFailed(f"Web app {app!r} did not answer at {health} within {READY_TIMEOUT:.0f} s; call "
                             f"service.get_logs() to see why (AML_APPSERVICE_READY_TIMEOUT sets the limit).")


def _keys_for(config: AppServiceDeploymentConfiguration, current: dict[str, str]) -> dict[str, str] | None:
    from aml_azure_common import new_service_key

    if not config.effective_auth_enabled:
        return None
    old = current.get(KEYS_SETTING, "").split(",")
    old_primary, old_secondary = (old + ["", ""])[:2]
    return {"primary": config.primary_key or old_primary or new_service_key(),
            "secondary": config.secondary_key or old_secondary or new_service_key()}


def _current_settings(client: Any, resource_group: str, app: str) -> dict[str, str]:
    from azure.core.exceptions import ResourceNotFoundError

    try:
        return dict(client.web_apps.list_application_settings(resource_group, app).properties or {})
    except ResourceNotFoundError:
        return {}


# -- the hooks' work ----------------------------------------------------------------------------


def deploy(workspace: Workspace, spec: DeploymentSpec, *, existing: ServiceRecord | None = None) -> ServiceRecord:
    from aml_core.images import deployment_image

    from aml_azure_common import arm_errors, wait_for

    progress = spec.progress or (lambda text: None)
    config = _config_of(spec)
    if not workspace.container_registry.startswith("profile:"):
        raise InvalidConfig(
            f"App Service pulls the web app's image from a registry it can reach, but workspace {workspace.name!r} "
            f"keeps images in its embedded store. Create it with Workspace.create(path, "
            f"container_registry='profile:emulator') (or your Azure profile).")
    profile = _profile()
    client = _client(profile)
    resource_group = profile.resource_group
    location = config.location or profile.extra.get("location") or "westus"
    app = existing.details["app"] if existing is not None else config.app_name_for(spec.name)
    verify = profile.connection_verify
    image, registry = deployment_image(workspace, spec, progress)
    plan, _created = ensure_plan(client, resource_group, config, location, progress)
    keys = _keys_for(config, _current_settings(client, resource_group, app) if existing is not None else {})
    body = site_body(plan.id, image, app_settings(registry, config, keys), location, config, spec.name)
    record = ServiceRecord(name=spec.name, kind=KIND, state="Transitioning", models=tuple(m.id for m in spec.models),
                           auth_mode="key" if keys else "none", tags=dict(config.tags or {}),
                           properties=dict(config.properties or {}),
                           details={"resource_group": resource_group, "app": app, "plan": plan.name,
                                    "image": image, "ca_bundle": _ca_bundle(profile)})
    try:
        if existing is None:
            what = f"Creating web app {app!r} on plan {plan.name!r}"
            with arm_errors(what):
                wait_for(client.web_apps.begin_create_or_update(resource_group, app, body), what=what,
                         progress=progress)
            site = _wait_serving(client, resource_group, app, None, verify, progress)
        elif plan.sku.name[:1].upper() in SLOT_TIERS:
            site = _swap_in(client, resource_group, app, body, verify, progress)
        else:
            progress(f"Plan {plan.name!r} ({plan.sku.name}) has no deployment slots: updating web app {app!r} in "
                     f"place, it restarts (use S1 or above for updates without downtime)")
            what = f"Updating web app {app!r}"
            with arm_errors(what):
                wait_for(client.web_apps.begin_create_or_update(resource_group, app, body), what=what,
                         progress=progress)
            site = _wait_serving(client, resource_group, app, None, verify, progress)
    except ProvisioningFailed as exc:
        if existing is not None:
            raise ProvisioningFailed(f"{exc} The service keeps serving its previous version.") from exc
        exc.record = attrs.evolve(record, state="Failed", error=str(exc))
        raise
    created = existing.created_time if existing else record.created_time
    return attrs.evolve(record, state="Healthy", scoring_uri=f"https://{site.default_host_name}/score",
                        swagger_uri=f"https://{site.default_host_name}/swagger.json",
                        details={**record.details, "default_host_name": site.default_host_name},
                        created_time=created, updated_time=utcnow())


def _swap_in(client: Any, resource_group: str, app: str, body: dict[str, Any], verify: Any,
             progress: Callable[[str], None]) -> Any:
    """Start the new version in the staging slot, call it until it answers, then swap it
    into production: a client calling the web app all along never sees a failure."""
    from aml_azure_common import arm_errors, wait_for

    what = f"Starting the new version in slot {STAGING!r} of web app {app!r}"
    with arm_errors(what):
        wait_for(client.web_apps.begin_create_or_update_slot(resource_group, app, STAGING, body), what=what,
                 progress=progress)
    _wait_serving(client, resource_group, app, STAGING, verify, progress)
    what = f"Swapping slot {STAGING!r} into production of web app {app!r}"
    with arm_errors(what):
        wait_for(client.web_apps.begin_swap_slot_with_production(
            resource_group, app, {"targetSlot": STAGING, "preserveVnet": True}), what=what, progress=progress)
    return client.web_apps.get(resource_group, app)


def status(workspace: Workspace, service: ServiceRecord) -> ServiceRecord:
    """Healthy when the web app runs and its container serves; Transitioning while ARM works
    on it; Unhealthy when it is stopped or its container stopped serving; Failed when its
    container never started (pull refused, image missing) or the web app is gone."""
    from azure.core.exceptions import ResourceNotFoundError

    from aml_azure_common import arm_errors

    details = service.details
    try:
        with arm_errors(f"Reading web app {details['app']!r}"):
            site = _client().web_apps.get(details["resource_group"], details["app"])
    except NotFound as exc:
        if isinstance(exc.__cause__, ResourceNotFoundError):
            return attrs.evolve(service, state="Failed", error="its web app is gone from Azure; deploy it again")
        raise
    # the SDK's Site model has no field for it; the resource's properties carry it
    provisioning = (site.as_dict().get("properties") or {}).get("provisioningState") or "Succeeded"
    if provisioning in ("InProgress", "Creating", "Updating"):
        state, error = "Transitioning", None
    elif provisioning == "Failed":
        state, error = "Failed", "the web app failed to provision; see get_logs()"
    elif site.state != "Running":
        state, error = "Unhealthy", f"the web app is {site.state} (start it: az webapp start)"
    elif site.availability_state == "Limited":
        never_served = service.state in ("Transitioning", "Failed")
        state = "Failed" if never_served else "Unhealthy"
        error = "the web app's container is not serving; see get_logs()"
    else:
        state, error = "Healthy", None
    return attrs.evolve(service, state=state, error=error,
                        scoring_uri=f"https://{site.default_host_name}/score",
                        swagger_uri=f"https://{site.default_host_name}/swagger.json",
                        details={**details, "default_host_name": site.default_host_name})


def logs(service: ServiceRecord, num_lines: int) -> str:
    profile = _profile()
    details = service.details
    text = read_log_stream(_client(profile), details["resource_group"], details["app"],
                           profile.connection_verify)
    return "".join(text.splitlines(keepends=True)[-num_lines:]) if num_lines else ""


def delete(workspace: Workspace, service: ServiceRecord) -> bool:
    """Delete the web app (and its slots); the plan too when this provider created it (its
    ``aml.managed`` tag) and no other web app uses it (``delete_empty_server_farm``)."""
    from azure.core.exceptions import ResourceNotFoundError

    from aml_azure_common import arm_errors

    details = service.details
    if not details.get("app"):
        return False
    client = _client()
    try:
        plan = client.app_service_plans.get(details["resource_group"], details["plan"])
        managed = (plan.tags or {}).get(MANAGED_TAG) == "true"
    except ResourceNotFoundError:
        managed = False
    try:
        with arm_errors(f"Deleting web app {details['app']!r}"):
            client.web_apps.delete(details["resource_group"], details["app"], delete_empty_server_farm=managed)
    except NotFound as exc:
        if isinstance(exc.__cause__, ResourceNotFoundError):
            return False
        raise
    return True


def auth(workspace: Workspace, service: ServiceRecord, request: AuthRequest) -> AuthResult:
    from aml_azure_common import arm_errors, new_service_key

    details = service.details
    client = _client()
    settings = _current_settings(client, details["resource_group"], details["app"])
    if service.auth_mode != "key" or not settings.get(KEYS_SETTING):
        raise AuthError(f"Key auth is not enabled for service {service.name!r}; update it with auth_enabled=True "
                        f"to get keys.")
    primary, secondary = (settings[KEYS_SETTING].split(",") + [""])[:2]
    keys = {"primary": primary, "secondary": secondary}
    if request.action == "regen_key":
        keys[request.key_type.lower()] = request.set_key or new_service_key()
        settings[KEYS_SETTING] = f"{keys['primary']},{keys['secondary']}"
        what = f"Updating the keys of web app {details['app']!r}"
        with arm_errors(what):
            client.web_apps.update_application_settings(details["resource_group"], details["app"],
                                                        {"properties": settings})
        # the old key must stop working before this returns: App Service restarts the container
        profile = _profile()
        _wait_key_applied(client, details, keys["primary"], profile.connection_verify)
    return AuthResult(primary_key=keys["primary"], secondary_key=keys["secondary"])


def _wait_key_applied(client: Any, details: dict[str, Any], key: str, verify: Any) -> None:
    site = client.web_apps.get(details["resource_group"], details["app"])
    url = f"https://{site.default_host_name}/score"
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        try:
            answer = requests.post(url, data="{}", headers={"Authorization": f"Bearer {key}",
                                                            "Content-Type": "application/json"},
                                   timeout=5, verify=verify)
            # past the key check (even a 500 from run() on this empty body); 502/503: the
            # restarted container is not serving yet
            if answer.status_code not in (401, 502, 503):
                return
        except requests.RequestException:
            pass
        time.sleep(_POLL)
    raise ProvisioningFailed(f"Web app {details['app']!r} did not take its new key within {READY_TIMEOUT:.0f} s.")
