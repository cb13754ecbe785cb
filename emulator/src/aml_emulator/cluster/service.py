"""``ClusterService``: the API server, controllers, kubelet and service load balancers,
started and stopped together."""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from aml_core.secure_files import private_dir, write_private

from aml_emulator._http import BackgroundServer
from aml_emulator.cluster import tls
from aml_emulator.cluster.admission import ensure_default_service_account
from aml_emulator.cluster.api import ClusterAPI
from aml_emulator.cluster.auth import TokenIssuer
from aml_emulator.cluster.metrics import ResourceMeter, node_capacity
from aml_emulator.cluster.models import lookup, now_rfc3339
from aml_emulator.cluster.store import Store

MetricsSource = Callable[[str, str], "float | None"]
#: where Secrets' at-rest key is kept when ``encryption_key_file=`` is not given (default:
#: ``<state_dir>/encryption-key``); the emulator's other services have no such setting
ENCRYPTION_KEY_ENV = "AML_EMULATOR_ENCRYPTION_KEY_FILE"
#: uvicorn's WebSocket implementation for exec and port-forward: wsproto, because kubectl's
#: port-forward subprotocol ``SPDY/3.1+portforward.k8s.io`` is no RFC 7230 token and the
#: ``websockets`` library refuses the handshake over it
WEBSOCKET_IMPLEMENTATION = "wsproto"
#: the label the AKS provider puts on a web service's Deployment (and HPA): the front door's
#: load, not CPU, scales those
WEB_SERVICE_LABEL = "aml.service"


class ClusterService:
    """An emulated Kubernetes cluster on a loopback ephemeral port.

    :param state_dir: where objects persist across restarts (``None``: in memory only;
        pod logs then go to a temporary directory removed on :meth:`stop`).
    :param host: the address to bind; loopback by default.
    :param pod_runtime: how the kubelet runs containers (default :class:`ProcessRuntime`).
    :param clock: a ``() -> float`` seconds clock for back-off and autoscaler windows
        (default ``time.monotonic``); tests inject a controllable one.
    :param backoff_base: the first CrashLoopBackOff delay in seconds (doubles, capped at
        ``backoff_cap``).
    :param metrics_source: ``(namespace, deployment) -> utilization percent | None`` for
        the HPA controller; settable later with :meth:`set_metrics_source`. By default the
        in-process front door's load of a web service's Deployment (``aml_core.frontdoor.deployment_name``,
        label ``aml.service``), and the CPU utilisation of their pods (:attr:`metrics`) for others.
    :param encryption_key_file: the AES-256 key (base64, made 0600 on first use) Secrets are
        sealed with in ``state_dir``; default ``$AML_EMULATOR_ENCRYPTION_KEY_FILE``, else
        ``<state_dir>/encryption-key``.
    :param metrics_resolution: seconds of ``clock`` a CPU and memory sample is kept for,
        shared by the metrics API (``kubectl top``) and the HPA (metrics-server's resolution).
    """

    def __init__(self, state_dir: str | Path | None = None, host: str = "127.0.0.1",
                 pod_runtime: Any = None, clock: Callable[[], float] | None = None,
                 backoff_base: float = 10.0, *, backoff_cap: float = 300.0,
                 metrics_source: MetricsSource | None = None, hpa_sync_period: float = 15.0,
                 hpa_downscale_window: float | None = None, controller_period: float = 0.2,
                 kubelet_period: float = 0.2, drain_delay: float = 0.3,
                 bookmark_interval: float = 5.0, token: str | None = None,
                 encryption_key_file: str | Path | None = None,
                 metrics_resolution: float = 15.0) -> None:
        self.state_dir = Path(state_dir) if state_dir is not None else None
        encryption_key_file = encryption_key_file or os.environ.get(ENCRYPTION_KEY_ENV) or None
        self.encryption_key_file = Path(encryption_key_file) if encryption_key_file is not None else None
        self.host = host
        self.clock = clock or time.monotonic
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self._explicit_token = token
        self.token = token or secrets.token_urlsafe(32)
        self._pod_runtime = pod_runtime
        self._metrics_source = metrics_source
        self._hpa_sync_period = hpa_sync_period
        self._hpa_downscale_window = hpa_downscale_window
        self._controller_period = controller_period
        self._kubelet_period = kubelet_period
        self._drain_delay = drain_delay
        self._bookmark_interval = bookmark_interval
        self._metrics_resolution = metrics_resolution
        self.metrics: ResourceMeter | None = None  # pods' and the node's CPU and memory (kubectl top, HPA)
        self._tmp: Path | None = None
        self.store: Store | None = None
        self.api: ClusterAPI | None = None
        self.server: BackgroundServer | None = None
        self.controllers: Any = None
        self.kubelet: Any = None
        self.balancers: Any = None
        self.kubeconfig_path: Path | None = None
        self.frontdoor: Any = None  # aml_core.frontdoor.FrontDoor, serving while started
        self.frontdoor_admin_token = secrets.token_urlsafe(32)
        self._frontdoor_server: BackgroundServer | None = None
        self._frontdoor_sync: Any = None
        self.ca_path: Path | None = None
        self.tokens: TokenIssuer | None = None  # signs and verifies service-account tokens

    # ------------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        if self.server is None:
            raise RuntimeError("the cluster is not started; call start() first")
        return self.server.url

    @property
    def frontdoor_url(self) -> str:
        """The front door (Azure ML's front end) before the scoring services, on loopback."""
        if self._frontdoor_server is None:
            raise RuntimeError("the cluster is not started; call start() first")
        return self._frontdoor_server.url

    def _frontdoor_utilization(self, namespace: str, deployment: str) -> float | None:
        """The front door's load of a web service's Deployment (Azure ML's autoscaler scales
        those on requests, not CPU; ``None`` until the front door routes it); for any other
        Deployment, the CPU utilisation of its pods from the meter ``kubectl top`` reads too."""
        load = self.frontdoor.utilization_by_deployment().get(deployment) if self.frontdoor else None
        if load is not None or self.metrics is None or self.store is None:
            return load
        d = self.store.try_get(lookup("apps", "v1", "deployments"), namespace, deployment)
        if d is None or WEB_SERVICE_LABEL in (d["metadata"].get("labels") or {}):
            return None
        return self.metrics.deployment_utilization(namespace, deployment)

    def start(self) -> ClusterService:
        if self.server is not None:
            raise RuntimeError("the cluster is already started")
        from aml_emulator.cluster.controllers import ControllerManager
        from aml_emulator.cluster.kubelet import Kubelet, ProcessRuntime
        from aml_emulator.cluster.loadbalancer import ServiceBalancers

        work = self.state_dir
        if work is None:
            self._tmp = Path(tempfile.mkdtemp(prefix="aml-cluster-"))
            work = self._tmp
        private_dir(work)
        endpoint = self._load_endpoint()
        self.store = Store(self.state_dir, encryption_key_file=self.encryption_key_file)
        self.store.start()
        self._bootstrap()
        # with a state dir the signing key persists, so tokens issued before a restart stay valid
        self.tokens = TokenIssuer.load_or_create(
            self.state_dir / "serviceaccount-signing-key" if self.state_dir is not None else None)
        runtime = self._pod_runtime or ProcessRuntime()
        self.kubelet = Kubelet(self.store, runtime, log_dir=work / "pod-logs", clock=self.clock,
                               backoff_base=self.backoff_base, backoff_cap=self.backoff_cap,
                               period=self._kubelet_period, drain_delay=self._drain_delay,
                               tokens=self.tokens,
                               process_record=work / "pod-processes.json" if self.state_dir is not None else None)
        self.kubelet.adopt_existing()
        self.api = ClusterAPI(self.store, self.token, logs=self.kubelet,
                              bookmark_interval=self._bookmark_interval, tokens=self.tokens)
        self.metrics = ResourceMeter(self.store, self.kubelet.running_container, clock=self.clock,
                                     resolution=self._metrics_resolution)
        self.api.metrics = self.metrics
        self.ca_path, crt, key = tls.generate(work / "tls", self.host)
        self.server = self._bind(endpoint.get("port", 0), crt, key)
        # what a real kubelet gives every pod: the API server's address and CA
        self.kubelet.api_host, self.kubelet.api_port = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host, self.server.port
        self.kubelet.ca_path = self.ca_path
        # Accepted sockets inherit TCP_NODELAY from the listener on Linux; without it every
        # keep-alive response (headers and body written separately) waits ~40 ms on Nagle.
        listener = getattr(self.server, "_sock", None)
        if listener is not None:
            listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.start()
        self.balancers = ServiceBalancers(self.store, host=self.host)
        self.balancers.start()
        from aml_core.frontdoor import FrontDoor

        self.frontdoor = FrontDoor(self.frontdoor_admin_token)
        # like the API's, the front door's port survives a restart: scoring URIs stay valid
        try:
            self._frontdoor_server = BackgroundServer(self.frontdoor, host=self.host, name="aml-frontdoor",
                                                      port=endpoint.get("frontdoor_port", 0))
        except OSError:
            self._frontdoor_server = BackgroundServer(self.frontdoor, host=self.host, name="aml-frontdoor")
        self._frontdoor_server._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._frontdoor_server.start()
        from aml_emulator.cluster.frontdoor_sync import FrontDoorSync

        self._frontdoor_sync = FrontDoorSync(self.store, self.frontdoor)
        self._frontdoor_sync.start()
        self._publish_frontdoor()
        self.controllers = ControllerManager(self.store, clock=self.clock, period=self._controller_period,
                                             metrics_source=self._metrics_source or self._frontdoor_utilization,
                                             hpa_sync_period=self._hpa_sync_period,
                                             hpa_downscale_window=self._hpa_downscale_window)
        self.controllers.start()
        self.kubelet.start()
        self.kubeconfig_path = work / "kubeconfig"
        self.write_kubeconfig(self.kubeconfig_path)
        self._save_endpoint()
        return self

    # With a state dir, the API port and the token survive a restart, so a kubeconfig (and a
    # client holding it) written before the restart keeps working.
    def _endpoint_file(self) -> Path | None:
        return self.state_dir / "cluster-endpoint.json" if self.state_dir is not None else None

    def _load_endpoint(self) -> dict:
        path = self._endpoint_file()
        if path is None or not path.exists():
            return {}
        try:
            data = json.loads(path.read_text())
        except ValueError:
            return {}
        if self._explicit_token is None and isinstance(data.get("token"), str):
            self.token = data["token"]
        return data if isinstance(data.get("port"), int) else {}

    def _save_endpoint(self) -> None:
        path = self._endpoint_file()
        if path is None or self.server is None:
            return
        write_private(path, json.dumps({"port": self.server.port, "token": self.token,
                                        "frontdoor_port": self._frontdoor_server.port if self._frontdoor_server else 0}).encode())

    def _bind(self, port: int, crt: Path, key: Path) -> BackgroundServer:
        try:
            return BackgroundServer(self.api, host=self.host, port=port, name="aml-cluster",
                                    certfile=str(crt), keyfile=str(key), ws=WEBSOCKET_IMPLEMENTATION)
        except OSError:
            if port == 0:
                raise
            return BackgroundServer(self.api, host=self.host, port=0, name="aml-cluster",
                                    certfile=str(crt), keyfile=str(key), ws=WEBSOCKET_IMPLEMENTATION)

    def stop(self) -> None:
        """Stop everything; every pod's process group is killed. Safe to call twice."""
        if self.api is not None:
            self.api.shutdown()
        if self._frontdoor_sync is not None:
            self._frontdoor_sync.stop()
            self._frontdoor_sync = None
        if self._frontdoor_server is not None:
            self.frontdoor.close()
            self._frontdoor_server.stop()
            self._frontdoor_server = self.frontdoor = None
        if self.controllers is not None:
            self.controllers.stop()
        if self.kubelet is not None:
            self.kubelet.stop()
        if self.balancers is not None:
            self.balancers.stop()
        if self.store is not None:
            self.store.close()
        if self.server is not None:
            # Open watch/log streams and idle TLS keep-alive connections would hold uvicorn's
            # graceful shutdown; the cluster is going away, so do not wait for clients.
            uv = getattr(self.server, "_server", None)
            if uv is not None:
                uv.force_exit = True
            self.server.stop()
        self.api = self.metrics = self.controllers = self.kubelet = self.balancers = self.store = self.server = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> ClusterService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self, timeout: float = 30.0) -> None:
        """Return to a fresh cluster (only the built-in namespaces and node): every object
        is removed and every pod's processes are killed. For a long-lived cluster shared
        by tests, called between them; resourceVersions keep increasing."""
        if self.store is None or self.kubelet is None:
            raise RuntimeError("the cluster is not started; call start() first")
        order = ["horizontalpodautoscalers", "deployments", "replicasets", "pods"]
        objs = sorted(self.store.all_objects(), key=lambda ro: order.index(ro[0].plural) if ro[0].plural in order else len(order))
        for rt, obj in objs:
            self.store.remove_now(rt, obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
        self.kubelet.wait_idle(timeout)
        for rt, obj in self.store.all_objects():  # whatever a controller wrote meanwhile
            self.store.remove_now(rt, obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
        self._bootstrap()
        if self.frontdoor is not None:
            self.frontdoor.clear()
            self._publish_frontdoor()

    def set_metrics_source(self, source: MetricsSource | None) -> None:
        """Feed the HPA controller: ``source(namespace, deployment_name)`` returns the
        current average utilization in percent of the target's resource (or ``None`` when
        unknown, which leaves the replica count alone)."""
        self._metrics_source = source
        if self.controllers is not None:
            self.controllers.metrics_source = source or self._frontdoor_utilization

    # ------------------------------------------------------------------ helpers
    def _bootstrap(self) -> None:
        assert self.store is not None
        ns = lookup("", "v1", "namespaces")
        for name in ("default", "kube-system", "kube-public", "kube-node-lease"):
            if self.store.try_get(ns, "", name) is None:
                self.store.create(ns, {"metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}},
                                       "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}})
            ensure_default_service_account(self.store, name)
        # the bootstrap RBAC policy's superuser role, bound to system:masters as on a real cluster
        bootstrap = {"kubernetes.io/bootstrapping": "rbac-defaults"}
        roles = lookup("rbac.authorization.k8s.io", "v1", "clusterroles")
        bindings = lookup("rbac.authorization.k8s.io", "v1", "clusterrolebindings")
        if self.store.try_get(roles, "", "cluster-admin") is None:
            self.store.create(roles, {"metadata": {"name": "cluster-admin", "labels": bootstrap,
                                                   "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}},
                                      "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                                                {"nonResourceURLs": ["*"], "verbs": ["*"]}]})
        if self.store.try_get(bindings, "", "cluster-admin") is None:
            self.store.create(bindings, {"metadata": {"name": "cluster-admin", "labels": bootstrap,
                                                      "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}},
                                         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                                     "name": "cluster-admin"},
                                         "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group",
                                                       "name": "system:masters"}]})
        nodes = lookup("", "v1", "nodes")
        if self.store.try_get(nodes, "", "emulator-node") is None:
            self.store.create(nodes, {"metadata": {"name": "emulator-node", "labels": {
                "kubernetes.io/hostname": "emulator-node", "kubernetes.io/os": "linux"}},
                "spec": {}, "status": {}})
        self.store.mutate(nodes, "", "emulator-node", lambda n: n | {"status": {
            "capacity": node_capacity(), "allocatable": node_capacity(),
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "message": "kubelet is posting ready status", "lastHeartbeatTime": now_rfc3339(),
                            "lastTransitionTime": now_rfc3339()}],
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": "emulator-node"}],
            "nodeInfo": {"kubeletVersion": "v1.32.0-aml-emulator", "operatingSystem": "linux", "architecture": "amd64",
                         "containerRuntimeVersion": "aml-process://1", "kernelVersion": "", "osImage": "", "machineID": "",
                         "systemUUID": "", "bootID": "", "kubeProxyVersion": ""}}}, subresource="status")

    def set_extended_resources(self, resources: dict[str, int]) -> None:
        """Advertise extended resources (e.g. ``microsoft.com/fpga``) in the node's capacity
        and allocatable, as a device plugin does; a count of 0 removes one. The kubelet keeps
        pods that request more than is allocatable Pending (``Unschedulable``)."""
        assert self.store is not None
        nodes = lookup("", "v1", "nodes")

        def update(node: dict) -> dict:
            status = dict(node.get("status") or {})
            for field in ("capacity", "allocatable"):
                values = {k: v for k, v in (status.get(field) or {}).items() if k not in resources}
                values.update({k: str(n) for k, n in resources.items() if n > 0})
                status[field] = values
            return node | {"status": status}
        self.store.mutate(nodes, "", "emulator-node", update, subresource="status")

    def _publish_frontdoor(self) -> None:
        """Tell clients where the front door is, the way a cluster with the front door
        installed does (:mod:`aml_core.frontdoor.kube`): namespace ``azureml``, ConfigMap and
        Secret ``azureml-fe``. Rewritten at every start, since the port is ephemeral."""
        from aml_core.frontdoor import kube

        assert self.store is not None
        ns, name = kube.NAMESPACE, kube.NAME
        namespaces, configmaps, secrets_ = (lookup("", "v1", p) for p in ("namespaces", "configmaps", "secrets"))
        if self.store.try_get(namespaces, "", ns) is None:
            self.store.create(namespaces, {"metadata": {"name": ns, "labels": {"kubernetes.io/metadata.name": ns}},
                                           "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}})
        ensure_default_service_account(self.store, ns)
        labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/managed-by": "aml-emulator"}
        token = base64.b64encode(self.frontdoor_admin_token.encode()).decode()
        for rt, body in ((configmaps, {"data": {kube.URL_KEY: self.frontdoor_url}}),
                         (secrets_, {"type": "Opaque", "data": {kube.ADMIN_TOKEN_KEY: token}})):
            obj = {"metadata": {"name": name, "namespace": ns, "labels": labels}, **body}
            if self.store.try_get(rt, ns, name) is None:
                self.store.create(rt, obj)
            else:
                self.store.mutate(rt, ns, name, lambda x, b=body: x | b)

    def kubeconfig(self, *, namespace: str = "default") -> dict:
        return {"apiVersion": "v1", "kind": "Config",
                "clusters": [{"name": "aml-emulator", "cluster": {
                    "server": self.url,
                    "certificate-authority-data": base64.b64encode(self.ca_path.read_bytes()).decode()}}],
                "users": [{"name": "aml-emulator-user", "user": {"token": self.token}}],
                "contexts": [{"name": "aml-emulator", "context": {"cluster": "aml-emulator", "user": "aml-emulator-user", "namespace": namespace}}],
                "current-context": "aml-emulator", "preferences": {}}

    def write_kubeconfig(self, path: str | Path, *, namespace: str = "default") -> Path:
        """Write a kubeconfig (mode 0600: it holds the bearer token) for kubectl or the
        ``kubernetes`` client's ``config.load_kube_config``."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        write_private(p, yaml.safe_dump(self.kubeconfig(namespace=namespace), sort_keys=False).encode())
        return p
