"""``Microsoft.Resources/resourceGroups``: create, read, list, check and delete resource groups.

Resource groups are addressed outside the ``/providers/`` grammar
(``/subscriptions/{sub}/resourcegroups/{name}``); :func:`aml_emulator.arm.router.parse_path`
maps those URLs onto this provider. The emulator's own group (holding its registry) is
made at start-up, as before; others are made here by the client, so a sample that names its
own group (``myresourcegroup``) creates it first, as it would in Azure.

Delete is a long-running operation on the emulator's operation tracker (202 with
``Azure-AsyncOperation`` and ``Location``; scriptable as every other ARM operation) that
removes the group and every resource in it, stopping what those resources run. Wire shapes follow azure-mgmt-resource's
``ResourceGroup`` model and ARM's messages.
"""

from __future__ import annotations

from typing import Any

from aml_emulator.arm import exceptions
from aml_emulator.arm.models import ResourceGroup
from aml_emulator.arm.operations import DELETE, register_status_routes
from aml_emulator.arm.router import COLLECTION, ITEM, ApiVersionRange, ArmRequest, ArmResponse, ResourceProvider

NAMESPACE = "Microsoft.Resources"
RESOURCE_GROUPS = "resourceGroups"
#: 2016-02-01 is the oldest version azure-mgmt-resource ships; 2025-04-01 is the newest of 26.0.0
API_VERSIONS = ApiVersionRange("2016-02-01", "2025-04-01")

PROVIDER = ResourceProvider(NAMESPACE, API_VERSIONS)


def _group_id(subscription_id: str, name: str) -> str:
    return f"/subscriptions/{subscription_id}/resourceGroups/{name}"


def group_json(subscription_id: str, group: ResourceGroup) -> dict[str, Any]:
    return {
        "id": _group_id(subscription_id, group.name),
        "name": group.name,
        "type": f"{NAMESPACE}/{RESOURCE_GROUPS}",
        "location": group.location,
        "tags": dict(getattr(group, "tags", None) or {}),
        "properties": {"provisioningState": "Succeeded"},
    }


def _existing(request: ArmRequest) -> ResourceGroup:
    # a delete in flight ends here if its script lets it, so a read sees the group gone
    request.backend.operations.settle_resource(_group_id(request.path.subscription_id, request.path.name or ""))
    subscription = request.backend.subscription(request.path.subscription_id)
    group = subscription.group(request.path.name or "")
    if group is None:
        raise exceptions.resource_group_not_found(request.path.name or "")
    return group


@PROVIDER.operation("PUT", RESOURCE_GROUPS, ITEM, summary="resource_groups.create_or_update")
async def create_or_update(request: ArmRequest) -> ArmResponse:
    body = request.json()
    if not isinstance(body, dict):
        raise exceptions.invalid_request_content("the body must be a JSON object")
    location = body.get("location")
    if not isinstance(location, str) or not location:
        raise exceptions.ArmError(400, "LocationRequired", "The location property is required for this definition.")
    tags = body.get("tags") or {}
    if not isinstance(tags, dict):
        raise exceptions.invalid_request_content("'tags' must be a JSON object")
    name = request.path.name or ""
    if name.endswith("."):
        raise exceptions.ArmError(400, "InvalidResourceGroup",
                                  f"The provided resource group name '{name}' has these invalid characters: '.'. "
                                  f"The name can only be a letter, digit, '-', '.', '(', ')' or '_', and it "
                                  f"cannot end with '.'.")
    subscription = request.backend.subscription(request.path.subscription_id)
    existing = subscription.group(name)
    if existing is not None and existing.location.replace(" ", "").lower() != location.replace(" ", "").lower():
        raise exceptions.ArmError(409, "InvalidResourceGroupLocation",
                                  f"Invalid resource group location '{location}'. The Resource group already exists "
                                  f"in location '{existing.location}'.")
    group = request.backend.ensure_group(request.path.subscription_id, name, location)
    group.tags = {str(k): str(v) for k, v in tags.items()}
    return ArmResponse(group_json(subscription.subscription_id, group), status=200 if existing else 201)


@PROVIDER.operation("PATCH", RESOURCE_GROUPS, ITEM, summary="resource_groups.update")
async def update_group(request: ArmRequest) -> dict[str, Any]:
    group = _existing(request)
    body = request.json()
    if not isinstance(body, dict):
        raise exceptions.invalid_request_content("the body must be a JSON object")
    tags = body.get("tags")
    if tags is not None:
        if not isinstance(tags, dict):
            raise exceptions.invalid_request_content("'tags' must be a JSON object")
        group.tags = {str(k): str(v) for k, v in tags.items()}
    return group_json(request.path.subscription_id, group)


@PROVIDER.operation("GET", RESOURCE_GROUPS, ITEM, summary="resource_groups.get")
async def get_group(request: ArmRequest) -> dict[str, Any]:
    return group_json(request.path.subscription_id, _existing(request))


@PROVIDER.operation("HEAD", RESOURCE_GROUPS, ITEM, summary="resource_groups.check_existence")
async def check_existence(request: ArmRequest) -> ArmResponse:
    request.backend.operations.settle_resource(_group_id(request.path.subscription_id, request.path.name or ""))
    subscription = request.backend.subscription(request.path.subscription_id)
    found = subscription.group(request.path.name or "") is not None
    return ArmResponse(None, status=204 if found else 404)


@PROVIDER.operation("GET", RESOURCE_GROUPS, COLLECTION, summary="resource_groups.list")
async def list_groups(request: ArmRequest) -> dict[str, Any]:
    subscription = request.backend.subscription(request.path.subscription_id)
    groups = sorted(subscription.resource_groups.values(), key=lambda g: g.name.lower())
    return {"value": [group_json(subscription.subscription_id, g) for g in groups]}


@PROVIDER.operation("DELETE", RESOURCE_GROUPS, ITEM, summary="resource_groups.begin_delete")
async def delete_group(request: ArmRequest) -> ArmResponse:
    group = _existing(request)
    subscription_id = request.path.subscription_id
    backend = request.backend

    def finished(error: exceptions.ArmError | None) -> None:
        if error is None:
            backend.remove_group(subscription_id, group.name)  # with every resource in it

    operation = backend.operations.begin(
        request, resource_type=f"{NAMESPACE}/{RESOURCE_GROUPS}", resource_id=_group_id(subscription_id, group.name),
        location=group.location, operation=DELETE, on_finish=finished)
    return backend.operations.accepted(request, operation, None, status=202)


register_status_routes(PROVIDER, summary="resource_groups.begin_delete")
