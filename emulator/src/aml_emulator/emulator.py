"""The ``Emulator`` object: one handle on every emulated service.

``with Emulator() as emu:`` starts the container registry, the Azure Resource Manager
endpoints and (when installed) the Kubernetes cluster, each on a loopback ephemeral port,
and hands out their endpoints and credentials, or all of them at once as a cloud profile
(:meth:`Emulator.profile`) for the providers.

What is kept in ``state_dir`` across restarts:

- ``emulator.json``: the format version, subscription id, resource group and registry name;
- ``secrets.json`` (mode 0600): the static ARM token and the cluster's token;
- ``ca.pem`` / ``ca-key.pem``: the CA clients trust for the ARM endpoints;
- ``registry/``, ``arm/``, ``cluster/``: each service's own state.
- ``iothub/<hub>/``: each IoT hub's identities, twins, configurations and messages (0700).

Ports are ephemeral, so they change at each start; the profile written by
``aml emulator start`` always carries the current ones.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import logging
import os
import secrets
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aml_core.errors import Conflict, InvalidConfig
from aml_core.profiles import CloudProfile
from aml_core.secure_files import private_dir

from aml_emulator.arm import ArmService, CertificateAuthority

log = logging.getLogger("aml_emulator")

#: every service the emulator knows, in start order
KNOWN_SERVICES = ("registry", "arm", "cluster", "iothub", "storage", "servicebus")
#: started only when named in ``services=``: IoT hubs listen on the IoT SDKs' fixed ports 443
#: and 8883 (root or CAP_NET_BIND_SERVICE); storage is Azurite (Node.js); the Service Bus
#: broker is python-qpid-proton
OPT_IN_SERVICES = ("iothub", "storage", "servicebus")
#: version of ``emulator.json``; a state directory written by a newer version is refused
STATE_FORMAT = 1
DEFAULT_RESOURCE_GROUP = "aml-emulator"
DEFAULT_REGISTRY_NAME = "amlemulator"
DEFAULT_PROFILE_NAME = "emulator"


LOCK_FILE = "emulator.lock"


class StateLocked(Conflict):
    """Another emulator process already runs on this state directory."""


def state_lock_holder(state_dir: str | Path) -> int | None:
    """The pid of the emulator running on ``state_dir`` (``0`` if unknown), or ``None``."""
    path = Path(state_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = path.read_text(encoding="utf-8").strip()
            return int(text) if text.isdigit() else 0
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _cluster_available() -> bool:
    try:
        from aml_emulator.cluster import ClusterService  # noqa: F401
    except ImportError:
        return False
    return True


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _write_json(path: Path, data: dict[str, Any], *, private: bool) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


class Emulator:
    """All emulated services, started together on loopback ephemeral ports.

    :param state_dir: where durable state lives; ``None`` keeps everything in a temporary
        directory removed on :meth:`stop`.
    :param host: the address every service binds; loopback by default. Anything else makes
        the emulator (and its unauthenticated-by-design parts) reachable from other machines,
        so it is an explicit opt-in.
    :param services: which services to start, among ``registry``, ``arm``, ``cluster`` and
        ``iothub`` (default: every one that is installed except ``iothub``, which must be
        named). Naming an unknown or uninstalled service fails here, before anything starts.
    :param loose: let the ARM endpoints accept any api-version (Azurite's
        ``--skipApiVersionCheck``); nothing else is relaxed.
    :param clock: a ``() -> float`` seconds clock for the cluster's back-off and autoscaler
        windows (default ``time.monotonic``); tests pass a controllable one.
    :param hpa_sync_period: seconds between two evaluations of one HorizontalPodAutoscaler
        (Kubernetes' default, 15, when ``None``).
    :param hpa_downscale_window: the scale-down stabilization window in seconds for HPAs that
        do not set ``behavior.scaleDown.stabilizationWindowSeconds`` (300 when ``None``).
    :param backoff_base: the first CrashLoopBackOff delay in seconds (10 when ``None``).

    The last four are the cluster's (:class:`~aml_emulator.cluster.ClusterService`); they
    let a test see an autoscaler or a restart within seconds instead of minutes. ``clock``
    also drives the ARM operation scripts set with :meth:`script_arm_operations`.

    :param arm_retry_after: seconds ARM asks clients to wait between polls of a long-running
        operation (1, as Azure, when ``None``; a fraction makes deployments answer sooner).
    :param container_engine: the :class:`aml_core.engines.Engine` that ARM resources with
        containers (ACI container groups) run them on; ``None``: the process engine. Pass
        ``aml_core.engines.get_engine("docker")`` to run them under Docker or podman.
    """

    def __init__(self, state_dir: str | Path | None = None, *, host: str = "127.0.0.1",
                 services: tuple[str, ...] | list[str] | None = None, loose: bool = False,
                 clock: Callable[[], float] | None = None, hpa_sync_period: float | None = None,
                 hpa_downscale_window: float | None = None, backoff_base: float | None = None,
                 arm_retry_after: float | None = None, container_engine: Any = None) -> None:
        if services is None:
            wanted = tuple(s for s in KNOWN_SERVICES
                           if (s != "cluster" or _cluster_available()) and s not in OPT_IN_SERVICES)
        else:
            wanted = tuple(dict.fromkeys(services))
            unknown = [s for s in wanted if s not in KNOWN_SERVICES]
            if unknown:
                raise InvalidConfig(
                    f"Unknown emulator service(s) {', '.join(unknown)}; choose among "
                    f"{', '.join(KNOWN_SERVICES)}."
                )
            if "cluster" in wanted and not _cluster_available():
                raise InvalidConfig(
                    "The cluster service is not installed in this aml-emulator; "
                    "leave 'cluster' out of services=, or upgrade aml-emulator."
                )
        self._owns_state = state_dir is None
        self.state_dir = Path(state_dir).expanduser() if state_dir is not None else None
        self.host = host
        self.wanted = wanted
        self.loose = loose
        # passed to the cluster only when given, so its own defaults stay in one place
        self._cluster_options: dict[str, Any] = {k: v for k, v in (
            ("clock", clock), ("hpa_sync_period", hpa_sync_period),
            ("hpa_downscale_window", hpa_downscale_window), ("backoff_base", backoff_base)) if v is not None}
        self._arm_options: dict[str, Any] = {k: v for k, v in (
            ("clock", clock), ("retry_after", arm_retry_after)) if v is not None}
        if container_engine is not None:
            self._arm_options["services"] = {"engine": container_engine}
        self.services: dict[str, Any] = {}
        self._identity: dict[str, Any] = {}
        self._secrets: dict[str, str] = {}
        self._ca: CertificateAuthority | None = None
        self._lock_fd: int | None = None
        if not _is_loopback(host):
            log.warning("emulator services will listen on %s, reachable from other machines", host)

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> "Emulator":
        if self._lock_fd is not None:
            return self
        if self.state_dir is None:
            self.state_dir = Path(tempfile.mkdtemp(prefix="aml-emulator-"))
        # 0700: the state holds tokens, keys and the cluster's Secrets (issue 11)
        private_dir(self.state_dir)
        self._lock_state()
        try:
            self._load_state()
            self._start_services()
        except BaseException:
            self.stop()
            raise
        return self

    def _lock_state(self) -> None:
        """Hold an exclusive lock on the state directory while running (released by the OS
        if the process dies), so two emulators never write the same state."""
        assert self.state_dir is not None
        fd = os.open(self.state_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = state_lock_holder(self.state_dir)
            raise StateLocked(
                f"Another emulator (pid {holder or 'unknown'}) is running on {self.state_dir}. "
                f"Stop it, or use another state directory (--state)."
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd

    def _unlock_state(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    def _load_state(self) -> None:
        assert self.state_dir is not None
        identity_path = self.state_dir / "emulator.json"
        if identity_path.exists():
            try:
                identity = json.loads(identity_path.read_text(encoding="utf-8"))
            except ValueError as exc:
                raise InvalidConfig(
                    f"{identity_path} is not valid JSON ({exc}); move the state directory aside "
                    f"and start again, or pass another --state."
                ) from None
            version = identity.get("format")
            if not isinstance(version, int) or version > STATE_FORMAT:
                raise InvalidConfig(
                    f"{identity_path} was written by a newer aml-emulator (format {version!r}, "
                    f"this one reads {STATE_FORMAT}); upgrade aml-emulator or use another --state."
                )
        else:
            identity = {
                "format": STATE_FORMAT,
                "subscription_id": str(uuid.uuid4()),
                "resource_group": DEFAULT_RESOURCE_GROUP,
                "registry_name": DEFAULT_REGISTRY_NAME,
            }
            _write_json(identity_path, identity, private=False)
        self._identity = identity

        secrets_path = self.state_dir / "secrets.json"
        stored: dict[str, str] = {}
        if secrets_path.exists():
            try:
                stored = json.loads(secrets_path.read_text(encoding="utf-8"))
            except ValueError:
                raise InvalidConfig(
                    f"{secrets_path} is not valid JSON; delete it to issue new tokens."
                ) from None
        wanted = {"arm_token": stored.get("arm_token"), "cluster_token": stored.get("cluster_token")}
        changed = False
        for key, value in wanted.items():
            if not isinstance(value, str) or not value:
                wanted[key] = secrets.token_urlsafe(32)
                changed = True
        if changed or not secrets_path.exists():
            _write_json(secrets_path, wanted, private=True)
        self._secrets = wanted  # type: ignore[assignment]

    def _start_services(self) -> None:
        assert self.state_dir is not None
        if "registry" in self.wanted:
            from aml_emulator.registry import RegistryService

            registry = RegistryService(
                self.state_dir / "registry", host=self.host, name=self.registry_name,
                aad_token_validator=self._validate_arm_token,
            )
            self.services["registry"] = registry.start()
        if "arm" in self.wanted:
            self._ca = CertificateAuthority.load_or_create(self.state_dir)
            arm = ArmService(self.state_dir / "arm", host=self.host, token=self._secrets["arm_token"],
                             ca=self._ca, loose=self.loose, **self._arm_options)
            if "registry" in self.services:
                arm.add_registry(self.registry_name, self.services["registry"],
                                 subscription_id=self.subscription_id, resource_group=self.resource_group)
            self.services["arm"] = arm.start()
        if "cluster" in self.wanted:
            from aml_emulator.cluster import ClusterService
            from aml_emulator.cluster.imageruntime import ImagePodRuntime

            # Pods pull their image from a registry and run it (a command runs inside the image);
            # only the pseudo-image emulator.aml/host-process runs a command on the host.
            cluster = ClusterService(self.state_dir / "cluster", host=self.host,
                                     token=self._secrets["cluster_token"], pod_runtime=ImagePodRuntime(),
                                     **self._cluster_options)
            self.services["cluster"] = cluster.start()
            if "arm" in self.services:  # managedClusters hand out this cluster's kubeconfig
                import yaml

                self.services["arm"].add_kubernetes(lambda: yaml.safe_dump(cluster.kubeconfig(), sort_keys=False),
                                                    node_resources=cluster.set_extended_resources)
        if "storage" in self.wanted:
            from aml_emulator.storage import StorageService

            self.services["storage"] = StorageService(self.state_dir / "storage", host=self.host).start()
        if "servicebus" in self.wanted:
            from aml_emulator.servicebus import ServiceBusService

            self.services["servicebus"] = ServiceBusService(self.state_dir / "servicebus", host=self.host).start()
            if "arm" in self.services:  # Microsoft.ServiceBus namespaces and queues are this broker's
                self.services["arm"].backend.services["servicebus"] = self.services["servicebus"]
        if "iothub" in self.wanted:
            self._start_iothub()

    def _start_iothub(self) -> None:
        """IoT hubs (created through ARM or :meth:`create_iothub`) share the ARM endpoints' CA."""
        from aml_emulator.iothub import IotHubService

        assert self.state_dir is not None
        if self._ca is None:
            self._ca = CertificateAuthority.load_or_create(self.state_dir)
        iothub = IotHubService(self.state_dir / "iothub", ca=self._ca)
        self.services["iothub"] = iothub.start()
        if "arm" in self.services:
            self.services["arm"].backend.services["iothub"] = iothub

    def _validate_arm_token(self, token: str, tenant: str | None) -> str | None:
        """Let ``/oauth2/exchange`` accept the ARM token, as ACR accepts an AAD token for ARM."""
        arm = self.services.get("arm")
        if arm is not None and arm.backend.tokens.accepts(token):
            return "emulator-user"
        return None

    def stop(self) -> None:
        """Stop every service (pods included); remove the state only if it was temporary."""
        for name in reversed(list(self.services)):
            try:
                self.services[name].stop()
            except Exception:  # keep stopping the others; report this one
                log.exception("stopping the %s service failed", name)
        self.services.clear()
        self._unlock_state()
        if self._owns_state and self.state_dir is not None:
            shutil.rmtree(self.state_dir, ignore_errors=True)
            self.state_dir = None

    def reset(self) -> None:
        """Empty every service's data (images, tokens issued since start, cluster objects
        where the cluster supports it). Identity, CA and static credentials stay."""
        for service in self.services.values():
            reset = getattr(service, "reset", None)
            if reset is not None:
                reset()

    def __enter__(self) -> "Emulator":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def script_arm_operations(self, resource_type: str, script: Any, *, operation: str | None = None,
                              name: str | None = None) -> None:
        """Script how ARM long-running operations on ``resource_type`` proceed, e.g.::

            from aml_emulator.arm import OperationScript
            emu.script_arm_operations("Microsoft.ContainerInstance/containerGroups",
                                      OperationScript.after_polls(3))
            emu.script_arm_operations("Microsoft.ContainerInstance/containerGroups",
                                      OperationScript.failing("InternalServerError", "Node lost."),
                                      operation="create", name="svc")

        ``OperationScript.immediate()``, ``.after_polls(n)``, ``.after_seconds(t)`` (on the
        ``clock`` given to the emulator) and ``.failing(code, message)``; ``operation`` is
        ``create``/``update``/``delete`` or an action name, ``name`` one resource. Scripts
        hold until :meth:`reset` or ``emu.arm.clear_operation_scripts()``.
        """
        self.arm.script_operations(resource_type, script, operation=operation, name=name)

    # -- endpoints and credentials ----------------------------------------------------------

    def _service(self, name: str) -> Any:
        try:
            return self.services[name]
        except KeyError:
            if name not in self.wanted:
                raise RuntimeError(f"the {name} service was not requested (services={self.wanted})") from None
            raise RuntimeError("the emulator is not running: call start() or use `with Emulator()`") from None

    @property
    def registry(self) -> Any:
        """The running :class:`~aml_emulator.registry.RegistryService` (``.url``,
        ``.login_server``, ``.credentials``)."""
        return self._service("registry")

    @property
    def arm(self) -> ArmService:
        """The running :class:`~aml_emulator.arm.ArmService` (``.url`` is ``https://...``)."""
        return self._service("arm")

    @property
    def cluster(self) -> Any:
        """The running :class:`~aml_emulator.cluster.ClusterService` (``.kubeconfig_path``)."""
        return self._service("cluster")

    @property
    def iothub(self) -> Any:
        """The running :class:`~aml_emulator.iothub.IotHubService` (``.create_hub(name)``, ``.hub(name)``)."""
        return self._service("iothub")

    def create_iothub(self, name: str) -> Any:
        """Create (or return) the IoT hub ``name``; what ``az iot hub create`` would do.
        Its ``connection_string()`` works with azure-iot-hub once ``REQUESTS_CA_BUNDLE`` names
        :attr:`ca_bundle`."""
        return self.iothub.create_hub(name)

    @property
    def storage(self) -> Any:
        """The running :class:`~aml_emulator.storage.StorageService` (Azurite;
        ``.connection_string``)."""
        return self._service("storage")

    @property
    def servicebus(self) -> Any:
        """The running :class:`~aml_emulator.servicebus.ServiceBusService` (AMQP;
        ``.connection_string``, ``.create_queue(name)``)."""
        return self._service("servicebus")

    @property
    def arm_token(self) -> str:
        """The static ARM bearer token (a secret: never log it)."""
        if not self._secrets:
            raise RuntimeError("the emulator is not running: call start() or use `with Emulator()`")
        return self._secrets["arm_token"]

    @property
    def ca_bundle(self) -> Path:
        """The CA certificate that signed the ARM endpoint's certificate."""
        return self.arm.ca_bundle

    @property
    def subscription_id(self) -> str:
        return self._identity_value("subscription_id")

    @property
    def resource_group(self) -> str:
        return self._identity_value("resource_group")

    @property
    def registry_name(self) -> str:
        return self._identity_value("registry_name")

    def _identity_value(self, key: str) -> str:
        if not self._identity:
            raise RuntimeError("the emulator is not running: call start() or use `with Emulator()`")
        return str(self._identity[key])

    def profile(self, name: str = DEFAULT_PROFILE_NAME) -> CloudProfile:
        """A cloud profile pointing the providers at this emulator (save it with ``.save()``).

        ``extra["registry_url"]`` is the registry's base URL (``http://127.0.0.1:PORT``);
        ``extra["storage_connection_string"]`` Azurite's, when the storage service runs.
        """
        kubeconfig = None
        if "cluster" in self.services and self.cluster.kubeconfig_path is not None:
            kubeconfig = str(self.cluster.kubeconfig_path)
        return CloudProfile(
            name=name,
            arm_endpoint=self.arm.url,
            ca_bundle=str(self.ca_bundle),
            subscription_id=self.subscription_id,
            resource_group=self.resource_group,
            registry_name=self.registry_name,
            registry_login_server=self.registry.login_server,
            arm_token=self.arm_token,
            kubeconfig=kubeconfig,
            extra={"registry_url": self.registry.url, **({"frontdoor_url": self.cluster.frontdoor_url,
                   "frontdoor_admin_token": self.cluster.frontdoor_admin_token} if kubeconfig else {}),
                   **({"storage_connection_string": self.storage.connection_string}
                      if "storage" in self.services else {}),
                   **({"service_bus_connection_string": self.servicebus.connection_string}
                      if "servicebus" in self.services else {})},
        )

    def endpoints(self) -> dict[str, str]:
        """``service -> URL`` of every running service (no secrets)."""
        return {name: service.url for name, service in self.services.items()}

    def __repr__(self) -> str:
        running = ", ".join(f"{k}={v}" for k, v in self.endpoints().items()) or "stopped"
        return f"Emulator({running})"
