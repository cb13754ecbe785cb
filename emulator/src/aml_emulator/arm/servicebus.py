"""``Microsoft.ServiceBus``: the namespace and queues of the emulator's Service Bus broker
(:mod:`aml_emulator.servicebus`), for ``azure-mgmt-servicebus``.

As Microsoft's Service Bus emulator, there is one namespace (its quota is 1): the first
``namespaces/{name}`` PUT names it and a second name is refused with the quota. Its queues are
the broker's; a queue PUT creates it there (``maxDeliveryCount``, ``lockDuration``,
``defaultMessageTimeToLive``, ``deadLetteringOnMessageExpiration``) and is at once usable over
AMQP. ``authorizationRules/RootManageSharedAccessKey/listKeys`` gives the connection string
(the emulator form, ``UseDevelopmentEmulator=true``). Shapes follow azure-mgmt-servicebus's
``SBNamespace``, ``SBQueue`` and ``AccessKeys`` models.
"""

from __future__ import annotations

import re
from typing import Any

import attrs

from aml_emulator.arm import exceptions
from aml_emulator.arm.router import COLLECTION, ITEM, ApiVersionRange, ArmRequest, ArmResponse, ResourceProvider

NAMESPACE = "Microsoft.ServiceBus"
NAMESPACES = "namespaces"
NAMESPACE_TYPE = f"{NAMESPACE}/{NAMESPACES}"
QUEUE_TYPE = f"{NAMESPACE_TYPE}/queues"
#: 2017-04-01 is the oldest version with these shapes; 2026-01-01 is azure-mgmt-servicebus 10.0.0's default
API_VERSIONS = ApiVersionRange("2017-04-01", "2026-01-01")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]{4,48}[A-Za-z0-9]$")
_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$")

PROVIDER = ResourceProvider(NAMESPACE, API_VERSIONS)


@attrs.define
class NamespaceResource:
    name: str
    location: str
    sku: dict[str, Any]
    tags: dict[str, str] = attrs.field(factory=dict)

    def to_state(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "NamespaceResource":
        return cls(**state)


PROVIDER.persist(NAMESPACES, NamespaceResource.from_state)


def seconds(value: Any, field: str) -> float:
    """An ISO 8601 duration (``PT1M``, ``P14D``) in seconds."""
    match = _DURATION.match(str(value)) if isinstance(value, str) else None
    if match is None or not any(match.groups()):
        raise exceptions.invalid_parameter_message(f"The value '{str(value)[:40]}' of {field} is not an ISO 8601 "
                                                   f"duration such as PT1M or P14D.")
    days, hours, minutes, secs = (float(g) if g else 0.0 for g in match.groups())
    return days * 86400 + hours * 3600 + minutes * 60 + secs


def duration(value: float) -> str:
    whole = int(value)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"P{days}DT{hours}H{minutes}M{secs}S"


def _broker(request: ArmRequest) -> Any:
    broker = request.backend.services.get("servicebus")
    if broker is None:
        raise exceptions.ArmError(409, "MissingSubscriptionRegistration",
                                  "The emulator's Service Bus service is not running: start the emulator with the "
                                  "servicebus service.")
    return broker


def _namespace_id(request: ArmRequest, group: str, name: str) -> str:
    return f"/subscriptions/{request.path.subscription_id}/resourceGroups/{group}/providers/{NAMESPACE_TYPE}/{name}"


def namespace_json(request: ArmRequest, group: str, namespace: NamespaceResource) -> dict[str, Any]:
    broker = _broker(request)
    return {"id": _namespace_id(request, group, namespace.name), "name": namespace.name, "type": NAMESPACE_TYPE,
            "location": namespace.location, "tags": dict(namespace.tags), "sku": dict(namespace.sku),
            "properties": {"provisioningState": "Succeeded", "status": "Active",
                           "serviceBusEndpoint": f"{broker.url}/", "metricId": namespace.name}}


def _find(request: ArmRequest) -> tuple[str, NamespaceResource]:
    path = request.path
    name = path.names[0]
    for _sub, group, namespace in request.backend.resources(path.subscription_id, path.resource_group, NAMESPACES):
        if namespace.name.lower() == name.lower():
            return group.name, namespace
    raise exceptions.resource_not_found(NAMESPACE_TYPE, name, path.resource_group or "")


@PROVIDER.operation("PUT", NAMESPACES, ITEM, summary="namespaces.begin_create_or_update")
async def create_namespace(request: ArmRequest) -> ArmResponse:
    path = request.path
    name = path.name or ""
    _broker(request)
    if not _NAME.match(name):
        raise exceptions.invalid_parameter_message(f"The namespace name '{name[:60]}' is invalid: 6-50 letters, "
                                                   f"digits and hyphens, starting with a letter.")
    body = request.json()
    if not isinstance(body, dict) or not isinstance(body.get("location"), str):
        raise exceptions.ArmError(400, "LocationRequired", "The location property is required for this definition.")
    others = [n for _s, _g, n in request.backend.resources_of_type(NAMESPACES) if n.name.lower() != name.lower()]
    if others:
        raise exceptions.ArmError(400, "QuotaExceeded", f"The emulator has one Service Bus namespace, "
                                                        f"'{others[0].name}' (Microsoft's emulator's quota is 1).")
    namespace = NamespaceResource(name=name, location=body["location"], sku=dict(body.get("sku") or
                                                                                  {"name": "Standard",
                                                                                   "tier": "Standard"}),
                                  tags={str(k): str(v) for k, v in (body.get("tags") or {}).items()})
    request.backend.add_resource(path.subscription_id, path.resource_group or "", NAMESPACES, namespace)
    return ArmResponse(namespace_json(request, path.resource_group or "", namespace), status=200)


@PROVIDER.operation("GET", NAMESPACES, ITEM, summary="namespaces.get")
async def get_namespace(request: ArmRequest) -> dict[str, Any]:
    group, namespace = _find(request)
    return namespace_json(request, group, namespace)


@PROVIDER.operation("POST", "namespaces/authorizationRules", "listKeys",
                    summary="namespaces.list_keys")
async def list_keys(request: ArmRequest) -> dict[str, Any]:
    _find(request)
    broker = _broker(request)
    rule = request.path.names[-1]
    from aml_emulator.servicebus import KEY_NAME

    if rule.lower() != KEY_NAME.lower():
        raise exceptions.ArmError(404, "NotFound", f"The authorization rule '{rule}' does not exist; the emulator has "
                                                   f"'{KEY_NAME}'.")
    key = broker.connection_string.split("SharedAccessKey=", 1)[1].split(";", 1)[0]
    return {"keyName": KEY_NAME, "primaryKey": key, "secondaryKey": key,
            "primaryConnectionString": broker.connection_string, "secondaryConnectionString": broker.connection_string}


def queue_json(request: ArmRequest, group: str, namespace: NamespaceResource, queue: Any, count: int) -> dict[str, Any]:
    return {"id": f"{_namespace_id(request, group, namespace.name)}/queues/{queue.name}", "name": queue.name,
            "type": QUEUE_TYPE,
            "properties": {"maxDeliveryCount": queue.max_delivery_count, "lockDuration": duration(queue.lock_duration),
                           "defaultMessageTimeToLive": duration(queue.default_ttl),
                           "deadLetteringOnMessageExpiration": queue.dead_lettering_on_expiration,
                           "messageCount": count, "status": "Active", "maxSizeInMegabytes": 100,
                           "requiresSession": False, "enablePartitioning": False}}


@PROVIDER.operation("PUT", "namespaces/queues", ITEM, summary="queues.create_or_update")
async def create_queue(request: ArmRequest) -> dict[str, Any]:
    group, namespace = _find(request)
    broker = _broker(request)
    body = request.json() if request.body else {}
    props = (body or {}).get("properties") or {}
    if props.get("requiresSession") or props.get("enablePartitioning"):
        raise exceptions.ArmError(400, "BadRequest", "Sessions and partitioned queues are not emulated; leave "
                                                     "requiresSession and enablePartitioning false.")
    options: dict[str, Any] = {}
    if props.get("maxDeliveryCount") is not None:
        count = props["maxDeliveryCount"]
        if not isinstance(count, int) or count < 1:
            raise exceptions.invalid_parameter_message("maxDeliveryCount must be a whole number of at least 1.")
        options["max_delivery_count"] = count
    if props.get("lockDuration") is not None:
        options["lock_duration"] = seconds(props["lockDuration"], "lockDuration")
    if props.get("defaultMessageTimeToLive") is not None:
        options["default_ttl"] = seconds(props["defaultMessageTimeToLive"], "defaultMessageTimeToLive")
    if props.get("deadLetteringOnMessageExpiration") is not None:
        options["dead_lettering_on_expiration"] = bool(props["deadLetteringOnMessageExpiration"])
    name = request.path.names[-1]
    try:
        queue = broker.create_queue(name, **options)
    except ValueError as exc:
        raise exceptions.invalid_parameter_message(str(exc)) from None
    for field, value in options.items():  # an update of an existing queue's settings
        setattr(queue, field, value)
    broker.save()
    return queue_json(request, group, namespace, queue, len(queue.messages))


@PROVIDER.operation("GET", "namespaces/queues", ITEM, summary="queues.get")
async def get_queue(request: ArmRequest) -> dict[str, Any]:
    group, namespace = _find(request)
    broker = _broker(request)
    queue = broker.queues.get(request.path.names[-1].lower())
    if queue is None:
        raise exceptions.ArmError(404, "NotFound", f"The messaging entity '{request.path.names[-1]}' could not be "
                                                   f"found in namespace '{namespace.name}'.")
    return queue_json(request, group, namespace, queue, len(queue.messages))


@PROVIDER.operation("GET", "namespaces/queues", COLLECTION, summary="queues.list_by_namespace")
async def list_queues(request: ArmRequest) -> dict[str, Any]:
    group, namespace = _find(request)
    broker = _broker(request)
    return {"value": [queue_json(request, group, namespace, q, len(q.messages)) for q in broker.queues.values()]}


@PROVIDER.operation("DELETE", "namespaces/queues", ITEM, summary="queues.delete")
async def delete_queue(request: ArmRequest) -> ArmResponse:
    _find(request)
    found = _broker(request).delete_queue(request.path.names[-1])
    return ArmResponse(None, status=200 if found else 204)


__all__ = ["PROVIDER", "NamespaceResource"]
