"""The emulated edge hub: the MQTT gateway modules connect to, routing and store-and-forward.

Modules connect (``IoTHubModuleClient.create_from_edge_environment()``) to the edge device's
own address on port 8883, with the IoT hub's hostname in the username and a SAS token the
workload API signed with the module's key. What they publish on an output is matched
against the ``$edgeHub`` routes (:mod:`.routes`); each matching endpoint, once per message at
the highest priority that chose it, gets the message in its persistent queue
(:mod:`.store`), and a delivery task drains the queues: module inputs are published QoS 1 to
the module's session and leave the queue on its acknowledgement; ``$upstream`` goes to the IoT
hub's events endpoint while the hub is reachable (:meth:`EdgeHub.set_upstream_reachable`
simulates an outage). Twin reads and reported patches of modules are forwarded to the hub,
and desired-property changes the hub makes are pushed to connected modules.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

from aml_emulator.iothub import auth, topics
from aml_emulator.iothub.broker import BrokerThread
from aml_emulator.iothub.edge.routes import UPSTREAM, Message, Route, parse_routes
from aml_emulator.iothub.edge.store import MessageStore
from aml_emulator.iothub.exceptions import HubError
from aml_emulator.iothub.gateway import split_client_id
from aml_emulator.iothub.models import Hub, utcnow

log = logging.getLogger(__name__)

DEFAULT_TTL_SECONDS = 7200
#: seconds the delivery task waits for a module's acknowledgement before trying again
ACK_TIMEOUT = 10.0
_IDLE_WAIT = 0.1
#: seconds a restarted edge hub keeps trying to listen on its address again
REBIND_SECONDS = 30.0


class EdgeHub:
    """The gateway of one edge device (see the module docstring)."""

    def __init__(self, hub: Hub, device_id: str, *, address: str, certfile: str, keyfile: str, state_dir: Path,
                 clock: Callable[[], float], known_modules: Callable[[], set[str]]) -> None:
        self.hub = hub
        self.device_id = device_id
        self.address = address
        self._certfile, self._keyfile = certfile, keyfile
        self.state_dir = Path(state_dir)
        self.clock = clock
        self.known_modules = known_modules
        self.routes: list[Route] = []
        self.default_ttl: int = DEFAULT_TTL_SECONDS
        self.upstream_reachable = True
        self.store = MessageStore(self.state_dir, clock=clock)
        path = self.state_dir / "subscriptions.json"
        self._subscriptions: dict[str, list[str]] = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        self.broker: BrokerThread | None = None
        self._wake: asyncio.Event | None = None
        self._delivery: Any = None
        self._lock = threading.Lock()
        self.routed = 0
        self.unrouted = 0
        self._paused: set[str] = set()
        #: module -> the delivery to it awaiting its acknowledgement
        self._in_flight: dict[str, Any] = {}
        self._method_calls: dict[str, tuple[threading.Event, list[Any]]] = {}
        hub.desired_listeners.append(self._on_desired)
        hub.method_handlers[(device_id, "*")] = self.invoke_module_method

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> "EdgeHub":
        # after a restart the previous listener may still be closing its client connections
        deadline = time.monotonic() + REBIND_SECONDS
        while True:
            try:
                self.broker = BrokerThread(self, host=self.address, port=8883, certfile=self._certfile,
                                           keyfile=self._keyfile, name=f"aml-edgehub-{self.device_id}").start()
                break
            except RuntimeError as exc:
                if "address already in use" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        self.broker.call(self._install_delivery())
        self._apply_current()
        return self

    def _apply_current(self) -> None:
        twin = self.hub.identity(self.device_id, "$edgeHub").twin
        self.apply_desired({**twin.desired, "$version": twin.desired_version})

    async def _install_delivery(self) -> None:
        self._wake = asyncio.Event()
        self._delivery = asyncio.ensure_future(self._deliver_forever())

    def stop(self) -> None:
        if self.broker is not None:
            if self._delivery is not None:
                self.broker.loop.call_soon_threadsafe(self._delivery.cancel)
            self.broker.stop()
            self.broker = None

    def restart(self) -> None:
        """Stop the edge hub and start it again from its stored state (what ``iotedge restart
        edgeHub`` does): connected modules reconnect, queued messages are delivered."""
        self.stop()
        self.store = MessageStore(self.state_dir, clock=self.clock)
        self.start()

    def close(self) -> None:
        self.stop()
        if self._on_desired in self.hub.desired_listeners:
            self.hub.desired_listeners.remove(self._on_desired)
        self.hub.method_handlers.pop((self.device_id, "*"), None)

    # -- configuration ---------------------------------------------------------------------------

    def apply_desired(self, desired: dict[str, Any]) -> None:
        """Take the ``$edgeHub`` desired properties: routes and the store-and-forward TTL.
        Bad routes are left out and named in ``lastDesiredStatus``; good ones apply."""
        body = {k: v for k, v in desired.items() if not k.startswith("$")}
        if not body:
            return
        routes, problems = parse_routes(body)
        known = self.known_modules()
        for route in list(routes):
            if not route.sink.upstream and route.sink.module not in known:
                problems.append(f"route {route.name!r} sends to module {route.sink.module!r}, which is not in the "
                                f"deployment; add the module or fix the route")
                routes.remove(route)
        ttl = ((body.get("storeAndForwardConfiguration") or {}).get("timeToLiveSecs"))
        with self._lock:
            self.routes = routes
            if isinstance(ttl, int) and ttl >= 0:
                self.default_ttl = ttl
        for problem in problems:
            log.warning("edge hub %s: %s", self.device_id, problem)
        status = {"code": 400, "description": "; ".join(problems)} if problems else {"code": 200, "description": ""}
        self._report({"lastDesiredVersion": desired.get("$version"), "lastDesiredStatus": status,
                      "schemaVersion": body.get("schemaVersion", "1.0")})

    def _on_desired(self, device_id: str, module_id: str | None, patch: dict[str, Any]) -> None:
        if device_id != self.device_id or module_id is None:
            return
        if module_id == "$edgeHub":
            self._apply_current()
        elif not module_id.startswith("$") and self.broker is not None:
            self.broker.send_to(f"{device_id}/{module_id}", topics.desired_patch(int(patch.get("$version", 0))),
                                json.dumps(patch).encode(), queue_if_offline=False)

    def pause_module(self, module_id: str) -> None:
        """Stop delivering to ``module_id``'s inputs (it is about to stop); queued messages wait.
        Returns once no delivery to it is in flight, so it is safe to stop the module."""
        self._paused.add(module_id)
        broker = self.broker
        if broker is not None and broker.loop is not None:
            broker.call(self._quiesce(module_id), timeout=ACK_TIMEOUT + 5)

    async def _quiesce(self, module_id: str) -> None:
        in_flight = self._in_flight.get(module_id)
        if in_flight is not None:
            await asyncio.wait([in_flight], timeout=ACK_TIMEOUT)

    def resume_module(self, module_id: str) -> None:
        self._paused.discard(module_id)
        self._poke()

    def set_upstream_reachable(self, reachable: bool) -> None:
        """Cut (``False``) or restore the link to the IoT hub; messages for ``$upstream`` wait
        in the store meanwhile."""
        self.upstream_reachable = reachable
        self._poke()

    # -- the broker's gateway ----------------------------------------------------------------------

    def authenticate(self, client_id: str, username: str, password: str) -> bool:
        device_id, module_id = split_client_id(client_id)
        if device_id != self.device_id or module_id is None:
            log.info("edge hub %s refused %s: only this device's modules connect here", self.device_id, client_id)
            return False
        if not username.startswith(f"{self.hub.hostname}/{client_id}/"):
            log.info("edge hub %s refused %s: the username does not name hub %s", self.device_id, client_id,
                     self.hub.hostname)
            return False
        try:
            identity = self.hub.identity(device_id, module_id)
            token = auth.SasToken.parse(password)
            target = f"{self.hub.hostname}/devices/{device_id}/modules/{module_id}"
            if not auth.covers(token.resource_uri, target):
                raise auth.SasError(f"the token is for {token.resource_uri!r}, not {target!r}")
            auth.verify(token, keys=identity.keys)
        except (HubError, auth.SasError) as exc:
            log.info("edge hub %s refused %s: %s", self.device_id, client_id, exc)
            return False
        return True

    def may_subscribe(self, client_id: str, topic_filter: str) -> bool:
        return topics.allowed_subscription(client_id, topic_filter)

    def on_subscribed(self, client_id: str, filters: list[str]) -> None:
        with self._lock:
            known = self._subscriptions.setdefault(client_id, [])
            known.extend(f for f in filters if f not in known)
            tmp = self.state_dir / ".subscriptions.json.tmp"
            tmp.write_text(json.dumps(self._subscriptions), encoding="utf-8")
            tmp.replace(self.state_dir / "subscriptions.json")
        self._poke()  # its inputs may have messages waiting

    def remembered_subscriptions(self, client_id: str) -> list[str]:
        """What a module had subscribed to: the edge hub's sessions outlive its restarts."""
        with self._lock:
            return list(self._subscriptions.get(client_id, []))

    def on_connection(self, client_id: str, connected: bool) -> None:
        device_id, module_id = split_client_id(client_id)
        self.hub.set_connected(device_id, module_id, connected)
        if module_id:
            state = "connected" if connected else "disconnected"
            when = "lastConnectTime" if connected else "lastDisconnectTime"
            self._report({"clients": {client_id.replace("/", "%2F"): {"status": state, when: utcnow()}}})
        self._poke()

    def on_publish(self, client_id: str, topic: str, payload: bytes) -> None:
        device_id, module_id = split_client_id(client_id)
        telemetry = topics.parse_telemetry(topic)
        if telemetry is not None:
            if (telemetry.device_id, telemetry.module_id) != (device_id, module_id):
                log.warning("edge hub %s dropped a message %s sent on another module's topic", self.device_id, client_id)
                return
            self.route(module_id or "", payload, telemetry.properties, telemetry.system)
            return
        query = topics.twin_get(topic)
        if query is not None:
            with self.hub.lock:
                body = self.hub.identity(device_id, module_id).twin.properties()
            self.broker.send_to(client_id, topics.twin_response(200, query.get("$rid", "")), json.dumps(body).encode(),
                                queue_if_offline=False)
            return
        query = topics.method_response(topic)
        if query is not None:
            call = self._method_calls.get(query.get("$rid", ""))
            if call is not None:
                status = int(topic.split("/")[3])
                try:
                    result = json.loads(payload) if payload else None
                except ValueError:
                    result = payload.decode("utf-8", "replace")
                call[1].extend([status, result])
                call[0].set()
            return
        query = topics.twin_reported(topic)
        if query is not None:
            try:
                patch = json.loads(payload or b"{}")
                version = self.hub.patch_reported(device_id, module_id, patch if isinstance(patch, dict) else {})
                reply = topics.twin_response(204, query.get("$rid", ""), version)
            except ValueError:
                reply = topics.twin_response(400, query.get("$rid", ""))
            self.broker.send_to(client_id, reply, b"", queue_if_offline=False)

    def invoke_module_method(self, module_id: str, name: str, payload: Any, timeout: float = 30.0) -> tuple[int, Any]:
        """A direct method on a connected module: published on ``$iothub/methods/POST/<name>``,
        answered by the module's ``$iothub/methods/res/<status>``."""
        client_id = f"{self.device_id}/{module_id}"
        broker = self.broker
        if broker is None or broker.broker is None or broker.loop is None or broker.call(
                self._method_subscriber(client_id)) is None:
            raise HubError(404, "DeviceNotOnline", f"Module {module_id} on {self.device_id} is not connected "
                                                   f"(or does not listen for direct methods).")
        rid = uuid.uuid4().hex
        done, answer = threading.Event(), []
        self._method_calls[rid] = (done, answer)
        try:
            self.broker.send_to(client_id, f"$iothub/methods/POST/{name}/?$rid={rid}", json.dumps(payload).encode(),
                                queue_if_offline=False)
            if not done.wait(timeout):
                raise HubError(504, "GatewayTimeout", f"Module {module_id} did not answer method {name} within "
                                                      f"{timeout:.0f} s.")
            return answer[0], answer[1]
        finally:
            self._method_calls.pop(rid, None)

    async def _method_subscriber(self, client_id: str) -> Any:
        return self.broker.broker.connected_subscriber(client_id, "$iothub/methods/POST/#")

    # -- routing and delivery -----------------------------------------------------------------

    def route(self, module_id: str, body: bytes, properties: dict[str, str], system: dict[str, str]) -> int:
        """Queue a module's message for every endpoint a route picks; returns how many."""
        output = system.get("$.on", "")
        source = f"/messages/modules/{module_id}/outputs/{output}" if output else f"/messages/modules/{module_id}"
        system = {**system, "connectionDeviceId": self.device_id, "connectionModuleId": module_id}
        message = Message(source=source, body=body, properties=properties, system=system)
        with self._lock:
            routes = list(self.routes)
            default_ttl = self.default_ttl
        chosen: dict[str, Route] = {}
        for route in routes:
            if route.matches(message):
                endpoint = route.sink.endpoint_id()
                if endpoint not in chosen or route.priority < chosen[endpoint].priority:
                    chosen[endpoint] = route
        for endpoint, route in chosen.items():
            ttl = route.ttl_seconds if route.ttl_seconds is not None else default_ttl
            self.store.add(endpoint, body, properties, system, priority=route.priority, ttl_seconds=ttl or None)
        if chosen:
            self.routed += 1
        else:
            self.unrouted += 1
        self._poke()
        return len(chosen)

    def _poke(self) -> None:
        broker = self.broker
        if broker is not None and broker.loop is not None and self._wake is not None:
            broker.loop.call_soon_threadsafe(self._wake.set)

    async def _deliver_forever(self) -> None:
        assert self._wake is not None
        while True:
            self._wake.clear()
            progressed = False
            for endpoint in sorted(self.store.endpoints()):
                try:
                    progressed |= await self._deliver_one(endpoint)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("edge hub %s: delivering to %s failed", self.device_id, endpoint)
            if not progressed:
                try:
                    await asyncio.wait_for(self._wake.wait(), _IDLE_WAIT)
                except asyncio.TimeoutError:
                    pass

    async def _deliver_one(self, endpoint: str) -> bool:
        message = self.store.next_for(endpoint)
        if message is None:
            return False
        if endpoint == UPSTREAM:
            if not self.upstream_reachable:
                return False
            await asyncio.to_thread(self.hub.add_event, self.device_id, message.system.get("connectionModuleId"),
                                    message.body, message.properties,
                                    {k: v for k, v in message.system.items() if k.startswith("$.")})
            self.store.ack(message.id)
            return True
        _blank, _modules, module_id, _inputs, input_name = endpoint.split("/")
        if module_id in self._paused:
            return False
        client_id = f"{self.device_id}/{module_id}"
        if self.broker is None or self.broker.broker is None:
            return False
        handler = self.broker.broker.connected_subscriber(client_id, f"devices/{self.device_id}/modules/{module_id}/inputs/#")
        if handler is None:
            return False
        topic = topics.module_input(self.device_id, module_id, input_name,
                                    {k: v for k, v in message.system.items() if k.startswith("$.") and k != "$.on"},
                                    message.properties)
        delivery = asyncio.ensure_future(asyncio.wait_for(handler.mqtt_publish(topic, message.body, 1, retain=False),
                                                          ACK_TIMEOUT))
        self._in_flight[module_id] = delivery
        try:
            await asyncio.shield(delivery)
        except Exception as exc:  # the module went away (or timed out): keep the message queued
            log.info("edge hub %s: %s did not acknowledge (%s); keeping the message", self.device_id, client_id,
                     type(exc).__name__)
            return False
        finally:
            self._in_flight.pop(module_id, None)
        self.store.ack(message.id)
        return True

    def _report(self, patch: dict[str, Any]) -> None:
        try:
            self.hub.patch_reported(self.device_id, "$edgeHub", patch)
        except HubError:
            log.warning("edge hub %s: its $edgeHub identity is gone", self.device_id)
