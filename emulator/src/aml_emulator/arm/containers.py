"""Running the containers of an ARM resource: pull with credentials, start on the core's
engine, watch, restart by policy. Shared by every resource type whose containers really run
(ACI container groups; App Service web apps).

>>> running = ContainerSet(engine, [ContainerSpec(name="web", image="127.0.0.1:5000/app:1",
...                                               env={}, host_port=50123,
...                                               credentials={"127.0.0.1:5000": ("user", "pw")})],
...                        restart_policy="Always", label="aci-group")      # doctest: +SKIP
>>> running.start()            # pulls, then starts, in a background thread
>>> running.started.wait(); running.pull_failure, running.state, running.runtimes["web"].logs()
>>> running.stop()

A refused or failed pull is not retried: it sets :attr:`ContainerSet.pull_failure` (the image
and the registry's message), the container's events say ``Failed to pull image``, and its
logs show the same line, so the resource can fail its operation with it instead of hanging.
"""

from __future__ import annotations

import datetime as _dt
import socket
import threading
import time
from typing import Any

import attrs

#: the emulator's one public address: every running container is published here
PUBLIC_IP = "127.0.0.1"
#: seconds between two looks at the running containers (exits, restarts)
MONITOR_INTERVAL = 0.2
#: first and longest delay before restarting a container that exited (doubling)
RESTART_BACKOFF = (0.5, 10.0)
#: restart policies (ACI's words; App Service always restarts)
RESTART_POLICIES = ("Always", "OnFailure", "Never")
#: how much of the output of a container's earlier runs is kept
_EARLIER_LOG_CHARS = 200_000


def now() -> str:
    """An ARM timestamp."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat().replace("+00:00", "Z")


def engine(backend: Any) -> Any:
    """The engine containers run on: ``backend.services["engine"]``, else a
    :class:`aml_core.engines.ProcessEngine` made once and kept there."""
    found = backend.services.get("engine")
    if found is None:
        from aml_core.engines import ProcessEngine

        found = backend.services["engine"] = ProcessEngine()
    return found


def free_port(host: str = PUBLIC_IP) -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_free(port: int, host: str = PUBLIC_IP) -> bool:
    """Whether ``port`` can be bound (a port kept across a restart may have been taken)."""
    with socket.socket() as sock:
        # as the servers in containers do: a port whose old connections linger is free
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def pull_into(container_engine: Any, reference: str,
              credentials: dict[str, tuple[str | None, str | None]]) -> Any:
    """Pull ``reference`` (``host:port/repo:tag``) into ``container_engine``'s blob cache.

    :param credentials: ``{registry host: (username, password)}``; a registry not listed is
        pulled anonymously.
    :raises Exception: whatever the registry client raises (refused credentials, unknown
        image); callers put its text in the resource's state and logs.
    """
    from aml_core.oci.registry import Reference, RegistryClient

    ref = Reference.parse(reference.strip())
    user, password = credentials.get(ref.registry, (None, None))
    client = RegistryClient(ref.registry, username=user, password=password)
    return client.pull_image(ref.repository, ref.reference, blob_dir=container_engine.cache_dir / "blobs")


def pull_image(backend: Any, reference: str, credentials: dict[str, tuple[str | None, str | None]]) -> Any:
    """:func:`pull_into` the engine of ``backend``."""
    return pull_into(engine(backend), reference, credentials)


@attrs.frozen
class ContainerSpec:
    """One container to run: its image, environment, host port and pull credentials."""

    name: str
    image: str
    env: dict[str, str] = attrs.field(repr=False)
    #: the host port on 127.0.0.1 its serving port is published on (``None``: a free one)
    host_port: int | None
    #: ``registry host[:port] -> (username, password)`` for pulling
    credentials: dict[str, tuple[str | None, str | None]] = attrs.field(factory=dict, repr=False)


@attrs.frozen
class PullFailure:
    """Why an image could not be pulled (the registry's own message)."""

    image: str
    message: str


@attrs.define(eq=False)
class ContainerRuntime:
    """What runs for one container: its process handle, state and events."""

    name: str
    handle: Any = None
    #: ``Waiting`` | ``Running`` | ``Terminated`` (ACI's words)
    state: str = "Waiting"
    detail: str = ""
    exit_code: int | None = None
    start_time: str | None = None
    finish_time: str | None = None
    previous: dict[str, Any] | None = None
    restart_count: int = 0
    events: list[dict[str, Any]] = attrs.field(factory=list)
    #: log text of runs that ended (a restarted container keeps its previous output)
    earlier_logs: str = ""
    #: shown as the log when nothing ran (a failed pull or start)
    failure_log: str = ""
    next_restart: float = 0.0
    backoff: float = RESTART_BACKOFF[0]

    def event(self, name: str, message: str, kind: str = "Normal") -> None:
        stamp = now()
        for existing in self.events:
            if existing["name"] == name and existing["message"] == message:
                existing["count"] += 1
                existing["lastTimestamp"] = stamp
                return
        self.events.append({"count": 1, "firstTimestamp": stamp, "lastTimestamp": stamp, "name": name,
                            "message": message, "type": kind})

    def logs(self) -> str:
        current = self.handle.logs() if self.handle is not None else ""
        return self.earlier_logs + current if (self.earlier_logs or current) else self.failure_log

    def keep_output(self) -> None:
        """Move the current run's output into :attr:`earlier_logs` and forget its handle."""
        if self.handle is not None:
            self.earlier_logs = (self.earlier_logs + self.handle.logs())[-_EARLIER_LOG_CHARS:]
            self.handle = None


class ContainerSet:
    """Pulls and runs some containers on ``engine`` (an :class:`aml_core.engines.Engine`), in
    a background thread, and restarts those that exit as ``restart_policy`` says.

    :attr:`started` is set once every container was started, or a pull failed
    (:attr:`pull_failure`); :attr:`state` is ``Pending``, ``Running``, ``Succeeded``,
    ``Failed`` (a pull failed, or every container ended and one failed) or ``Stopped``.
    """

    def __init__(self, engine: Any, specs: list[ContainerSpec], *, restart_policy: str = "Always",
                 label: str = "containers") -> None:
        if restart_policy not in RESTART_POLICIES:
            raise ValueError(f"restart_policy must be one of {', '.join(RESTART_POLICIES)}")
        self.engine = engine
        self.specs = {spec.name: spec for spec in specs}
        self.restart_policy = restart_policy
        self.label = label
        self.runtimes = {spec.name: ContainerRuntime(spec.name) for spec in specs}
        self.state = "Pending"
        self.pull_failure: PullFailure | None = None
        self.started = threading.Event()
        self._stopped = threading.Event()
        self._images: dict[str, Any] = {}
        self.lock = threading.RLock()

    def __repr__(self) -> str:
        return f"ContainerSet({self.label!r}, {self.state}, {list(self.specs)})"

    def start(self) -> "ContainerSet":
        threading.Thread(target=self._run, name=self.label, daemon=True).start()
        return self

    # -- the background thread ------------------------------------------------------------

    def _run(self) -> None:
        for spec in self.specs.values():
            runtime = self.runtimes[spec.name]
            runtime.event("Pulling", f'pulling image "{spec.image}"')
            try:
                self._images[spec.name] = self._pull(spec)
            except Exception as exc:  # any pull failure fails the set, with the registry's reason
                message = f'Failed to pull image "{spec.image}": {exc}'
                runtime.event("Failed", message, "Warning")
                runtime.detail, runtime.failure_log = "ErrImagePull", message + "\n"
                with self.lock:
                    self.pull_failure = PullFailure(spec.image, str(exc))
                    self.state = "Failed"
                self.started.set()
                return
            runtime.event("Pulled", f'Successfully pulled image "{spec.image}"')
        with self.lock:
            if self._stopped.is_set():
                return
            for spec in self.specs.values():
                self._launch(spec)
            self.state = "Running"
        self.started.set()
        self._monitor()

    def _pull(self, spec: ContainerSpec) -> Any:
        return pull_into(self.engine, spec.image, spec.credentials)

    def _launch(self, spec: ContainerSpec) -> None:
        runtime = self.runtimes[spec.name]
        try:
            runtime.handle = self.engine.run(self._images[spec.name], name=f"{self.label}-{spec.name}",
                                             port=spec.host_port or free_port(), env=spec.env)
        except Exception as exc:  # the engine could not start it: the container waits
            runtime.state, runtime.detail = "Waiting", "ContainerCannotRun"
            runtime.event("Failed", f"Failed to start container: {exc}", "Warning")
            runtime.failure_log = f"Failed to start container: {exc}\n"
            return
        runtime.state, runtime.detail, runtime.exit_code = "Running", "", None
        runtime.start_time, runtime.finish_time = now(), None
        runtime.event("Started", f"Started container {spec.name}")

    def _monitor(self) -> None:
        while not self._stopped.wait(MONITOR_INTERVAL):
            with self.lock:
                if self._stopped.is_set():
                    return
                for spec in self.specs.values():
                    runtime = self.runtimes[spec.name]
                    if runtime.handle is not None and runtime.state == "Running":
                        status = runtime.handle.wait(timeout=0)
                        if status is not None:
                            self._exited(runtime, status)
                    elif runtime.state == "Terminated" and runtime.next_restart \
                            and time.monotonic() >= runtime.next_restart:
                        runtime.next_restart = 0.0
                        runtime.restart_count += 1
                        self._launch(spec)
                self._update_state()

    def _exited(self, runtime: ContainerRuntime, status: int) -> None:
        runtime.keep_output()
        runtime.previous = {"state": "Terminated", "startTime": runtime.start_time, "exitCode": status,
                            "finishTime": now(), "detailStatus": "Completed" if status == 0 else "Error"}
        runtime.state, runtime.exit_code, runtime.finish_time = "Terminated", status, now()
        runtime.detail = "Completed" if status == 0 else "Error"
        runtime.event("Killing" if status else "Completed", f"Container {runtime.name} exited with code {status}",
                      "Warning" if status else "Normal")
        if self.restart_policy == "Always" or (self.restart_policy == "OnFailure" and status != 0):
            runtime.next_restart = time.monotonic() + runtime.backoff
            runtime.backoff = min(runtime.backoff * 2, RESTART_BACKOFF[1])

    def _update_state(self) -> None:
        runtimes = list(self.runtimes.values())
        if all(r.state == "Terminated" and not r.next_restart for r in runtimes):
            self.state = "Succeeded" if all(r.exit_code == 0 for r in runtimes) else "Failed"
        else:
            self.state = "Running"

    # -- stopping -------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop every container (SIGTERM, then SIGKILL); their output stays readable."""
        self._stopped.set()
        with self.lock:
            for runtime in self.runtimes.values():
                handle = runtime.handle
                if handle is not None:
                    handle.stop(timeout=5)
                    runtime.keep_output()
                    runtime.state, runtime.detail, runtime.finish_time = "Terminated", "Stopped", now()
                    runtime.event("Killing", f"Killing container {runtime.name}")
                runtime.next_restart = 0.0
            if self.state != "Failed":
                self.state = "Stopped"
