"""IoT Hub's MQTT side on a real MQTT broker library (amqtt), with IoT Hub's rules on top.

:class:`IotBroker` is an ``amqtt.broker.Broker`` whose authentication, subscription checks
and handling of published messages are delegated to a :class:`Gateway` (the hub, or an edge
hub): IoT Hub devices publish to ``$iothub/...`` topics, which a plain MQTT broker refuses,
and their telemetry goes to the service, not to other subscribers. Everything MQTT itself
(sessions with ``clean_session=False``, QoS 1 acknowledgements and redelivery, keep-alive,
queueing for disconnected sessions) is amqtt's.

:class:`BrokerThread` runs one broker on its own event loop thread, listening with TLS.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any, Protocol

from amqtt.broker import Broker

log = logging.getLogger(__name__)


class Gateway(Protocol):
    """What a broker asks of the service behind it (every method runs on the broker's loop)."""

    def authenticate(self, client_id: str, username: str, password: str) -> bool: ...

    def may_subscribe(self, client_id: str, topic_filter: str) -> bool: ...

    def on_publish(self, client_id: str, topic: str, payload: bytes) -> None: ...

    def on_connection(self, client_id: str, connected: bool) -> None: ...

    def on_subscribed(self, client_id: str, filters: list[str]) -> None: ...

    def remembered_subscriptions(self, client_id: str) -> list[str]: ...


class IotBroker(Broker):
    """An amqtt broker that hands IoT Hub's semantics to ``gateway``."""

    def __init__(self, config: dict[str, Any], gateway: Gateway) -> None:
        super().__init__(config)
        self.gateway = gateway

    async def _authenticate(self, session: Any, listener: Any) -> bool:  # amqtt hook
        try:
            accepted = self.gateway.authenticate(session.client_id or "", session.username or "",
                                                 session.password or "")
        except Exception:
            log.exception("authenticating %s failed", session.client_id)
            return False
        if accepted:
            if not session.clean_session and session.client_id not in self._sessions:
                self.restore_subscriptions(session, self.gateway.remembered_subscriptions(session.client_id))
            self.gateway.on_connection(session.client_id, True)
        return accepted

    async def _topic_filtering(self, session: Any, topic: str, action: Any) -> bool:  # amqtt hook
        if getattr(action, "value", action) == "subscribe":
            # nothing goes out on this filter until its SUBACK has (see _handle_subscription)
            session.__dict__.setdefault("aml_acknowledged_filters", set()).discard(topic)
            return self.gateway.may_subscribe(session.client_id, topic)
        return True

    async def _handle_disconnect(self, client_session: Any, handler: Any, disconnect_waiter: Any) -> None:
        await super()._handle_disconnect(client_session, handler, disconnect_waiter)
        self.gateway.on_connection(client_session.client_id, False)

    async def _handle_subscription(self, client_session: Any, handler: Any, subscribe_waiter: Any) -> None:
        await super()._handle_subscription(client_session, handler, subscribe_waiter)
        # Only now has the client its SUBACK: a message sent before it may be dropped by a client
        # (azure-iot-device discards input messages of a feature it has not seen enabled yet).
        filters = [topic for topic, _qos in subscribe_waiter.result().topics]
        client_session.__dict__.setdefault("aml_acknowledged_filters", set()).update(filters)
        self.gateway.on_subscribed(client_session.client_id, filters)

    def restore_subscriptions(self, session: Any, filters: list[str]) -> None:
        """Give a client reconnecting with ``clean_session=False`` the subscriptions it had
        before this broker started (a persistent session, as IoT Hub and the edge hub keep)."""
        acknowledged = session.__dict__.setdefault("aml_acknowledged_filters", set())
        for topic_filter in filters:
            subscribers = self._subscriptions.setdefault(topic_filter, [])
            if all(s.client_id != session.client_id for s, _qos in subscribers):
                subscribers.append((session, 1))
            acknowledged.add(topic_filter)

    async def _handle_message_delivery(self, client_session: Any, handler: Any, wait_deliver: Any) -> bool:
        # Every publish goes to the gateway: nothing a device sends is relayed to other clients.
        app_message = wait_deliver.result()
        if app_message is None:
            return True
        try:
            self.gateway.on_publish(client_session.client_id, app_message.topic, bytes(app_message.data or b""))
        except Exception:
            log.exception("handling %s from %s failed", app_message.topic, client_session.client_id)
        return True

    def connected_subscriber(self, client_id: str, topic_filter: str) -> Any:
        """The protocol handler of ``client_id`` if it is connected now and subscribed to
        ``topic_filter`` (a reconnect with the same id replaces the session's handler)."""
        entry = self._sessions.get(client_id)
        if entry is None or entry[0].transitions.state != "connected" or entry[1] is None:
            return None
        if not any(s.client_id == client_id for s, _qos in self._subscriptions.get(topic_filter, [])):
            return None
        if topic_filter not in entry[0].__dict__.get("aml_acknowledged_filters", ()):
            return None
        return entry[1]

    async def send_to(self, client_id: str, topic: str, payload: bytes, *, queue_if_offline: bool) -> bool:
        """Publish (QoS 1) to one client's session; if it is offline, queue it in the session
        (``queue_if_offline``) or drop it. Returns whether it was sent or queued."""
        entry = self._sessions.get(client_id)
        if entry is None:
            return False
        session, handler = entry
        if session.transitions.state == "connected" and handler is not None:
            asyncio.ensure_future(handler.mqtt_publish(topic, payload, 1, retain=False))
            return True
        if queue_if_offline:
            from amqtt.broker import RetainedApplicationMessage

            await session.retained_messages.put(RetainedApplicationMessage(None, topic, payload, 1))
            return True
        return False


class BrokerThread:
    """One :class:`IotBroker` listening with TLS on ``host:port``, on its own thread."""

    def __init__(self, gateway: Gateway, *, host: str, port: int, certfile: str, keyfile: str,
                 name: str = "aml-emulator-mqtt") -> None:
        self.gateway = gateway
        self.host = host
        self.port = port
        self._config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}", "ssl": True,
                                      "certfile": certfile, "keyfile": keyfile, "max_connections": 1000}},
            "plugins": {},
        }
        self.name = name
        self.loop: asyncio.AbstractEventLoop | None = None
        self.broker: IotBroker | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None

    def start(self) -> "BrokerThread":
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        self._started.wait(30)
        if self._error is not None:
            raise RuntimeError(f"the MQTT broker on {self.host}:{self.port} did not start: {self._error}") from self._error
        return self

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            self.broker = IotBroker(self._config, self.gateway)
            await self.broker.start()
        except BaseException as exc:  # reported by start()
            self._error = exc
            self._started.set()
            return
        self._started.set()
        await self._stop.wait()
        await self.broker.shutdown()

    def call(self, coroutine: Any, timeout: float = 10.0) -> Any:
        """Run ``coroutine`` on the broker's loop from another thread and return its result."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def send_to(self, client_id: str, topic: str, payload: bytes, *, queue_if_offline: bool = True) -> None:
        """Thread-safe :meth:`IotBroker.send_to` that does not wait for the acknowledgement."""
        if self.loop is None or self.broker is None:
            return
        asyncio.run_coroutine_threadsafe(
            self.broker.send_to(client_id, topic, payload, queue_if_offline=queue_if_offline), self.loop)

    def stop(self) -> None:
        if self.loop is not None and self._stop is not None and self._thread is not None and self._thread.is_alive():
            self.loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(15)
