"""``Microsoft.Devices/IotHubs``: IoT hubs created through ARM, backed by the IoT hub service.

Creating a hub starts a real emulated hub (:mod:`aml_emulator.iothub`): its
``properties.hostName`` is the address its REST and MQTT endpoints listen on, and
``listkeys`` / ``IotHubKeys/{name}/listkeys`` hand out the shared access policies the hub
checks. Create and delete are long-running operations, answered as azure-mgmt-iothub 4.0.0
expects (create 200/201, delete 200/202/204/404). Hubs are kept in the ARM state directory;
the hub's own data (identities, twins, messages) lives in the IoT hub service's.
"""

from __future__ import annotations

from typing import Any

import attrs

from aml_emulator.arm import exceptions
from aml_emulator.arm.operations import CREATE, DELETE, UPDATE, register_status_routes
from aml_emulator.arm.router import COLLECTION, ITEM, ApiVersionRange, ArmRequest, ArmResponse, ResourceProvider

NAMESPACE = "Microsoft.Devices"
IOT_HUBS = "IotHubs"
RESOURCE_TYPE = f"{NAMESPACE}/{IOT_HUBS}"
#: 2018-04-01 is the oldest version with these shapes; 2023-06-30 is azure-mgmt-iothub 4.0.0's default
API_VERSIONS = ApiVersionRange("2018-04-01", "2023-06-30")
SKUS = {"F1": "Free", "B1": "Basic", "B2": "Basic", "B3": "Basic", "S1": "Standard", "S2": "Standard", "S3": "Standard"}

PROVIDER = ResourceProvider(NAMESPACE, API_VERSIONS)


@attrs.define
class IotHubResource:
    name: str
    location: str
    sku: str = "S1"
    capacity: int = 1
    tags: dict[str, str] = attrs.field(factory=dict)
    provisioning_state: str = "Accepted"

    def to_state(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "IotHubResource":
        fields = dict(state)
        fields["provisioning_state"] = "Failed" if state.get("provisioning_state") == "Failed" else "Succeeded"
        return cls(**fields)


PROVIDER.persist(IOT_HUBS, IotHubResource.from_state)


def _service(request: ArmRequest) -> Any:
    service = request.backend.services.get("iothub")
    if service is None:
        raise exceptions.not_implemented(f"{RESOURCE_TYPE}/write without the iothub service (start it)")
    return service


def _resource_id(subscription_id: str, group: str, name: str) -> str:
    return f"/subscriptions/{subscription_id}/resourceGroups/{group}/providers/{RESOURCE_TYPE}/{name}"


def hub_json(request: ArmRequest, group: str, resource: IotHubResource) -> dict[str, Any]:
    service = request.backend.services.get("iothub")
    running = service.hubs.get(resource.name.lower()) if service is not None else None
    host = running.hostname if running is not None else ""
    return {
        "id": _resource_id(request.path.subscription_id, group, resource.name),
        "name": resource.name, "type": RESOURCE_TYPE, "location": resource.location,
        "tags": dict(resource.tags), "etag": "AAAAAAFD6M4=",
        "sku": {"name": resource.sku, "tier": SKUS.get(resource.sku, "Standard"), "capacity": resource.capacity},
        "properties": {
            "provisioningState": resource.provisioning_state, "state": "Active" if running else "Unknown",
            "hostName": host,
            "eventHubEndpoints": {"events": {"retentionTimeInDays": 1, "partitionCount": 2,
                                             "partitionIds": ["0", "1"], "path": resource.name,
                                             "endpoint": f"sb://{host}/"}},
            "features": "None", "enableFileUploadNotifications": False,
        },
    }


def _find(request: ArmRequest) -> tuple[str, IotHubResource] | None:
    path = request.path
    for _sub, group, resource in request.backend.resources(path.subscription_id, path.resource_group, IOT_HUBS):
        if resource.name.lower() == (path.names[0] if path.names else "").lower():
            return group.name, resource
    return None


def _get(request: ArmRequest) -> tuple[str, IotHubResource]:
    found = _find(request)
    if found is None:
        raise exceptions.resource_not_found(RESOURCE_TYPE, request.path.names[0] if request.path.names else "",
                                            request.path.resource_group or "")
    return found


@PROVIDER.operation("PUT", IOT_HUBS, ITEM, summary="iot_hub_resource.begin_create_or_update")
async def create_or_update(request: ArmRequest) -> ArmResponse:
    body = request.json()
    if not isinstance(body, dict):
        raise exceptions.invalid_request_content("the body must be a JSON object")
    location = body.get("location")
    if not isinstance(location, str) or not location:
        raise exceptions.ArmError(400, "LocationRequired", "The location property is required for this definition.")
    sku = body.get("sku") or {}
    if not isinstance(sku, dict) or sku.get("name") not in SKUS:
        raise exceptions.ArmError(400, "InvalidParameter",
                                  f"The sku name {sku.get('name') if isinstance(sku, dict) else sku!r} is invalid; "
                                  f"use one of {', '.join(SKUS)}.")
    service = _service(request)
    path = request.path
    existing = _find(request)
    group = existing[0] if existing else (path.resource_group or "")
    name = existing[1].name if existing else (path.name or "")
    from aml_emulator.iothub import HubError

    try:
        service.create_hub(name)
    except HubError as exc:
        raise exceptions.ArmError(exc.status if exc.status < 500 else 500, exc.code, exc.message) from None
    resource = IotHubResource(name=name, location=location, sku=sku["name"], capacity=int(sku.get("capacity") or 1),
                              tags={str(k): str(v) for k, v in (body.get("tags") or {}).items()},
                              provisioning_state="Updating" if existing else "Accepted")
    request.backend.add_resource(path.subscription_id, group, IOT_HUBS, resource)

    def finished(error: exceptions.ArmError | None) -> None:
        resource.provisioning_state = "Failed" if error else "Succeeded"
        request.backend.save()

    operation = request.backend.operations.begin(
        request, resource_type=RESOURCE_TYPE, resource_id=_resource_id(path.subscription_id, group, name),
        location=location, operation=UPDATE if existing else CREATE, on_finish=finished,
        result=lambda: hub_json(request, group, resource))
    return request.backend.operations.accepted(request, operation, hub_json(request, group, resource),
                                               status=200 if existing else 201)


@PROVIDER.operation("GET", IOT_HUBS, ITEM, summary="iot_hub_resource.get")
async def get_hub(request: ArmRequest) -> dict[str, Any]:
    group, resource = _get(request)
    request.backend.operations.settle_resource(_resource_id(request.path.subscription_id, group, resource.name))
    return hub_json(request, group, resource)


@PROVIDER.operation("GET", IOT_HUBS, COLLECTION, summary="iot_hub_resource.list_by_subscription, iot_hub_resource.list_by_resource_group")
async def list_hubs(request: ArmRequest) -> dict[str, Any]:
    path = request.path
    found = request.backend.resources(path.subscription_id, path.resource_group, IOT_HUBS)
    return {"value": [hub_json(request, group.name, resource) for _s, group, resource in found]}


@PROVIDER.operation("DELETE", IOT_HUBS, ITEM, summary="iot_hub_resource.begin_delete")
async def delete_hub(request: ArmRequest) -> ArmResponse:
    found = _find(request)
    if found is None:
        return ArmResponse(None, status=204)
    group, resource = found
    path = request.path
    resource.provisioning_state = "Deleting"

    def finished(error: exceptions.ArmError | None) -> None:
        if error is None:
            _service(request).delete_hub(resource.name)
            request.backend.remove_resource(path.subscription_id, group, IOT_HUBS, resource.name)
        else:
            resource.provisioning_state = "Failed"
            request.backend.save()

    operation = request.backend.operations.begin(
        request, resource_type=RESOURCE_TYPE, resource_id=_resource_id(path.subscription_id, group, resource.name),
        location=resource.location, operation=DELETE, on_finish=finished)
    return request.backend.operations.accepted(request, operation, None, status=202)


def _rule(policy: Any) -> dict[str, Any]:
    return {"keyName": policy.name, "primaryKey": policy.primary_key, "secondaryKey": policy.secondary_key,
            "rights": policy.rights}


@PROVIDER.operation("POST", IOT_HUBS, "listkeys", summary="iot_hub_resource.list_keys")
async def list_keys(request: ArmRequest) -> dict[str, Any]:
    _group, resource = _get(request)
    hub = _service(request).hub(resource.name).hub
    return {"value": [_rule(p) for p in hub.policies.values()], "nextLink": None}


@PROVIDER.operation("POST", f"{IOT_HUBS}/IotHubKeys", "listkeys", summary="iot_hub_resource.get_keys_for_key_name")
async def key_for_name(request: ArmRequest) -> dict[str, Any]:
    _group, resource = _get(request)
    hub = _service(request).hub(resource.name).hub
    key_name = request.path.names[-1]
    policy = hub.policies.get(key_name)
    if policy is None:
        raise exceptions.ArmError(404, "KeyNameNotFound",
                                  f"The shared access policy '{key_name}' does not exist on IoT hub '{resource.name}'.")
    return _rule(policy)


register_status_routes(PROVIDER, summary="iot_hub_resource.begin_create_or_update, iot_hub_resource.begin_delete")
