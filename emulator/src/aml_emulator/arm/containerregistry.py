"""``Microsoft.ContainerRegistry``: registries, their admin credentials and rotation.

Responses follow azure-mgmt-containerregistry 15.0.0's models (``Registry``,
``RegistryListCredentialsResult``); the login server is the emulated registry's
``127.0.0.1:PORT`` instead of ``<name>.azurecr.io``.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool

from aml_emulator.arm import exceptions
from aml_emulator.arm.models import RegistryResource
from aml_emulator.arm.router import COLLECTION, ITEM, ApiVersionRange, ArmRequest, ResourceProvider

NAMESPACE = "Microsoft.ContainerRegistry"
REGISTRIES = "registries"
RESOURCE_TYPE = f"{NAMESPACE}/{REGISTRIES}"
#: The registry API has kept the shapes served here since 2019-05-01; 2025-11-01 is the
#: default of azure-mgmt-containerregistry 15.0.0.
API_VERSIONS = ApiVersionRange("2019-05-01", "2025-11-01")
PASSWORD_NAMES = ("password", "password2")

PROVIDER = ResourceProvider(NAMESPACE, API_VERSIONS)


def registry_json(subscription_id: str, resource_group: str, registry: RegistryResource) -> dict[str, Any]:
    """A registry in the wire shape of the ``Registry`` model (no credentials in it)."""
    return {
        "id": (
            f"/subscriptions/{subscription_id}/resourceGroups/{resource_group}"
            f"/providers/{RESOURCE_TYPE}/{registry.name}"
        ),
        "name": registry.name,
        "type": RESOURCE_TYPE,
        "location": registry.location,
        "tags": dict(registry.tags),
        "sku": {"name": registry.sku, "tier": registry.sku},
        "properties": {
            "loginServer": registry.service.login_server,
            "creationDate": registry.created.isoformat().replace("+00:00", "Z"),
            "provisioningState": "Succeeded",
            "adminUserEnabled": True,
            "policies": {
                "quarantinePolicy": {"status": "disabled"},
                "trustPolicy": {"type": "Notary", "status": "disabled"},
                "retentionPolicy": {"days": 7, "status": "disabled"},
                "exportPolicy": {"status": "enabled"},
            },
            "encryption": {"status": "disabled"},
            "dataEndpointEnabled": False,
            "dataEndpointHostNames": [],
            "privateEndpointConnections": [],
            "publicNetworkAccess": "Enabled",
            "networkRuleBypassOptions": "AzureServices",
            "zoneRedundancy": "Disabled",
            "anonymousPullEnabled": False,
        },
    }


def credentials_json(registry: RegistryResource) -> dict[str, Any]:
    """``RegistryListCredentialsResult``: the admin user and both passwords."""
    credentials = registry.service.credentials
    passwords = credentials.passwords
    return {
        "username": credentials.username,
        "passwords": [{"name": name, "value": passwords[name]} for name in PASSWORD_NAMES],
    }


def _registry(request: ArmRequest) -> tuple[str, RegistryResource]:
    path = request.path
    assert path.resource_group is not None and path.name is not None
    for _sub, group, registry in request.backend.resources(path.subscription_id, path.resource_group, REGISTRIES):
        if registry.name.lower() == path.name.lower():
            return group.name, registry
    raise exceptions.resource_not_found(RESOURCE_TYPE, path.name, path.resource_group)


@PROVIDER.operation("GET", REGISTRIES, ITEM, summary="registries.get")
async def get_registry(request: ArmRequest) -> dict[str, Any]:
    group, registry = _registry(request)
    return registry_json(request.path.subscription_id, group, registry)


@PROVIDER.operation("GET", REGISTRIES, COLLECTION,
                    summary="registries.list, registries.list_by_resource_group")
async def list_registries(request: ArmRequest) -> dict[str, Any]:
    path = request.path
    found = request.backend.resources(path.subscription_id, path.resource_group, REGISTRIES)
    return {"value": [registry_json(path.subscription_id, group.name, registry) for _s, group, registry in found]}


@PROVIDER.operation("POST", REGISTRIES, "listCredentials", summary="registries.list_credentials")
async def list_credentials(request: ArmRequest) -> dict[str, Any]:
    _group, registry = _registry(request)
    return credentials_json(registry)


@PROVIDER.operation("POST", REGISTRIES, "regenerateCredential", summary="registries.regenerate_credential")
async def regenerate_credential(request: ArmRequest) -> dict[str, Any]:
    _group, registry = _registry(request)
    body = request.json()
    if not isinstance(body, dict) or "name" not in body:
        raise exceptions.invalid_request_content("the body must be a JSON object with 'name'")
    name = body["name"]
    if not isinstance(name, str) or name not in PASSWORD_NAMES:
        raise exceptions.invalid_parameter("name", name, PASSWORD_NAMES)
    # The registry persists the new password; keep file I/O off the event loop.
    await run_in_threadpool(registry.service.credentials.regenerate, name)
    return credentials_json(registry)
