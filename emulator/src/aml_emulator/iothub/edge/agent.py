"""The emulated edge agent: reads the ``$edgeAgent`` twin, runs modules, reports their state.

On every change of ``$edgeAgent`` desired properties the deployment is checked
(:mod:`.manifest`); a bad one is reported (``lastDesiredStatus`` 400/412/417 and a log line)
and not applied. A good one is reconciled: removed modules stop, changed ones are replaced,
new ones are pulled from their registry with the manifest's ``registryCredentials`` and started
on the core's engine in ``startupOrder``, with the edge environment
(``IOTEDGE_*``: hub and gateway host names, device and module ids, generation id, workload URI)
plus the module's ``env`` and the ``Env`` of its create options; its first
``HostConfig.PortBindings`` host port becomes the engine's port.

A supervisor thread looks at the modules every ``interval`` seconds; *when* a module restarts
is decided by the agent's ``clock`` (injectable): after an exit, ``restartPolicy`` says
whether (``always``: any exit; ``on-failure``/``on-unhealthy``: non-zero exit, as the
emulator has no health probes; ``never``: no) and the back-off doubles from ``backoff_base``
up to ``backoff_max``, as IoT Edge's cool-off does. A failed image pull is retried the same
way. Every module's ``runtimeStatus`` (``running``, ``backoff``, ``stopped``, ``failed``),
``exitCode``, ``restartCount`` and times go to the agent's reported properties.

Direct methods on ``$edgeAgent`` (as IoT Edge has them): ``GetModuleLogs`` and ``RestartModule``.
"""

from __future__ import annotations

import datetime as _dt
import logging
import threading
from typing import Any, Callable

import attrs

from aml_core.engines import Engine, ProcessEngine, RunningContainer
from aml_core.errors import AmlError
from aml_core.oci.testing import free_port

from aml_emulator.iothub.edge.manifest import Deployment, ManifestError, ModuleSpec, parse_agent_desired
from aml_emulator.iothub.exceptions import HubError
from aml_emulator.iothub.models import Hub

log = logging.getLogger(__name__)

#: seconds a module gets to finish after SIGTERM before it is killed
STOP_GRACE_SECONDS = 10.0
#: characters of a module's output kept across its restarts (for GetModuleLogs)
LOG_CHARS_KEPT = 256 * 1024


def _iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")


@attrs.define(eq=False)
class ModuleRuntime:
    spec: ModuleSpec
    container: RunningContainer | None = None
    image: Any = None
    runtime_status: str = "unknown"
    status_description: str = ""
    exit_code: int | None = None
    restart_count: int = 0
    failures_in_a_row: int = 0
    next_start: float = 0.0
    last_start: str | None = None
    last_exit: str | None = None
    last_restart: str | None = None
    old_logs: str = ""

    def logs(self) -> str:
        current = self.container.logs() if self.container is not None else ""
        return (self.old_logs + current)[-LOG_CHARS_KEPT:]

    def reported(self) -> dict[str, Any]:
        return {"runtimeStatus": self.runtime_status, "statusDescription": self.status_description,
                "exitCode": self.exit_code, "restartCount": self.restart_count,
                "lastStartTimeUtc": self.last_start, "lastExitTimeUtc": self.last_exit,
                "lastRestartTimeUtc": self.last_restart, "status": self.spec.status,
                "restartPolicy": self.spec.restart_policy, "version": self.spec.version, "type": "docker",
                "imagePullPolicy": self.spec.image_pull_policy,
                "settings": {"image": self.spec.image, "imageHash": getattr(self.image, "digest", None),
                             "createOptions": self.spec.create_options}}


class EdgeAgent:
    """Runs one edge device's modules (see the module docstring)."""

    def __init__(self, hub: Hub, device_id: str, *, gateway_hostname: str, workload_uri: str,
                 clock: Callable[[], float], engine_factory: Callable[[dict[str, tuple[str, str]]], Engine] | None = None,
                 backoff_base: float = 10.0, backoff_max: float = 300.0, interval: float = 0.1,
                 on_module_stopping: Callable[[str], None] | None = None,
                 on_module_starting: Callable[[str], None] | None = None) -> None:
        self.hub = hub
        self.device_id = device_id
        self.gateway_hostname = gateway_hostname
        self.workload_uri = workload_uri
        self.clock = clock
        self.engine_factory = engine_factory or (lambda creds: ProcessEngine(registry_credentials=creds))
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.interval = interval
        #: told before a module is stopped and before it starts, so the edge hub stops
        #: delivering to it first (its in-flight messages finish) and resumes after
        self.on_module_stopping = on_module_stopping or (lambda name: None)
        self.on_module_starting = on_module_starting or (lambda name: None)
        self.modules: dict[str, ModuleRuntime] = {}
        self.deployment: Deployment | None = None
        self.engine: Engine | None = None
        self._lock = threading.RLock()
        self._desired_changed = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_report: dict[str, Any] | None = None
        hub.desired_listeners.append(self._on_desired)
        hub.method_handlers[(device_id, "$edgeAgent")] = self.invoke_method

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> "EdgeAgent":
        self._desired_changed.set()
        self._thread = threading.Thread(target=self._supervise, name=f"aml-edgeagent-{self.device_id}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(15)
        with self._lock:
            for runtime in self.modules.values():
                self._stop_container(runtime)
        if self._on_desired in self.hub.desired_listeners:
            self.hub.desired_listeners.remove(self._on_desired)
        self.hub.method_handlers.pop((self.device_id, "$edgeAgent"), None)

    def _on_desired(self, device_id: str, module_id: str | None, _patch: dict[str, Any]) -> None:
        if device_id == self.device_id and module_id == "$edgeAgent":
            self._desired_changed.set()

    def _supervise(self) -> None:
        while not self._stop.is_set():
            try:
                if self._desired_changed.is_set():
                    self._desired_changed.clear()
                    twin = self.hub.identity(self.device_id, "$edgeAgent").twin
                    self.apply({**twin.desired, "$version": twin.desired_version})
                self.tick()
            except Exception:
                log.exception("edge agent %s: supervising failed", self.device_id)
            self._stop.wait(self.interval)

    # -- deployments ------------------------------------------------------------------------------

    def apply(self, desired: dict[str, Any]) -> None:
        """Check and reconcile one ``$edgeAgent`` desired document."""
        version = desired.get("$version")
        if not {k for k in desired if not k.startswith("$")}:
            return  # nothing deployed yet
        try:
            deployment = parse_agent_desired(desired)
        except ManifestError as exc:
            log.warning("edge agent %s: deployment version %s refused (%s): %s", self.device_id, version, exc.code, exc)
            self._report({"lastDesiredVersion": version,
                          "lastDesiredStatus": {"code": exc.code, "description": str(exc)}})
            return
        with self._lock:
            self.deployment = deployment
            self.engine = self.engine_factory(dict(deployment.registry_credentials))
            wanted = {m.name: m for m in deployment.modules}
            for name in [n for n in self.modules if n not in wanted]:
                self._stop_container(self.modules.pop(name))
                self._report({"modules": {name: None}})
            for spec in deployment.ordered():
                runtime = self.modules.get(spec.name)
                if runtime is not None and runtime.spec == spec:
                    continue
                if runtime is not None:
                    self._stop_container(runtime)
                    log.info("edge agent %s: replacing module %s", self.device_id, spec.name)
                self.modules[spec.name] = ModuleRuntime(spec=spec, old_logs=runtime.logs() if runtime else "")
        self._report({"lastDesiredVersion": version, "lastDesiredStatus": {"code": 200, "description": ""}})
        self.tick()

    def tick(self) -> None:
        """Start, watch and restart modules as their status, restart policy and the clock say."""
        with self._lock:
            if self.deployment is None:
                return
            now = self.clock()
            for spec in self.deployment.ordered():
                runtime = self.modules.get(spec.name)
                if runtime is None:
                    continue
                if spec.status == "stopped":
                    if runtime.container is not None:
                        self._stop_container(runtime)
                    runtime.runtime_status = "stopped"
                    continue
                if runtime.container is None:
                    if now >= runtime.next_start and runtime.runtime_status not in ("failed", "stopped"):
                        self._start(runtime, now)
                    continue
                code = runtime.container.wait(timeout=0)
                if code is not None:
                    self._exited(runtime, code, now)
            self._report_modules()

    def _start(self, runtime: ModuleRuntime, now: float) -> None:
        spec = runtime.spec
        assert self.engine is not None
        try:
            if runtime.image is None:
                runtime.image = self.engine.resolve(spec.image)
            identity = self.hub.identity(self.device_id, spec.name)
            env = {
                "IOTEDGE_IOTHUBHOSTNAME": self.hub.hostname, "IOTEDGE_DEVICEID": self.device_id,
                "IOTEDGE_MODULEID": spec.name, "IOTEDGE_GATEWAYHOSTNAME": self.gateway_hostname,
                "IOTEDGE_MODULEGENERATIONID": identity.generation_id, "IOTEDGE_WORKLOADURI": self.workload_uri,
                "IOTEDGE_APIVERSION": "2019-01-30", "IOTEDGE_AUTHSCHEME": "sasToken",
                "RuntimeLogLevel": "info", **spec.env,
            }
            self.on_module_starting(spec.name)
            runtime.container = self.engine.run(runtime.image, name=f"{self.device_id}-{spec.name}",
                                                port=spec.host_port or free_port(), env=env)
        except (AmlError, HubError, OSError) as exc:
            delay = self._backoff(runtime)
            runtime.runtime_status = "backoff"
            runtime.next_start = now + delay
            what = "pulling image" if runtime.image is None else "starting"
            runtime.status_description = f"{what} {spec.image} failed: {exc}"
            log.warning("edge agent %s: module %s: %s; retrying in %.0f s", self.device_id, spec.name,
                        runtime.status_description, delay)
            return
        if runtime.last_start is not None:
            runtime.restart_count += 1
            runtime.last_restart = _iso()
        runtime.last_start = _iso()
        runtime.runtime_status = "running"
        runtime.status_description = "running"
        runtime.exit_code = None
        log.info("edge agent %s: module %s started from %s", self.device_id, spec.name, spec.image)

    def _exited(self, runtime: ModuleRuntime, code: int, now: float) -> None:
        runtime.old_logs = runtime.logs()
        runtime.container = None
        runtime.exit_code = code
        runtime.last_exit = _iso()
        policy = runtime.spec.restart_policy
        restart = policy == "always" or (policy in ("on-failure", "on-unhealthy") and code != 0)
        if code == 0:
            runtime.failures_in_a_row = 0
        if restart:
            delay = self._backoff(runtime)
            runtime.runtime_status = "backoff"
            runtime.next_start = now + delay
            runtime.status_description = f"exited with code {code}; restarting in {delay:.0f} s"
        else:
            runtime.runtime_status = "failed" if code != 0 else "stopped"
            runtime.status_description = f"exited with code {code}; restartPolicy {policy} keeps it down"
        log.warning("edge agent %s: module %s exited with code %s", self.device_id, runtime.spec.name, code)

    def _backoff(self, runtime: ModuleRuntime) -> float:
        runtime.failures_in_a_row += 1
        return min(self.backoff_max, self.backoff_base * 2 ** (runtime.failures_in_a_row - 1))

    def _stop_container(self, runtime: ModuleRuntime) -> None:
        if runtime.container is not None:
            self.on_module_stopping(runtime.spec.name)
            runtime.container.stop(timeout=STOP_GRACE_SECONDS)
            runtime.old_logs = runtime.logs()
            runtime.container = None

    # -- direct methods ---------------------------------------------------------------------------

    def restart_module(self, name: str) -> None:
        """Stop a module and start it again at once (IoT Edge's ``RestartModule``)."""
        with self._lock:
            runtime = self.modules.get(name)
            if runtime is None:
                raise KeyError(name)
            self._stop_container(runtime)
            runtime.next_start = self.clock()
            runtime.failures_in_a_row = 0
            runtime.runtime_status = "backoff"
        self.tick()

    def module_logs(self, name: str, tail: int | None = None) -> str:
        with self._lock:
            runtime = self.modules.get(name)
            if runtime is None:
                raise KeyError(name)
            text = runtime.logs()
        if tail:
            text = "\n".join(text.splitlines()[-tail:])
        return text

    def invoke_method(self, method: str, payload: Any) -> tuple[int, Any]:
        payload = payload if isinstance(payload, dict) else {}
        try:
            if method == "GetModuleLogs":
                items = payload.get("items") or []
                return 200, [{"id": item.get("id"),
                              "payload": self.module_logs(item.get("id"), (item.get("filter") or {}).get("tail"))}
                             for item in items]
            if method == "RestartModule":
                self.restart_module(payload.get("id"))
                return 200, None
            if method == "ping":
                return 200, None
        except KeyError as exc:
            return 404, {"message": f"Module {exc.args[0]!r} is not in the deployment."}
        return 501, {"message": f"Method {method} is not implemented by the emulated edge agent "
                                f"(GetModuleLogs, RestartModule, ping are)."}

    # -- reporting --------------------------------------------------------------------------------

    def _report_modules(self) -> None:
        modules = {name: runtime.reported() for name, runtime in self.modules.items()}
        system = {"edgeAgent": {"runtimeStatus": "running", "type": "docker"},
                  "edgeHub": {"runtimeStatus": "running", "type": "docker", "status": "running",
                              "restartPolicy": "always"}}
        report = {"modules": modules, "systemModules": system}
        if report != self._last_report:
            self._last_report = report
            self._report(report)

    def _report(self, patch: dict[str, Any]) -> None:
        try:
            self.hub.patch_reported(self.device_id, "$edgeAgent", {
                **patch, "runtime": {"platform": {"os": "linux", "architecture": "x86_64", "version": "emulated"}},
                "schemaVersion": "1.1", "version": {"version": "1.4-emulated"}})
        except HubError:
            log.warning("edge agent %s: its $edgeAgent identity is gone", self.device_id)
