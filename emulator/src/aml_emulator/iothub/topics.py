"""IoT Hub's MQTT topic conventions (azure-iot-device ``iothub/pipeline/mqtt_topic_iothub.py``).

Message properties ride on the topic after the last ``/`` as URL-encoded ``k=v&k2=v2``;
keys starting ``$.`` are system properties (``$.mid`` message id, ``$.on`` output name, ...).
"""

from __future__ import annotations

import re
import urllib.parse

import attrs

_TELEMETRY = re.compile(r"^devices/(?P<device>[^/]+)(?:/modules/(?P<module>[^/]+))?/messages/events/(?P<props>.*)$")
_TWIN_GET = re.compile(r"^\$iothub/twin/GET/\?(?P<query>.*)$")
_TWIN_REPORTED = re.compile(r"^\$iothub/twin/PATCH/properties/reported/\?(?P<query>.*)$")
_METHOD_RESPONSE = re.compile(r"^\$iothub/methods/res/(?P<status>\d+)/\?(?P<query>.*)$")


@attrs.frozen
class Telemetry:
    device_id: str
    module_id: str | None
    #: ``$.``-prefixed system properties, e.g. ``{"$.on": "output1", "$.mid": "..."}``
    system: dict[str, str]
    #: application (custom) properties
    properties: dict[str, str]


def decode_properties(text: str) -> tuple[dict[str, str], dict[str, str]]:
    """``(system, custom)`` from a topic's property segment (decoded as the SDK encodes it)."""
    system: dict[str, str] = {}
    custom: dict[str, str] = {}
    for entry in filter(None, text.split("&")):
        key, _sep, value = entry.partition("=")
        key, value = urllib.parse.unquote(key), urllib.parse.unquote(value)
        (system if key.startswith("$.") else custom)[key] = value
    return system, custom


def encode_properties(system: dict[str, str], custom: dict[str, str]) -> str:
    pairs = list(system.items()) + sorted(custom.items())
    return urllib.parse.urlencode(pairs, quote_via=urllib.parse.quote)


def parse_telemetry(topic: str) -> Telemetry | None:
    match = _TELEMETRY.match(topic)
    if match is None:
        return None
    system, custom = decode_properties(match.group("props"))
    return Telemetry(urllib.parse.unquote(match.group("device")),
                     urllib.parse.unquote(match.group("module")) if match.group("module") else None, system, custom)


def query_of(pattern: re.Pattern[str], topic: str) -> dict[str, str] | None:
    match = pattern.match(topic)
    if match is None:
        return None
    return {urllib.parse.unquote(k): urllib.parse.unquote(v)
            for k, _s, v in (part.partition("=") for part in match.group("query").split("&") if part)}


def twin_get(topic: str) -> dict[str, str] | None:
    return query_of(_TWIN_GET, topic)


def twin_reported(topic: str) -> dict[str, str] | None:
    return query_of(_TWIN_REPORTED, topic)


def method_response(topic: str) -> dict[str, str] | None:
    return query_of(_METHOD_RESPONSE, topic)


def twin_response(status: int, rid: str, version: int | None = None) -> str:
    suffix = f"&$version={version}" if version is not None else ""
    return f"$iothub/twin/res/{status}/?$rid={urllib.parse.quote(rid, safe='')}{suffix}"


def desired_patch(version: int) -> str:
    return f"$iothub/twin/PATCH/properties/desired/?$version={version}"


def c2d(device_id: str, system: dict[str, str], custom: dict[str, str]) -> str:
    return f"devices/{device_id}/messages/devicebound/{encode_properties(system, custom)}"


def module_input(device_id: str, module_id: str, input_name: str, system: dict[str, str], custom: dict[str, str]) -> str:
    return f"devices/{device_id}/modules/{module_id}/inputs/{urllib.parse.quote(input_name, safe='')}/{encode_properties(system, custom)}"


def allowed_subscription(client_id: str, topic_filter: str) -> bool:
    """A device may subscribe only to its own topics and the ``$iothub`` ones."""
    device, _sep, module = client_id.partition("/")
    if topic_filter.startswith("$iothub/"):
        return True
    if module:
        return topic_filter == f"devices/{device}/modules/{module}/inputs/#"
    return topic_filter == f"devices/{device}/messages/devicebound/#"
