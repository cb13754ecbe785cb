"""A small TCP load balancer per Service port, so clients can reach a service.

A Service's ClusterIP is fake; instead every service port gets a listener on a loopback
ephemeral port that proxies each connection to the next *ready* endpoint, round robin
(trying the others when a backend refuses). The address is recorded on the Service as the
annotations ``emulator.aml/url`` (first port, ``http://127.0.0.1:<port>``) and
``emulator.aml/ports`` (JSON, service port → local port), and for ``type: LoadBalancer``
also as ``status.loadBalancer.ingress`` (ip 127.0.0.1 and the ports).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading

from aml_emulator.cluster.models import lookup
from aml_emulator.cluster.store import Event, Store

log = logging.getLogger(__name__)
SERVICES = lookup("", "v1", "services")
ENDPOINTS = lookup("", "v1", "endpoints")
URL_ANNOTATION = "emulator.aml/url"
RETRY_BUFFER = 64 * 1024  # client bytes kept to replay on another replica if one dies unanswered
LB_PORTS_ANNOTATION = "emulator.aml/ports"


class _Listener:
    def __init__(self, server: asyncio.base_events.Server, port: int) -> None:
        self.server = server
        self.port = port
        self.next = 0


class ServiceBalancers:
    def __init__(self, store: Store, host: str = "127.0.0.1", connect_timeout: float = 2.0) -> None:
        self.store = store
        self.host = host
        self.connect_timeout = connect_timeout
        self.loop = asyncio.new_event_loop()
        self._listeners: dict[tuple[str, str, int], _Listener] = {}
        self._uids: dict[tuple[str, str], str] = {}
        self._thread: threading.Thread | None = None
        self._wake: asyncio.Event | None = None
        self._stopping = False
        self.connections = 0

    def start(self) -> None:
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self._wake = asyncio.Event()
            ready.set()
            self.loop.run_until_complete(self._main())
        self._thread = threading.Thread(target=run, name="cluster-service-lb", daemon=True)
        self._thread.start()
        ready.wait(10)
        self.store.add_listener(self._on_event)

    def _on_event(self, ev: Event) -> None:
        if ev.key == SERVICES.store_key and not self._stopping and self._wake is not None:
            try:
                self.loop.call_soon_threadsafe(self._wake.set)
            except RuntimeError:
                pass

    def stop(self) -> None:
        self._stopping = True
        if self._wake is not None and self._thread is not None:
            try:
                self.loop.call_soon_threadsafe(self._wake.set)
            except RuntimeError:
                pass
            self._thread.join(10)

    async def _main(self) -> None:
        assert self._wake is not None
        while not self._stopping:
            try:
                await self._reconcile()
            except Exception:  # pragma: no cover
                log.exception("service load balancer reconcile failed")
            try:
                await asyncio.wait_for(self._wake.wait(), 1.0)
            except TimeoutError:
                pass
            self._wake.clear()
        for lst in self._listeners.values():
            lst.server.close()
        for lst in self._listeners.values():
            await lst.server.wait_closed()
        self._listeners.clear()

    async def _reconcile(self) -> None:
        services, _ = self.store.list(SERVICES)
        wanted: set[tuple[str, str, int]] = set()
        for svc in services:
            ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
            uid = svc["metadata"]["uid"]
            if self._uids.get((ns, name)) not in (None, uid):
                for key in [k for k in self._listeners if k[:2] == (ns, name)]:
                    self._listeners.pop(key).server.close()
            self._uids[(ns, name)] = uid
            mapping: dict[str, int] = {}
            for sp in (svc.get("spec") or {}).get("ports") or []:
                if sp.get("protocol", "TCP") != "TCP":
                    continue
                key = (ns, name, int(sp["port"]))
                wanted.add(key)
                lst = self._listeners.get(key)
                if lst is None:
                    server = await self._listen(key, svc)
                    port = server.sockets[0].getsockname()[1]
                    lst = self._listeners[key] = _Listener(server, port)
                mapping[str(sp["port"])] = lst.port
            self._publish(svc, mapping)
        for key in [k for k in self._listeners if k not in wanted]:
            self._listeners.pop(key).server.close()
        for key in [k for k in self._uids if not any(w[:2] == k for w in wanted)]:
            self._uids.pop(key)

    async def _listen(self, key: tuple[str, str, int], svc: dict) -> asyncio.base_events.Server:
        """Listen on the port this service port had before (so its URL survives an emulator
        restart) when it is still free, else on a fresh ephemeral port."""
        try:
            previous = int(json.loads((svc["metadata"].get("annotations") or {}).get(LB_PORTS_ANNOTATION, "{}")).get(str(key[2]), 0))
        except (ValueError, TypeError, AttributeError):
            previous = 0
        handler = lambda r, w, k=key: self._handle(r, w, k)
        if previous and previous not in {lst.port for lst in self._listeners.values()}:
            try:
                return await asyncio.start_server(handler, self.host, previous)
            except OSError:
                pass
        return await asyncio.start_server(handler, self.host, 0)

    def _publish(self, svc: dict, mapping: dict[str, int]) -> None:
        ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
        ports = [int(p) for p in mapping]
        url = f"http://{self.host}:{mapping[str(ports[0])]}" if ports else None
        ann = svc["metadata"].get("annotations") or {}
        want_ann = {URL_ANNOTATION: url, LB_PORTS_ANNOTATION: json.dumps(mapping)} if url else {}
        if any(ann.get(k) != v for k, v in want_ann.items()):
            def fn(x: dict) -> dict:
                x["metadata"].setdefault("annotations", {}).update(want_ann)
                return x
            self.store.mutate(SERVICES, ns, name, fn)
        if (svc.get("spec") or {}).get("type") == "LoadBalancer" and url:
            ingress = [{"ip": self.host, "ipMode": "Proxy",
                        "ports": [{"port": v, "protocol": "TCP"} for v in mapping.values()]}]
            if ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") != ingress:
                self.store.mutate(SERVICES, ns, name,
                                  lambda x: x | {"status": {"loadBalancer": {"ingress": ingress}}},
                                  subresource="status")

    def backends(self, namespace: str, name: str, service_port: int) -> list[tuple[str, int]]:
        """The ready endpoint addresses for one service port, in a stable order."""
        svc = self.store.try_get(SERVICES, namespace, name)
        ep = self.store.try_get(ENDPOINTS, namespace, name)
        if svc is None or ep is None:
            return []
        sp = next((p for p in svc["spec"].get("ports") or [] if p.get("port") == service_port), None)
        if sp is None:
            return []
        out = []
        for sub in ep.get("subsets") or []:
            port = None
            for p in sub.get("ports") or []:
                if sp.get("name") is None or p.get("name") == sp.get("name"):
                    port = p.get("port")
                    break
            if port is None:
                continue
            for a in sub.get("addresses") or []:
                out.append((a["ip"], int(port)))
        return out

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      key: tuple[str, str, int]) -> None:
        """Proxy one client connection. A backend that refuses the connection, or closes it
        before sending a single byte back (a replica that died under the request), is
        retried on the next ready endpoint with the bytes the client sent so far, as long as
        they fit in ``RETRY_BUFFER``; once a backend has answered, the connection is its."""
        self.connections += 1
        lst = self._listeners.get(key)
        backends = self.backends(*key)
        sent = bytearray()
        state = {"client_eof": False, "overflow": False}
        try:
            if lst is None or not backends:
                return
            start = lst.next % len(backends)
            lst.next += 1
            for i in range(len(backends)):
                host, port = backends[(start + i) % len(backends)]
                try:
                    ur, uw = await asyncio.wait_for(asyncio.open_connection(host, port), self.connect_timeout)
                except (TimeoutError, OSError):
                    continue
                answered = await self._relay(reader, writer, ur, uw, sent, state)
                if answered or state["overflow"]:
                    return
        finally:
            try:
                writer.close()
            except OSError:
                pass

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     ur: asyncio.StreamReader, uw: asyncio.StreamWriter, sent: bytearray,
                     state: dict) -> bool:
        """Pipe both ways until the backend closes; True once it has answered anything."""
        answered = False
        try:
            if sent:
                uw.write(bytes(sent))
                await uw.drain()
            if state["client_eof"] and uw.can_write_eof():
                uw.write_eof()
        except OSError:
            uw.close()
            return False

        async def client_to_upstream() -> None:
            try:
                while True:
                    data = await reader.read(65536)
                    if not data:
                        state["client_eof"] = True
                        if uw.can_write_eof():
                            uw.write_eof()
                        return
                    if not answered:
                        if len(sent) + len(data) <= RETRY_BUFFER:
                            sent.extend(data)
                        else:
                            state["overflow"] = True
                    uw.write(data)
                    await uw.drain()
            except OSError:
                return

        pump = asyncio.create_task(client_to_upstream())
        try:
            while True:
                try:
                    data = await ur.read(65536)
                except OSError:
                    break
                if not data:
                    break
                answered = True
                writer.write(data)
                try:
                    await writer.drain()
                except OSError:
                    break
            if answered:
                # the backend is done: let the client side finish, then close
                await asyncio.wait_for(asyncio.shield(pump), 0.1) if not pump.done() else None
        except TimeoutError:
            pass
        finally:
            if not pump.done():
                pump.cancel()
                try:
                    await pump
                except (asyncio.CancelledError, OSError):
                    pass
            try:
                uw.close()
            except OSError:
                pass
        return answered
