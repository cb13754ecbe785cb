"""Emulated IoT Edge devices: an edge agent that runs modules on the core's engines and an
edge hub that routes their messages (see :class:`EdgeDevice`)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

from aml_emulator._http import BackgroundServer
from aml_emulator.arm.tls import CertificateAuthority
from aml_emulator.iothub.addresses import allocate
from aml_emulator.iothub.edge.agent import EdgeAgent
from aml_emulator.iothub.edge.edgehub import EdgeHub
from aml_emulator.iothub.edge.workload import WorkloadApp
from aml_emulator.iothub.models import Hub

__all__ = ["EdgeDevice"]

log = logging.getLogger(__name__)


class EdgeDevice:
    """One IoT Edge device of ``hub``: its gateway address (own loopback IP, port 8883, TLS
    from the emulator's CA), workload API, edge hub and edge agent.

    :param clock: the agent's clock for restart back-off and the store's for message TTLs
        (``time.monotonic`` by default; tests pass one they advance).
    :param engine_factory: ``registry credentials -> Engine`` that runs modules
        (default :class:`aml_core.engines.ProcessEngine`).
    """

    def __init__(self, hub: Hub, device_id: str, *, state_dir: Path, ca: CertificateAuthority,
                 clock: Callable[[], float], address: str = "", engine_factory: Any = None,
                 backoff_base: float = 10.0) -> None:
        self.hub = hub
        self.device_id = device_id
        self.state_dir = Path(state_dir)
        self.address = allocate((8883,), address)
        certfile, keyfile = ca.issue_server_cert(self.state_dir, "edgehub", (self.address,))
        self.workload = BackgroundServer(WorkloadApp(hub, device_id, ca.cert_path.read_text()),
                                         name=f"aml-workload-{device_id}")
        self.edge_hub = EdgeHub(hub, device_id, address=self.address, certfile=str(certfile), keyfile=str(keyfile),
                                state_dir=self.state_dir / "edgehub", clock=clock,
                                known_modules=self._deployed_modules)
        self.agent = EdgeAgent(hub, device_id, gateway_hostname=self.address, workload_uri="",
                               clock=clock, engine_factory=engine_factory, backoff_base=backoff_base,
                               on_module_stopping=self.edge_hub.pause_module,
                               on_module_starting=self.edge_hub.resume_module)

    def _deployed_modules(self) -> set[str]:
        desired = self.hub.identity(self.device_id, "$edgeAgent").twin.desired
        return set((desired.get("modules") or {}).keys())

    def start(self) -> "EdgeDevice":
        self.workload.start()
        self.agent.workload_uri = self.workload.url + "/"
        self.edge_hub.start()
        self.agent.start()
        return self

    def stop(self) -> None:
        self.agent.stop()
        self.edge_hub.close()
        self.workload.stop(timeout=5)

    def __repr__(self) -> str:
        return f"EdgeDevice({self.device_id!r}, gateway={self.address!r})"
