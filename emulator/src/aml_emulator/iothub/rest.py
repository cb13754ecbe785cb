"""IoT Hub's service REST API, as azure-iot-hub 2.7.0's ``IoTHubRegistryManager`` and
``IoTHubConfigurationManager`` call it (``protocol/operations/*.py``).

Every request must carry ``Authorization: SharedAccessSignature sr=<host>&sig=..&se=..&skn=<policy>``
signed with one of the hub's shared access policies; anything else is ``401`` with the
hub's ``IotHubUnauthorizedAccess`` body. Unimplemented operations answer ``501`` naming
themselves. The emulator's own monitoring endpoint, ``GET /_emulator/events?from=N``,
serves device-to-cloud messages to ``aml iot monitor-events``, and
``PUT /_emulator/edgeDevices/{id}`` runs an emulated edge device (``aml iot add-edge-device``);
they take the same tokens.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, Router

from aml_emulator.iothub import auth
from aml_emulator.iothub.exceptions import HubError, unauthorized
from aml_emulator.iothub.models import Hub

log = logging.getLogger(__name__)
MAX_BODY = 1 << 20


def _json(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(payload), status_code=status, media_type="application/json; charset=utf-8",
                    headers=headers)


class HubRestApp:
    """The ASGI app of one hub's service endpoint."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.router = Router([
            Route("/devices", self.list_devices, methods=["GET"]),
            Route("/devices/query", self.query, methods=["POST"]),
            Route("/devices/{device_id}", self.device, methods=["GET", "PUT", "DELETE"]),
            Route("/devices/{device_id}/modules", self.list_modules, methods=["GET"]),
            Route("/devices/{device_id}/modules/{module_id}", self.module, methods=["GET", "PUT", "DELETE"]),
            Route("/devices/{device_id}/applyConfigurationContent", self.apply_content, methods=["POST"]),
            Route("/twins/{device_id}", self.twin, methods=["GET", "PUT", "PATCH"]),
            Route("/twins/{device_id}/modules/{module_id}", self.twin, methods=["GET", "PUT", "PATCH"]),
            Route("/twins/{device_id}/methods", self.method, methods=["POST"]),
            Route("/twins/{device_id}/modules/{module_id}/methods", self.method, methods=["POST"]),
            Route("/configurations", self.list_configurations, methods=["GET"]),
            Route("/configurations/{config_id}", self.configuration, methods=["GET", "PUT", "DELETE"]),
            Route("/_emulator/events", self.events, methods=["GET"]),
            Route("/_emulator/edgeDevices/{device_id}", self.edge_device, methods=["PUT"]),
        ])

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        try:
            self._authenticate(request)
            response = await self._dispatch(scope, receive)
        except HubError as error:
            if error.status == 401:
                log.info("IoT hub %s refused %s %s: %s", self.hub.name, request.method, request.url.path,
                         getattr(error, "reason", ""))
            response = _json(error.status, error.body(), {"iothub-errorcode": error.code})
        except Exception:
            log.exception("IoT hub emulator failed on %s %s", request.method, request.url.path)
            response = _json(500, HubError(500, "ServerError", "The emulator failed; see its log.").body())
        await response(scope, receive, send)

    async def _dispatch(self, scope: dict[str, Any], receive: Any) -> Response:
        for route in self.router.routes:
            match, child = route.matches(scope)
            if match.name == "FULL":
                request = Request({**scope, **child}, receive)
                return await route.endpoint(request)
            if match.name == "PARTIAL":
                raise HubError(405, "MethodNotAllowed", f"{scope['method']} is not allowed on {scope['path']}.")
        raise HubError(501, "NotImplemented",
                       f"The operation {scope['method']} {scope['path'][:200]} has not been implemented in the emulator.")

    def _authenticate(self, request: Request) -> None:
        header = request.headers.get("authorization")
        if not header:
            raise unauthorized("no Authorization header")
        try:
            token = auth.SasToken.parse(header)
        except auth.SasError as exc:
            raise unauthorized(str(exc)) from None
        policy = self.hub.policies.get(token.key_name or "")
        if policy is None:
            raise unauthorized(f"unknown shared access policy {token.key_name!r}")
        if not auth.covers(token.resource_uri, self.hub.hostname):
            raise unauthorized(f"the token is for {token.resource_uri!r}, not this hub")
        try:
            auth.verify(token, keys=(policy.primary_key, policy.secondary_key), clock=time.time)
        except auth.SasError as exc:
            raise unauthorized(str(exc)) from None

    @staticmethod
    async def _body(request: Request) -> dict[str, Any]:
        raw = await request.body()
        if len(raw) > MAX_BODY:
            raise HubError(413, "MessageTooLarge", f"The request body exceeds {MAX_BODY} bytes.")
        if not raw:
            return {}
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise HubError(400, "ArgumentInvalid", f"The request body is not valid JSON: {exc}.") from None
        if not isinstance(body, dict):
            raise HubError(400, "ArgumentInvalid", "The request body must be a JSON object.")
        return body

    # -- devices and modules ---------------------------------------------------------------------

    async def list_devices(self, request: Request) -> Response:
        top = int(request.query_params.get("top") or 1000)
        with self.hub.lock:
            devices = [d.to_json() for d in list(self.hub.devices.values())[:top]]
        return _json(200, devices)

    async def device(self, request: Request) -> Response:
        device_id = request.path_params["device_id"]
        if request.method == "GET":
            return _json(200, self.hub.identity(device_id).to_json())
        if request.method == "DELETE":
            self.hub.delete_identity(device_id, None, request.headers.get("if-match"))
            return Response(status_code=204)
        body = await self._body(request)
        if body.get("deviceId", device_id) != device_id:
            raise HubError(400, "ArgumentInvalid", "The deviceId in the body does not match the URL.")
        identity, _created = self.hub.put_identity(device_id, None, body, request.headers.get("if-match"))
        return _json(200, identity.to_json())

    async def list_modules(self, request: Request) -> Response:
        device = self.hub.identity(request.path_params["device_id"])
        with self.hub.lock:
            return _json(200, [m.to_json() for m in device.modules.values()])

    async def module(self, request: Request) -> Response:
        device_id, module_id = request.path_params["device_id"], request.path_params["module_id"]
        if request.method == "GET":
            return _json(200, self.hub.identity(device_id, module_id).to_json())
        if request.method == "DELETE":
            self.hub.delete_identity(device_id, module_id, request.headers.get("if-match"))
            return Response(status_code=204)
        body = await self._body(request)
        identity, created = self.hub.put_identity(device_id, module_id, body, request.headers.get("if-match"))
        return _json(201 if created else 200, identity.to_json())

    async def apply_content(self, request: Request) -> Response:
        body = await self._body(request)
        await asyncio.to_thread(self.hub.apply_configuration_content, request.path_params["device_id"], body)
        return Response(status_code=204)

    async def query(self, request: Request) -> Response:
        body = await self._body(request)
        text = " ".join(str(body.get("query", "")).split()).lower()
        with self.hub.lock:
            if text in ("select * from devices", "select * from devices.modules"):
                twins = []
                for device in self.hub.devices.values():
                    if text.endswith("modules"):
                        twins.extend(m.twin_json() for m in device.modules.values())
                    else:
                        twins.append(device.twin_json())
                return _json(200, twins, {"x-ms-item-type": "Twin"})
        raise HubError(501, "NotImplemented",
                       "The emulator answers only 'SELECT * FROM devices' and 'SELECT * FROM devices.modules'; "
                       "filter the result client-side.")

    # -- twins -------------------------------------------------------------------------------

    async def twin(self, request: Request) -> Response:
        device_id = request.path_params["device_id"]
        module_id = request.path_params.get("module_id")
        if request.method == "GET":
            return _json(200, self.hub.identity(device_id, module_id).twin_json())
        body = await self._body(request)
        identity = await asyncio.to_thread(self.hub.update_twin, device_id, module_id, body,
                                           request.headers.get("if-match"), replace=request.method == "PUT")
        return _json(200, identity.twin_json())

    async def method(self, request: Request) -> Response:
        """A direct method, answered by the emulated part that registered for the target
        (the edge agent), or a module connected to an emulated edge hub; anything else is
        offline, as a device that never connected."""
        device_id = request.path_params["device_id"]
        module_id = request.path_params.get("module_id")
        self.hub.identity(device_id, module_id)
        body = await self._body(request)
        handler = self.hub.method_handlers.get((device_id, module_id))
        edge_modules = self.hub.method_handlers.get((device_id, "*"))
        if handler is None and module_id is not None and edge_modules is not None:
            def handler(name: str, payload: Any, _route=edge_modules, _module=module_id) -> tuple[int, Any]:
                return _route(_module, name, payload, float(body.get("responseTimeoutInSeconds") or 30))
        if handler is None:
            raise HubError(404, "DeviceNotOnline", f"Timed out waiting for {device_id}"
                           + (f"/{module_id}" if module_id else "") + " to connect; direct methods reach only "
                           "the emulated edge agent.")
        status, payload = await asyncio.to_thread(handler, str(body.get("methodName", "")), body.get("payload"))
        return _json(200, {"status": status, "payload": payload})

    # -- configurations ---------------------------------------------------------------------

    async def list_configurations(self, request: Request) -> Response:
        top = int(request.query_params.get("top") or 1000)
        with self.hub.lock:
            configs = list(self.hub.configurations.values())[:top]
            return _json(200, json.loads(json.dumps(configs)))

    async def configuration(self, request: Request) -> Response:
        config_id = request.path_params["config_id"]
        if request.method == "GET":
            return _json(200, self.hub.configuration(config_id))
        if request.method == "DELETE":
            self.hub.delete_configuration(config_id, request.headers.get("if-match"))
            return Response(status_code=204)
        body = await self._body(request)
        config, created = self.hub.put_configuration(config_id, body, request.headers.get("if-match"))
        return _json(201 if created else 200, config)

    async def edge_device(self, request: Request) -> Response:
        """Run an emulated IoT Edge device for ``device_id`` (created if needed)."""
        if self.hub.add_edge_device is None:
            raise HubError(501, "NotImplemented", "This hub cannot run emulated edge devices.")
        device = await asyncio.to_thread(self.hub.add_edge_device, request.path_params["device_id"])
        return _json(200, {"deviceId": device.device_id, "gatewayHostName": device.address})

    # -- monitoring -------------------------------------------------------------------------

    async def events(self, request: Request) -> Response:
        try:
            start = max(0, int(request.query_params.get("from") or 0))
            timeout = min(30.0, max(0.0, float(request.query_params.get("timeout") or 0)))
        except ValueError:
            raise HubError(400, "ArgumentInvalid", "'from' must be an integer and 'timeout' a number of seconds.") from None
        events = await asyncio.to_thread(self.hub.read_events, start, timeout=timeout)
        return _json(200, events)
