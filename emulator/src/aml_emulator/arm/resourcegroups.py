"""``Microsoft.Resources/resourceGroups``: create, read, list, check and delete resource groups.

Resource groups are addressed outside the ``/providers/`` grammar
(``/subscriptions/{sub}/resourcegroups/{name}``); :func:`aml_emulator.arm.router.parse_path`
maps those URLs onto this provider. The emulator's own group (holding its registry) is
made at start-up, as before; others are made here by the client, so a sample that names its
own group (``myresourcegroup``) creates it first, as it would in Azure.

Delete is a long-running operation (202 with ``Azure-AsyncOperation`` and ``Location``, a
status document under ``/subscriptions/{sub}/providers/Microsoft.Resources/operationresults/{id}``)
that removes the group and every resource in it. Wire shapes follow azure-mgmt-resource's
``ResourceGroup`` model and ARM's messages.
"""

from __future__ import annotations

import datetime as _dt
import uuid
from typing import Any

import attrs

from aml_emulator.arm import exceptions
from aml_emulator.arm.models import ResourceGroup
from aml_emulator.arm.router import COLLECTION, ITEM, ApiVersionRange, ArmRequest, ArmResponse, ResourceProvider

NAMESPACE = "Microsoft.Resources"
RESOURCE_GROUPS = "resourceGroups"
OPERATION_RESULTS = "operationresults"
#: 2016-02-01 is the oldest version azure-mgmt-resource ships; 2025-04-01 is the newest of 26.0.0
API_VERSIONS = ApiVersionRange("2016-02-01", "2025-04-01")

PROVIDER = ResourceProvider(NAMESPACE, API_VERSIONS)


@attrs.frozen
class DeleteOperation:
    """A finished resource-group delete (the group is gone when the 202 is sent)."""

    id: str
    start: str

    def status_document(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.id, "status": "Succeeded", "startTime": self.start,
                "endTime": self.start}


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat().replace("+00:00", "Z")


def group_json(subscription_id: str, group: ResourceGroup) -> dict[str, Any]:
    return {
        "id": f"/subscriptions/{subscription_id}/resourceGroups/{group.name}",
        "name": group.name,
        "type": f"{NAMESPACE}/{RESOURCE_GROUPS}",
        "location": group.location,
        "tags": dict(getattr(group, "tags", None) or {}),
        "properties": {"provisioningState": "Succeeded"},
    }


def _existing(request: ArmRequest) -> ResourceGroup:
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
    subscription = request.backend.subscription(request.path.subscription_id)
    subscription.resource_groups.pop(group.name.lower(), None)  # with every resource in it
    operation = DeleteOperation(id=str(uuid.uuid4()), start=_now())
    request.backend.operations[operation.id] = operation
    url = (f"{request.base_url}/subscriptions/{request.path.subscription_id}/providers/{NAMESPACE}/"
           f"{OPERATION_RESULTS}/{operation.id}?api-version={request.api_version}")
    return ArmResponse(None, status=202, headers={"Azure-AsyncOperation": url, "Location": url, "Retry-After": "0"})


@PROVIDER.operation("GET", OPERATION_RESULTS, ITEM, summary="resource_groups.begin_delete")
async def operation_status(request: ArmRequest) -> dict[str, Any]:
    operation = request.backend.operations.get(request.path.name or "")
    if not isinstance(operation, DeleteOperation):
        raise exceptions.ArmError(404, "NotFound", f"Operation '{request.path.name}' was not found.")
    return operation.status_document()
