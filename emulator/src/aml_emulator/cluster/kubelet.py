"""The kubelet: runs every pod's containers through a pluggable :class:`PodRuntime`,
probes them, restarts them with CrashLoopBackOff, keeps their logs, and reports pod status.

The seam: a runtime gets the *whole* pod (image, imagePullSecrets, everything) and one
container of it, the resolved environment and the port mapping, and returns a handle.
:class:`ProcessRuntime` runs ``command`` + ``args`` as a local process in its own process
group; an image-based runtime (pull the image from the registry with the pod's
imagePullSecrets, then run its entrypoint with the process engine) plugs in the same way.

Each pod gets distinct loopback ports: every declared ``containerPort`` maps to a host
port on 127.0.0.1 (the first is also exported as ``PORT``), recorded in the pod
annotations ``emulator.aml/port`` and ``emulator.aml/ports`` (JSON, containerPort → port).
Note: the environment of a local process, secrets included, is readable by the same uid
through ``/proc/<pid>/environ``.
"""

from __future__ import annotations

import atexit
import base64
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import attrs
from aml_core.limits import OOM_EXIT_CODE, cpu_limit_note, parse_quantity, rss_by_group

from aml_emulator.cluster import exceptions as err
from aml_emulator.cluster import volumes as vol
from aml_emulator.cluster.auth import API_AUDIENCES, POD_TOKEN_SECONDS, TokenIssuer
from aml_emulator.cluster.controllers import PORT_ANNOTATION, PORTS_ANNOTATION, record_event
from aml_emulator.cluster.models import is_terminating, lookup, now_rfc3339
from aml_emulator.cluster.store import Store
from aml_emulator.guardian import GuardedRuntime, ProcessGuardian, end_recorded_survivors

log = logging.getLogger(__name__)

PODS = lookup("", "v1", "pods")
NODES = lookup("", "v1", "nodes")
SECRETS = lookup("", "v1", "secrets")
CONFIGMAPS = lookup("", "v1", "configmaps")
SERVICEACCOUNTS = lookup("", "v1", "serviceaccounts")
NODE_NAME = "emulator-node"
#: a pod condition, False when a container's CPU limit is not enforced on this node
CPU_LIMIT_CONDITION = "emulator.aml/CPULimitEnforced"
POD_IP = "127.0.0.1"
_INHERITED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "USER", "SYSTEMROOT")
#: the pseudo-image that opts a container into running its ``command`` as a plain host
#: process; every other image must be pulled from a registry (by an image runtime)
HOST_PROCESS_IMAGE = "emulator.aml/host-process"


class ContainerConfigError(Exception):
    """The container cannot be configured yet (a missing secret or config map key)."""


class RunContainerError(Exception):
    """The runtime could not start the container."""


class ImagePullError(RunContainerError):
    """The runtime could not pull the container's image (the pod shows ``ErrImagePull``,
    then ``ImagePullBackOff`` while it retries with back-off)."""


class ContainerLog:
    """A bounded log for one container instance: ``current.log`` rotated at ``max_bytes``
    into ``current.log.1`` (one generation kept), plus ``previous.log`` for the instance
    before the last restart (what ``kubectl logs --previous`` shows)."""

    def __init__(self, directory: Path, max_bytes: int = 1 << 20) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._fh = open(self.current_path, "ab")

    @property
    def current_path(self) -> Path:
        return self.directory / "current.log"

    def write(self, data: bytes) -> None:
        with self._lock:
            if self._fh.closed:
                return
            if self._fh.tell() + len(data) > self.max_bytes:
                self._fh.close()
                os.replace(self.current_path, self.directory / "current.log.1")
                self._fh = open(self.current_path, "ab")
            self._fh.write(data)
            self._fh.flush()

    def read(self) -> bytes:
        with self._lock:
            out = b""
            for p in (self.directory / "current.log.1", self.current_path):
                if p.exists():
                    out += p.read_bytes()
            return out

    def read_previous(self) -> bytes | None:
        p = self.directory / "previous.log"
        return p.read_bytes() if p.exists() else None

    def new_instance(self) -> None:
        """Called on a restart: the current instance's log becomes the previous one."""
        with self._lock:
            self._fh.close()
            data = b""
            for p in (self.directory / "current.log.1", self.current_path):
                if p.exists():
                    data += p.read_bytes()
                    p.unlink()
            (self.directory / "previous.log").write_bytes(data[-self.max_bytes:])
            self._fh = open(self.current_path, "ab")

    def close(self) -> None:
        with self._lock:
            self._fh.close()


@runtime_checkable
class PodRuntime(Protocol):
    """How the kubelet runs one container of a pod.

    ``start`` receives the full pod object (``spec.containers[*].image``,
    ``spec.imagePullSecrets`` ...), the container to run, its resolved environment (``PORT``
    included), the port mapping ``{containerPort: hostPort}`` on 127.0.0.1, the log to write
    output into, a scratch working directory, and ``pull_auth``: the pod's imagePullSecrets
    already resolved and decoded, ``{registry host: {"username", "password"}}`` (what a
    runtime that pulls images needs; others ignore it). It returns an opaque handle, or raises
    :class:`RunContainerError` (shown as ``RunContainerError``) or :class:`ImagePullError`
    (``ErrImagePull`` / ``ImagePullBackOff``); either is retried with back-off. ``start``
    may block (a pull); only that pod waits.
    """

    def start(self, pod: dict, container: dict, *, env: dict[str, str], ports: dict[int, int],
              log: ContainerLog, workdir: Path, pull_auth: dict[str, dict[str, str]]) -> Any: ...

    def poll(self, handle: Any) -> int | None:
        """The exit code once the container has exited (negative: killed by that signal),
        else ``None``."""

    def kill(self, handle: Any, grace: float) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; every process of the container
        (its whole process group) must be gone when this returns."""

    def logs(self, handle: Any) -> ContainerLog:
        """The log the container writes into."""


Files = vol.Files


def expand_vars(text: str, env: dict[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion in command and args; ``$$(VAR)`` escapes."""
    def repl(m: re.Match) -> str:
        if m.group(0).startswith("$$"):
            return m.group(0)[1:]
        return env.get(m.group(1), m.group(0))
    return re.sub(r"\$\$?\(([A-Za-z_][A-Za-z0-9_.-]*)\)", repl, text)


class _Process:
    def __init__(self, popen: subprocess.Popen, log: ContainerLog) -> None:
        self.popen = popen
        self.pgid = popen.pid
        self.log = log
        self.pump = threading.Thread(target=self._pump, name=f"pod-log-{popen.pid}", daemon=True)
        self.pump.start()

    def _pump(self) -> None:
        assert self.popen.stdout is not None
        for chunk in iter(lambda: self.popen.stdout.read1(65536), b""):  # type: ignore[union-attr]
            self.log.write(chunk)


class ProcessRuntime:
    """Runs ``command`` + ``args`` as a local process in its own process group, for
    containers whose image is :data:`HOST_PROCESS_IMAGE` (the explicit opt-in); it pulls
    no image, so any other image fails to pull (``ErrImagePull``), as a typo would."""

    def start(self, pod: dict, container: dict, *, env: dict[str, str], ports: dict[int, int],
              log: ContainerLog, workdir: Path, pull_auth: dict[str, dict[str, str]] | None = None) -> _Process:
        image = (container.get("image") or "").strip()
        if image != HOST_PROCESS_IMAGE:
            raise ImagePullError(
                f'failed to pull and unpack image "{image}": this cluster\'s pod runtime pulls no images; '
                f'run the command on the host with image "{HOST_PROCESS_IMAGE}", or start the cluster '
                "with an image runtime (ImagePodRuntime, as `aml emulator start` does)")
        cmd = [expand_vars(str(a), env) for a in (container.get("command") or []) + (container.get("args") or [])]
        if not container.get("command"):
            raise RunContainerError(
                f'container "{container.get("name")}" has no command: the process runtime runs '
                f'command+args and cannot run image "{container.get("image")}" by itself; configure '
                "an image-based pod runtime for that")
        full_env = {k: os.environ[k] for k in _INHERITED_ENV if k in os.environ}
        full_env.update(env)
        cwd = container.get("workingDir")
        if not cwd or not Path(cwd).is_dir():
            cwd = str(workdir)
        try:
            popen = subprocess.Popen(cmd, env=full_env, cwd=cwd, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        except OSError as e:
            raise RunContainerError(f"failed to start container process {cmd[0]!r}: {e}") from e
        return _Process(popen, log)

    def poll(self, handle: _Process) -> int | None:
        if handle.popen.returncode is None:
            try:
                exited = os.waitid(os.P_PID, handle.popen.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                exited = None
            if exited is not None:
                # As when a container's main process ends: nothing it started keeps running.
                # Not reaped yet (WNOWAIT), the leader still holds its group id, so the
                # signal cannot reach a group that reused it.
                try:
                    os.killpg(handle.pgid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        return handle.popen.poll()

    def kill(self, handle: _Process, grace: float) -> None:
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(handle.pgid, sig)
            except (ProcessLookupError, PermissionError):
                break
            try:
                handle.popen.wait(timeout=max(wait, 0.0))
            except subprocess.TimeoutExpired:
                continue
            if sig == signal.SIGTERM:
                # the leader is gone; make sure nothing of its group outlives it
                try:
                    os.killpg(handle.pgid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            break
        try:
            handle.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover
            pass
        handle.pump.join(2)

    def logs(self, handle: _Process) -> ContainerLog:
        return handle.log


# ---------------------------------------------------------------------------- probes

def run_probe(probe: dict, ports: dict[int, int], container: dict, env: dict[str, str],
              main_port: int) -> bool:
    timeout = float(probe.get("timeoutSeconds", 1))

    def resolve(port: Any) -> int:
        if isinstance(port, str) and not port.isdigit():
            for p in container.get("ports") or []:
                if p.get("name") == port:
                    port = p.get("containerPort")
                    break
            else:
                return main_port
        return ports.get(int(port), main_port if not ports else int(port))

    try:
        if "httpGet" in probe:
            hg = probe["httpGet"]
            path = hg.get("path", "/")
            req = urllib.request.Request(f"http://127.0.0.1:{resolve(hg.get('port'))}{path if path.startswith('/') else '/' + path}")
            for h in hg.get("httpHeaders") or []:
                req.add_header(h.get("name"), h.get("value"))
            try:
                with urllib.request.urlopen(req, timeout=timeout) as resp:
                    return 200 <= resp.status < 400
            except urllib.error.HTTPError as e:
                return 200 <= e.code < 400
        if "tcpSocket" in probe:
            with socket.create_connection(("127.0.0.1", resolve(probe["tcpSocket"].get("port"))), timeout=timeout):
                return True
        if "exec" in probe:
            cmd = (probe["exec"] or {}).get("command") or []
            full_env = {k: os.environ[k] for k in _INHERITED_ENV if k in os.environ} | env
            r = subprocess.run(cmd, env=full_env, timeout=timeout, capture_output=True, start_new_session=True)
            return r.returncode == 0
        if "grpc" in probe:
            with socket.create_connection(("127.0.0.1", resolve(probe["grpc"].get("port"))), timeout=timeout):
                return True
    except (OSError, subprocess.SubprocessError, ValueError):
        return False
    return False


class _ProbeState:
    def __init__(self, probe: dict | None) -> None:
        self.probe = probe
        self.successes = 0
        self.failures = 0
        self.next_at: float | None = None
        self.ok = False


# ---------------------------------------------------------------------------- containers

class _Container:
    def __init__(self, spec: dict) -> None:
        self.spec = spec
        self.name = spec["name"]
        self.handle: Any = None
        self.started_wall: str | None = None
        self.started_clock = 0.0
        self.restart_count = 0
        self.crashes = 0
        self.next_start = 0.0
        self.state: dict = {"waiting": {"reason": "ContainerCreating"}}
        self.last_state: dict = {}
        self.done = False  # terminated for good (restart policy says no)
        self.ready = False
        self.started = False
        self.ever_started = False
        self.instances = 0
        self.log: ContainerLog | None = None
        self.env: dict[str, str] = {}
        limits = (spec.get("resources") or {}).get("limits") or {}
        #: enforced by the kubelet's watchdog (aml_core.limits); ``cpu`` cannot be, and says so
        self.memory_limit = _quantity_or_none(limits.get("memory"))
        self.cpu_limit = _quantity_or_none(limits.get("cpu"))
        self.oom_killed = False
        self.liveness = _ProbeState(spec.get("livenessProbe"))
        self.readiness = _ProbeState(spec.get("readinessProbe"))
        self.startup = _ProbeState(spec.get("startupProbe"))

    def status(self) -> dict:
        st = {"name": self.name, "image": self.spec.get("image", ""), "imageID": "",
              "ready": self.ready, "restartCount": self.restart_count, "started": self.started,
              "state": self.state, "lastState": self.last_state}
        if self.handle is not None:
            pid = getattr(self.handle, "pgid", None)
            st["containerID"] = f"aml-process://{pid}" if pid else "aml-process://unknown"
        return st


def _quantity_or_none(value: Any) -> float | None:
    if value is None:
        return None
    try:
        return parse_quantity(value)
    except ValueError:  # admission let it through: treat it as no limit rather than fail the pod
        return None


class _PodWorker:
    def __init__(self, kubelet: Kubelet, pod: dict) -> None:
        self.kubelet = kubelet
        self.ns = pod["metadata"]["namespace"]
        self.name = pod["metadata"]["name"]
        self.uid = pod["metadata"]["uid"]
        #: the extended resources (FPGAs) this pod holds while it runs
        self.extended = _extended_requests(pod)
        self.containers = [_Container(c) for c in pod["spec"].get("containers") or []]
        self.ports: dict[int, int] = {}
        self.main_port = 0
        self.dir = kubelet.log_dir / f"{self.ns}_{self.name}_{self.uid[:8]}"
        self.workdir = self.dir / "work"
        self.volumes_dir = self.dir / "volumes"
        self.mounted: dict[str, Path] = {}  # volume name → its host directory
        self.volumes_ready = False
        self._volume_content: dict[str, Files] = {}
        self._mount_errors: set[str] = set()
        self._next_volume_sync = 0.0
        # (volume, path) → (token, monotonic time to refresh it)
        self._tokens: dict[tuple[str, str], tuple[bytes, float]] = {}
        self.sa_volume = f"kube-api-access-{self.uid[:5]}"
        self.start_time = now_rfc3339()
        self._stop = threading.Event()
        self.finished = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"pod-{self.ns}-{self.name}", daemon=True)

    # ------------------------------------------------------------- setup
    def _allocate_ports(self, pod: dict) -> None:
        declared: list[int] = []
        for c in pod["spec"].get("containers") or []:
            for p in c.get("ports") or []:
                cp = p.get("containerPort")
                if isinstance(cp, int) and cp not in declared:
                    declared.append(cp)
        n = max(1, len(declared))
        hosts = [self.kubelet.ports.allocate() for _ in range(n)]
        self.ports = dict(zip(declared, hosts))
        self.main_port = hosts[0]

        def annotate(x: dict) -> dict:
            a = x["metadata"].setdefault("annotations", {})
            a[PORT_ANNOTATION] = str(self.main_port)
            a[PORTS_ANNOTATION] = json.dumps({str(k): v for k, v in self.ports.items()})
            if not x["spec"].get("nodeName"):
                x["spec"]["nodeName"] = NODE_NAME
            return x
        self.kubelet.store.mutate(PODS, self.ns, self.name, annotate)

    def _resolve_env(self, pod: dict, c: dict) -> dict[str, str]:
        store = self.kubelet.store
        env: dict[str, str] = {}
        k = self.kubelet
        if k.api_port:  # as a real kubelet: the "kubernetes" service, i.e. the API server
            env |= {"KUBERNETES_SERVICE_HOST": k.api_host, "KUBERNETES_SERVICE_PORT": str(k.api_port),
                    "KUBERNETES_SERVICE_PORT_HTTPS": str(k.api_port),
                    "KUBERNETES_PORT": f"tcp://{k.api_host}:{k.api_port}"}
        env |= {"PORT": str(self.main_port), "HOSTNAME": self.name, "KUBERNETES_NAMESPACE": self.ns}
        for cp, hp in self.ports.items():
            env[f"PORT_{cp}"] = str(hp)

        def lookup_key(rt, ref: dict, what: str) -> str | None:
            obj = store.try_get(rt, self.ns, ref.get("name", ""))
            optional = ref.get("optional", False)
            if obj is None:
                if optional:
                    return None
                raise ContainerConfigError(f'{what} "{ref.get("name")}" not found')
            if rt is SECRETS:
                data = obj.get("data") or {}
                if ref["key"] in data:
                    return base64.b64decode(data[ref["key"]]).decode(errors="replace")
            else:
                data = obj.get("data") or {}
                if ref["key"] in data:
                    return str(data[ref["key"]])
            if optional:
                return None
            raise ContainerConfigError(f"couldn't find key {ref['key']} in {what} {self.ns}/{ref.get('name')}")

        for src in c.get("envFrom") or []:
            prefix = src.get("prefix", "")
            for rt, key, what in ((CONFIGMAPS, "configMapRef", "configmap"), (SECRETS, "secretRef", "secret")):
                ref = src.get(key)
                if not ref:
                    continue
                obj = store.try_get(rt, self.ns, ref.get("name", ""))
                if obj is None:
                    if ref.get("optional"):
                        continue
                    raise ContainerConfigError(f'{what} "{ref.get("name")}" not found')
                for k, v in (obj.get("data") or {}).items():
                    env[prefix + k] = base64.b64decode(v).decode(errors="replace") if rt is SECRETS else str(v)
        for e in c.get("env") or []:
            name = e.get("name")
            if "value" in e:
                env[name] = expand_vars(str(e.get("value", "")), env)
                continue
            vf = e.get("valueFrom") or {}
            val: str | None = None
            if "secretKeyRef" in vf:
                val = lookup_key(SECRETS, vf["secretKeyRef"], "secret")
            elif "configMapKeyRef" in vf:
                val = lookup_key(CONFIGMAPS, vf["configMapKeyRef"], "configmap")
            elif "fieldRef" in vf:
                path = vf["fieldRef"].get("fieldPath", "")
                val = {"metadata.name": self.name, "metadata.namespace": self.ns, "metadata.uid": self.uid,
                       "status.podIP": POD_IP, "status.hostIP": POD_IP, "spec.nodeName": NODE_NAME,
                       "spec.serviceAccountName": pod["spec"].get("serviceAccountName", "default")}.get(path)
                m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
                if m:
                    val = (pod["metadata"].get(m.group(1)) or {}).get(m.group(2))
            elif "resourceFieldRef" in vf:
                val = "0"
            if val is not None:
                env[name] = val
            elif "value" not in e and not vf:
                env[name] = ""
        return env

    def _pull_auth(self, pod: dict) -> dict[str, dict[str, str]]:
        """The pod's imagePullSecrets (kubernetes.io/dockerconfigjson or dockercfg),
        decoded to ``{registry: {"username", "password"}}``. A missing secret is skipped,
        as the real kubelet does (the pull may still work anonymously)."""
        auths: dict[str, dict[str, str]] = {}
        for ref in pod["spec"].get("imagePullSecrets") or []:
            secret = self.kubelet.store.try_get(SECRETS, self.ns, ref.get("name", ""))
            if secret is None:
                continue
            data = secret.get("data") or {}
            raw = data.get(".dockerconfigjson") or data.get(".dockercfg")
            if not raw:
                continue
            try:
                cfg = json.loads(base64.b64decode(raw))
            except ValueError:
                continue
            for registry, entry in (cfg.get("auths", cfg) or {}).items():
                if not isinstance(entry, dict):
                    continue
                user, password = entry.get("username"), entry.get("password")
                if (not user or password is None) and entry.get("auth"):
                    try:
                        user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
                    except ValueError:
                        continue
                if user is not None:
                    auths[registry] = {"username": user, "password": password or ""}
        return auths

    # ------------------------------------------------------------- volumes
    def _automount_token(self, pod: dict) -> bool:
        """Whether the service-account token is mounted (``automountServiceAccountToken``
        of the pod, else of its service account, else yes)."""
        if self.kubelet.tokens is None:
            return False
        flag = pod["spec"].get("automountServiceAccountToken")
        if flag is not None:
            return bool(flag)
        sa = self.kubelet.store.try_get(SERVICEACCOUNTS, self.ns, pod["spec"].get("serviceAccountName") or "default")
        return not (sa is not None and sa.get("automountServiceAccountToken") is False)

    def _token_files(self, pod: dict, volume: str, path: str = "token", seconds: int = POD_TOKEN_SECONDS,
                     audience: str | None = None, mode: int = vol.DEFAULT_MODE) -> Files:
        """A token bound to this pod, kept until 80 % of its life has passed (then a new
        one is written, as the kubelet's token manager does)."""
        k = self.kubelet
        cached = self._tokens.get((volume, path))
        if cached is not None and time.monotonic() < cached[1]:
            return {path: (cached[0], mode)}
        sa_name = pod["spec"].get("serviceAccountName") or "default"
        sa = k.store.try_get(SERVICEACCOUNTS, self.ns, sa_name)
        if sa is None:
            raise vol.MountError(f'failed to fetch token: serviceaccounts "{sa_name}" not found')
        if k.tokens is None:
            raise vol.MountError("failed to fetch token: this kubelet has no token issuer")
        token, _ = k.tokens.issue(self.ns, sa_name, sa["metadata"]["uid"], seconds=seconds,
                                  audiences=[audience] if audience else list(API_AUDIENCES),
                                  bound={"kind": "Pod", "name": self.name, "uid": self.uid})
        self._tokens[(volume, path)] = (token.encode(), time.monotonic() + 0.8 * seconds)
        return {vol._check_relative(path): (token.encode(), mode)}

    def _downward_files(self, pod: dict, items: list[dict], default_mode: int) -> Files:
        files: Files = {}
        for item in items or []:
            fp = (item.get("fieldRef") or {}).get("fieldPath", "")
            m = pod["metadata"]
            if fp in ("metadata.labels", "metadata.annotations"):
                d = m.get(fp.split(".")[1]) or {}
                value = "\n".join(f'{key}="{val}"' for key, val in sorted(d.items()))
            else:
                mm = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", fp)
                value = (m.get(mm.group(1)) or {}).get(mm.group(2), "") if mm else {
                    "metadata.name": self.name, "metadata.namespace": self.ns, "metadata.uid": self.uid,
                    "spec.serviceAccountName": pod["spec"].get("serviceAccountName") or "default",
                    "spec.nodeName": NODE_NAME, "status.podIP": POD_IP, "status.hostIP": POD_IP}.get(fp)
                if value is None:
                    raise vol.MountError(f'unsupported downward API fieldPath "{fp}"')
            mode = item.get("mode")
            files[vol._check_relative(item.get("path", ""))] = (str(value).encode(), default_mode if mode is None else mode)
        return files

    def _source_files(self, pod: dict, kind: str, src: dict, default_mode: int) -> Files:
        store = self.kubelet.store
        optional = bool(src.get("optional"))
        if kind == "secret":
            name = src.get("secretName") or src.get("name") or ""
            obj = store.try_get(SECRETS, self.ns, name)
            missing, data_of, missing_key = f'secret "{name}" not found', vol.secret_data, \
                "references non-existent secret key: {key}"
        else:
            name = src.get("name") or ""
            obj = store.try_get(CONFIGMAPS, self.ns, name)
            missing, data_of, missing_key = f'configmap "{name}" not found', vol.configmap_data, \
                "configmap references non-existent config key: {key}"
        if obj is None:
            if optional:
                return {}
            raise vol.MountError(missing)
        return vol.key_payload(data_of(obj), src.get("items"), default_mode, optional, missing_key)

    def _volume_files(self, pod: dict, name: str, v: dict) -> Files | str:
        """The files of a volume, or for a host directory volume the string ``"dir"``."""
        def mode_of(src: dict) -> int:
            m = src.get("defaultMode")
            return vol.DEFAULT_MODE if m is None else int(m)
        if "secret" in v:
            return self._source_files(pod, "secret", v["secret"] or {}, mode_of(v["secret"] or {}))
        if "configMap" in v:
            return self._source_files(pod, "configmap", v["configMap"] or {}, mode_of(v["configMap"] or {}))
        if "downwardAPI" in v:
            src = v["downwardAPI"] or {}
            return self._downward_files(pod, src.get("items") or [], mode_of(src))
        if "projected" in v:
            src = v["projected"] or {}
            files: Files = {}
            for s in src.get("sources") or []:
                if "secret" in s:
                    files |= self._source_files(pod, "secret", s["secret"] or {}, mode_of(src))
                elif "configMap" in s:
                    files |= self._source_files(pod, "configmap", s["configMap"] or {}, mode_of(src))
                elif "downwardAPI" in s:
                    files |= self._downward_files(pod, (s["downwardAPI"] or {}).get("items") or [], mode_of(src))
                elif "serviceAccountToken" in s:
                    t = s["serviceAccountToken"] or {}
                    files |= self._token_files(pod, name, t.get("path", "token"),
                                               int(t.get("expirationSeconds") or POD_TOKEN_SECONDS),
                                               t.get("audience"), mode_of(src))
            return files
        if "emptyDir" in v:
            return "dir"
        kinds = [key for key in v if key != "name"]
        raise vol.MountError(f"volume type {', '.join(kinds) or '(none)'} is not supported by the emulator's "
                             "kubelet (supported: secret, configMap, emptyDir, projected, downwardAPI, hostPath)")

    def _sync_volumes(self, pod: dict) -> None:
        """Materialise the pod's volumes (and the service-account token); until every one
        can be set up, the containers wait (``FailedMount``). Afterwards, once a second,
        changed Secrets and ConfigMaps are written again and the token is refreshed."""
        now = time.monotonic()
        if self.volumes_ready and now < self._next_volume_sync:
            return
        self._next_volume_sync = now + 1.0
        wanted: list[tuple[str, dict | None]] = [(v.get("name", ""), v) for v in pod["spec"].get("volumes") or []]
        if self._automount_token(pod):
            wanted.append((self.sa_volume, None))
        ok = True
        for name, v in wanted:
            target = self.volumes_dir / name
            if v is not None and "hostPath" in v:
                self.mounted[name] = Path((v["hostPath"] or {}).get("path") or "/")
                continue
            try:
                if v is None:  # what the ServiceAccount admission plugin projects into a pod
                    files: Files | str = self._token_files(pod, name) | self._sa_static_files()
                else:
                    files = self._volume_files(pod, name, v)
            except vol.MountError as e:
                ok = False
                if not self.volumes_ready:
                    msg = f'MountVolume.SetUp failed for volume "{name}" : {e}'
                    if msg not in self._mount_errors:
                        self._mount_errors.add(msg)
                        record_event(self.kubelet.store, pod, "Pod", "v1", "Warning", "FailedMount", msg, "kubelet")
                continue
            if files == "dir":
                target.mkdir(exist_ok=True)
            elif self._volume_content.get(name) != files:
                vol.write_atomically(target, files)
                self._volume_content[name] = files
            self.mounted[name] = target
        if ok and not self.volumes_ready:
            self.volumes_ready = True

    def _sa_static_files(self) -> Files:
        k = self.kubelet
        ca = k.ca_path.read_bytes() if k.ca_path is not None and k.ca_path.exists() else b""
        return {"ca.crt": (ca, vol.DEFAULT_MODE), "namespace": (self.ns.encode(), vol.DEFAULT_MODE)}

    def _mounts_of(self, c: dict) -> list[tuple[str, str]]:
        """``(mountPath, host path)`` of a container: its volumeMounts, then the
        service-account token's (unless the container mounts something there itself)."""
        out = []
        for m in c.get("volumeMounts") or []:
            host = self.mounted.get(m.get("name", ""))
            if host is None or not m.get("mountPath"):
                continue
            sub = m.get("subPath") or ""
            if m.get("subPathExpr"):
                sub = expand_vars(m["subPathExpr"], {"POD_NAME": self.name, "POD_NAMESPACE": self.ns})
            out.append((m["mountPath"], str(host / sub) if sub else str(host)))
        sa_host = self.mounted.get(self.sa_volume)
        if sa_host is not None and not any(mp.rstrip("/") == vol.SERVICE_ACCOUNT_MOUNT for mp, _ in out):
            out.append((vol.SERVICE_ACCOUNT_MOUNT, str(sa_host)))
        return out

    def _rewrite_env(self, c: dict, env: dict[str, str]) -> dict[str, str]:
        mounts = self._mounts_of(c)
        return {k: vol.rewrite_paths(v, mounts) for k, v in env.items()} if mounts else env

    def _rewrite_container(self, c: dict) -> dict:
        """The container as the runtime sees it: mount paths in command, args and
        workingDir rewritten to the volumes' host directories."""
        mounts = self._mounts_of(c)
        if not mounts:
            return c
        out = dict(c)
        for key in ("command", "args"):
            if out.get(key):
                out[key] = [vol.rewrite_paths(str(a), mounts) for a in out[key]]
        if out.get("workingDir"):
            out["workingDir"] = vol.rewrite_paths(out["workingDir"], mounts)
        return out

    # ------------------------------------------------------------- loop
    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        k = self.kubelet
        try:
            pod = k.store.try_get(PODS, self.ns, self.name)
            if pod is None or pod["metadata"].get("uid") != self.uid:
                return
            self.workdir.mkdir(parents=True, exist_ok=True)
            self.volumes_dir.mkdir(mode=0o700, exist_ok=True)
            self._allocate_ports(pod)
            while not self._stop.is_set():
                pod = k.store.try_get(PODS, self.ns, self.name)
                if pod is None or pod["metadata"].get("uid") != self.uid:
                    self._kill_all(0.5)
                    return
                if is_terminating(pod):
                    self._terminate(pod)
                    return
                self._follow_image_changes(pod)
                self._sync_volumes(pod)
                if self.volumes_ready:
                    for c in self.containers:
                        self._tick(pod, c)
                self._report(pod)
                self._stop.wait(k.period)
            self._kill_all(0.5)
        except Exception:  # pragma: no cover - a kubelet bug must not leave processes behind
            log.exception("pod worker %s/%s failed", self.ns, self.name)
            self._kill_all(0.5)
        finally:
            self.kubelet.ports.release(list(self.ports.values()) or [self.main_port])
            for c in self.containers:
                if c.log is not None:
                    c.log.close()
            self.finished.set()

    def _follow_image_changes(self, pod: dict) -> None:
        """A pod's container image is the one field an update may change: the container is
        then restarted with the new image (counted as a restart, as the real kubelet does)."""
        images = {c.get("name"): c.get("image") for c in pod["spec"].get("containers") or []}
        for c in self.containers:
            new_image = images.get(c.name)
            if new_image and new_image != c.spec.get("image"):
                c.spec = dict(c.spec, image=new_image)
                if c.handle is not None:
                    self.kubelet.runtime.kill(c.handle, min(float(pod["spec"].get("terminationGracePeriodSeconds", 30)),
                                                            self.kubelet.max_grace))
                    self._record_exit(c, self.kubelet.runtime.poll(c.handle) or -15)
                    c.last_state = c.state
                    c.handle = None
                c.done = False
                c.crashes = 0
                c.next_start = 0.0
                record_event(self.kubelet.store, pod, "Pod", "v1", "Normal", "Killing",
                             f"Container {c.name} definition changed, will be restarted", "kubelet")

    def _terminate(self, pod: dict) -> None:
        k = self.kubelet
        grace = float(pod["metadata"].get("deletionGracePeriodSeconds", 30) or 0)
        if grace > 0 and any(c.handle is not None for c in self.containers):
            # let the endpoints controller and load balancers stop routing here first
            self._stop.wait(min(k.drain_delay, grace))
            for c in self.containers:
                if c.handle is not None:
                    record_event(k.store, pod, "Pod", "v1", "Normal", "Killing",
                                 f"Stopping container {c.name}", "kubelet")
        self._kill_all(min(grace, k.max_grace))
        for c in self.containers:
            c.ready = False
        self._report(pod)

        k.finish_deletion(self.ns, self.name, self.uid)

    def _kill_all(self, grace: float) -> None:
        threads = []
        for c in self.containers:
            if c.handle is not None:
                h = c.handle
                t = threading.Thread(target=self.kubelet.runtime.kill, args=(h, grace), daemon=True)
                t.start()
                threads.append((c, t))
        for c, t in threads:
            t.join(grace + 10)
            code = self.kubelet.runtime.poll(c.handle)
            self._record_exit(c, code if code is not None else -9)
            c.handle = None
            c.done = True

    def _record_exit(self, c: _Container, code: int) -> None:
        exit_code = code if code >= 0 else 128 + (-code)
        reason = "Completed" if exit_code == 0 else "Error"
        if c.oom_killed:
            exit_code, reason, c.oom_killed = OOM_EXIT_CODE, "OOMKilled", False
        term = {"exitCode": exit_code, "reason": reason,
                "startedAt": c.started_wall, "finishedAt": now_rfc3339(), "containerID": c.status().get("containerID", "")}
        if code < 0:
            term["signal"] = -code
        c.state = {"terminated": term}
        c.ready = False
        c.started = False

    def _tick(self, pod: dict, c: _Container) -> None:
        k = self.kubelet
        now = k.clock()
        policy = pod["spec"].get("restartPolicy", "Always")
        if c.handle is None:
            if c.done or now < c.next_start:
                return
            try:
                c.env = self._rewrite_env(c.spec, self._resolve_env(pod, c.spec))
            except ContainerConfigError as e:
                c.state = {"waiting": {"reason": "CreateContainerConfigError", "message": str(e)}}
                c.next_start = now + 1.0
                return
            if c.log is None:
                c.log = ContainerLog(self.dir / c.name, k.log_max_bytes)
            elif c.instances > 0:
                c.log.new_instance()
            try:
                c.handle = k.runtime.start(pod, self._rewrite_container(c.spec), env=c.env, ports=dict(self.ports),
                                           log=c.log, workdir=self.workdir, pull_auth=self._pull_auth(pod))
            except ImagePullError as e:
                again = c.state.get("waiting", {}).get("reason") in ("ErrImagePull", "ImagePullBackOff")
                c.state = {"waiting": {"reason": "ImagePullBackOff" if again else "ErrImagePull", "message": str(e)}}
                c.crashes += 1
                c.next_start = k.clock() + k.backoff(c.crashes)
                record_event(k.store, pod, "Pod", "v1", "Warning", "Failed",
                             f'Failed to pull image "{c.spec.get("image")}": {e}', "kubelet")
                if again:
                    record_event(k.store, pod, "Pod", "v1", "Normal", "BackOff",
                                 f'Back-off pulling image "{c.spec.get("image")}"', "kubelet")
                return
            except RunContainerError as e:
                c.state = {"waiting": {"reason": "RunContainerError", "message": str(e)}}
                c.crashes += 1
                c.next_start = k.clock() + k.backoff(c.crashes)
                return
            if c.instances > 0:
                c.restart_count += 1
            c.instances += 1
            c.ever_started = True
            c.started_wall = now_rfc3339()
            c.started_clock = now
            c.state = {"running": {"startedAt": c.started_wall}}
            c.started = c.startup.probe is None
            for ps in (c.liveness, c.readiness, c.startup):
                ps.successes = ps.failures = 0
                ps.ok = False
                ps.next_at = now + float((ps.probe or {}).get("initialDelaySeconds", 0))
            c.ready = c.readiness.probe is None and c.started
            if c.instances == 1:
                record_event(k.store, pod, "Pod", "v1", "Normal", "Started", f"Started container {c.name}", "kubelet")
            return
        code = k.runtime.poll(c.handle)
        if code is not None:
            self._record_exit(c, code)
            c.last_state = c.state
            c.handle = None
            failed = c.state["terminated"]["exitCode"] != 0
            restart = policy == "Always" or (policy == "OnFailure" and failed)
            if now - c.started_clock >= k.backoff_reset:
                c.crashes = 0
            if not restart:
                c.done = True
                return
            c.crashes += 1
            delay = k.backoff(c.crashes)
            c.next_start = now + delay
            c.state = {"waiting": {"reason": "CrashLoopBackOff",
                                   "message": f"back-off {_fmt_seconds(delay)} restarting failed container={c.name} pod={self.name}_{self.ns}({self.uid})"}}
            record_event(k.store, pod, "Pod", "v1", "Warning", "BackOff", "Back-off restarting failed container", "kubelet")
            return
        if c.memory_limit is not None and self._over_memory_limit(pod, c):
            return
        # running: probes
        if not c.started:
            if self._probe_due(c.startup, now):
                ok = self._probe(c, c.startup)
                if ok:
                    c.started = True
                    c.ready = c.readiness.probe is None
                elif c.startup.failures >= int(c.startup.probe.get("failureThreshold", 3)):
                    self._restart_unhealthy(pod, c, "Startup")
            return
        if c.liveness.probe is not None and self._probe_due(c.liveness, now):
            self._probe(c, c.liveness)
            if c.liveness.failures >= int(c.liveness.probe.get("failureThreshold", 3)):
                self._restart_unhealthy(pod, c, "Liveness")
                return
        if c.readiness.probe is not None and self._probe_due(c.readiness, now):
            self._probe(c, c.readiness)
            if c.readiness.ok and c.readiness.successes >= int(c.readiness.probe.get("successThreshold", 1)):
                c.ready = True
            elif c.readiness.failures >= int(c.readiness.probe.get("failureThreshold", 3)):
                c.ready = False

    def _over_memory_limit(self, pod: dict, c: _Container) -> bool:
        """The OOM killer's part: a container whose processes hold more resident memory than
        its limit is killed at once (no grace), and reported ``OOMKilled`` (exit 137)."""
        pgid = getattr(c.handle, "pgid", None)
        if pgid is None:
            return False
        used = self.kubelet.memory_of(pgid)
        if used <= c.memory_limit:
            return False
        c.oom_killed = True
        c.ready = False
        record_event(self.kubelet.store, pod, "Pod", "v1", "Warning", "OOMKilling",
                     f"Memory limit exceeded: container {c.name} used {used} bytes of its "
                     f"{int(c.memory_limit)}-byte limit; killed", "kubelet")
        self.kubelet.runtime.kill(c.handle, 0)
        return True

    @staticmethod
    def _probe_due(ps: _ProbeState, now: float) -> bool:
        if ps.probe is None or ps.next_at is None or now < ps.next_at:
            return False
        ps.next_at = now + float(ps.probe.get("periodSeconds", 10))
        return True

    def _probe(self, c: _Container, ps: _ProbeState) -> bool:
        ok = run_probe(ps.probe or {}, self.ports, c.spec, c.env, self.main_port)
        if ok:
            ps.successes += 1
            ps.failures = 0
        else:
            ps.failures += 1
            ps.successes = 0
        ps.ok = ok
        return ok

    def _restart_unhealthy(self, pod: dict, c: _Container, which: str) -> None:
        k = self.kubelet
        record_event(k.store, pod, "Pod", "v1", "Warning", "Unhealthy",
                     f"{which} probe failed {c.liveness.failures if which == 'Liveness' else c.startup.failures} times; container {c.name} will be restarted", "kubelet")
        c.ready = False
        k.runtime.kill(c.handle, min(float(pod["spec"].get("terminationGracePeriodSeconds", 30)), k.max_grace))

    def _report(self, pod: dict) -> None:
        cs = [c.status() for c in self.containers]
        all_ready = all(c.ready for c in self.containers)
        all_started_once = all(c.ever_started for c in self.containers)
        if all(c.done for c in self.containers) and self.containers:
            failed = any(c.state.get("terminated", {}).get("exitCode", 0) != 0 for c in self.containers)
            phase = "Failed" if failed else "Succeeded"
        elif all_started_once:
            phase = "Running"
        else:
            phase = "Pending"
        old = pod.get("status") or {}
        old_conds = {c["type"]: c for c in old.get("conditions") or []}
        ts = now_rfc3339()

        def cond(type_: str, ok: bool, reason: str | None = None) -> dict:
            status = "True" if ok else "False"
            prev = old_conds.get(type_)
            c = {"type": type_, "status": status,
                 "lastTransitionTime": prev["lastTransitionTime"] if prev and prev.get("status") == status else ts,
                 "lastProbeTime": None}
            if reason and not ok:
                c["reason"] = reason
            return c
        not_ready = [c.name for c in self.containers if not c.ready]
        conds = [cond("PodReadyToStartContainers", self.volumes_ready), cond("Initialized", True),
                 cond("Ready", all_ready and phase == "Running", "ContainersNotReady"),
                 cond("ContainersReady", all_ready and phase == "Running", "ContainersNotReady"),
                 cond("PodScheduled", True)]
        for c in conds:
            if c["type"] in ("Ready", "ContainersReady") and c["status"] == "False":
                c["message"] = f"containers with unready status: [{' '.join(not_ready)}]"
        unenforced = [f"container {c.name}: {cpu_limit_note(c.cpu_limit)}" for c in self.containers
                      if c.cpu_limit is not None]
        if unenforced:  # a real node enforces it; say so where `kubectl describe pod` shows it
            conds.append(cond(CPU_LIMIT_CONDITION, False, "NotEnforced") | {"message": "; ".join(unenforced)})
        status = {"phase": phase, "conditions": conds, "hostIP": POD_IP, "hostIPs": [{"ip": POD_IP}],
                  "podIP": POD_IP, "podIPs": [{"ip": POD_IP}], "startTime": self.start_time,
                  "containerStatuses": cs, "qosClass": old.get("qosClass", "BestEffort")}
        if status != old:
            self.kubelet.store.mutate(PODS, self.ns, self.name,
                                      lambda x: x | {"status": status} if x["metadata"].get("uid") == self.uid else None,
                                      subresource="status")

    # ------------------------------------------------------------- logs
    def container(self, name: str) -> _Container | None:
        return next((c for c in self.containers if c.name == name), None)


def _fmt_seconds(s: float) -> str:
    if s >= 60:
        m, sec = divmod(int(s), 60)
        return f"{m}m{sec}s"
    return f"{s:g}s" if s != int(s) else f"{int(s)}s"


class PortAllocator:
    """Distinct loopback ports for pods: never hands out a port another pod holds."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self._held: set[int] = set()
        self._lock = threading.Lock()

    def allocate(self) -> int:
        with self._lock:
            for _ in range(100):
                with socket.socket() as s:
                    s.bind((self.host, 0))
                    port = s.getsockname()[1]
                if port not in self._held:
                    self._held.add(port)
                    return port
            raise RuntimeError("no free loopback port for a pod")

    def release(self, ports: list[int]) -> None:
        with self._lock:
            self._held.difference_update(ports)


def _extended_requests(pod: dict) -> dict[str, int]:
    """What a pod's containers request of extended resources (limits stand for requests, as
    Kubernetes requires them equal for these)."""
    total: dict[str, int] = {}
    for c in (pod.get("spec") or {}).get("containers") or []:
        resources = c.get("resources") or {}
        asked = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
        for name, value in asked.items():
            if "/" in name and not name.startswith(("kubernetes.io/", "hugepages-")):
                total[name] = total.get(name, 0) + int(str(value))
    return total


class Kubelet:
    """Runs the pods of the one emulated node (``emulator-node``)."""

    def __init__(self, store: Store, runtime: PodRuntime, *, log_dir: Path,
                 clock: Callable[[], float] = time.monotonic, backoff_base: float = 10.0,
                 backoff_cap: float = 300.0, backoff_reset: float | None = None,
                 period: float = 0.1, drain_delay: float = 0.3, max_grace: float = 10.0,
                 log_max_bytes: int = 1 << 20, tokens: TokenIssuer | None = None,
                 process_record: Path | None = None) -> None:
        self.store = store
        # pods never outlive this process, however it ends (see aml_emulator.guardian);
        # with a record file, the next kubelet on the same state ends what was left behind
        self.process_record = process_record
        self.guardian = ProcessGuardian(process_record)
        self.runtime = GuardedRuntime(runtime, self.guardian)
        # the service-account token issuer, and where pods reach the API server (set by the
        # ClusterService once it listens): without them no token is mounted and no
        # KUBERNETES_SERVICE_* is set
        self.tokens = tokens
        self.api_host = "127.0.0.1"
        self.api_port: int | None = None
        self.ca_path: Path | None = None
        self.log_dir = log_dir
        self.clock = clock
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.backoff_reset = backoff_reset if backoff_reset is not None else 2 * backoff_cap
        self.period = period
        self.drain_delay = drain_delay
        self.max_grace = max_grace
        self.log_max_bytes = log_max_bytes
        self.ports = PortAllocator()
        self.workers: dict[tuple[str, str], _PodWorker] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._rss_lock = threading.Lock()
        self._rss: dict[int, int] = {}
        self._rss_at = float("-inf")

    def adopt_existing(self) -> None:
        """After a restart no container of a stored pod is running: report them all as
        waiting (not ready) before anyone can route to them; workers then start them.
        Containers a previous kubelet on this state left running (it was killed, and its
        guardian with it) are ended first, so they hold no port and answer no request."""
        if self.process_record is not None:
            end_recorded_survivors(self.process_record)
        for pod in self.store.list(PODS)[0]:
            if is_terminating(pod):
                continue
            old = pod.get("status") or {}
            restarts = {c.get("name"): c.get("restartCount", 0) for c in old.get("containerStatuses") or []}
            ts = now_rfc3339()
            status = {"phase": "Pending", "qosClass": old.get("qosClass", "BestEffort"),
                      "conditions": [{"type": t, "status": "False" if t in ("Ready", "ContainersReady") else "True",
                                      "lastTransitionTime": ts, "lastProbeTime": None}
                                     for t in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")],
                      "containerStatuses": [{"name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": False,
                                             "started": False, "restartCount": restarts.get(c["name"], 0),
                                             "state": {"waiting": {"reason": "ContainerCreating"}}, "lastState": {}}
                                            for c in pod["spec"].get("containers") or []]}
            self.store.mutate(PODS, pod["metadata"]["namespace"], pod["metadata"]["name"],
                              lambda x, st=status: x | {"status": st}, subresource="status")

    def backoff(self, crashes: int) -> float:
        """The CrashLoopBackOff delay before restart number ``crashes``: base, 2·base, 4·base … capped."""
        return min(self.backoff_cap, self.backoff_base * (2 ** max(0, crashes - 1)))

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._run, name="cluster-kubelet", daemon=True)
        self._thread.start()
        # A host process that exits without stop() (an unhandled exception, a closed pipe)
        # must not leave pods behind: their process groups are SIGKILLed at exit.
        atexit.register(self._kill_at_exit)

    def _kill_at_exit(self) -> None:
        for pgid in self.process_groups():
            try:
                os.killpg(pgid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sync()
            except Exception:  # pragma: no cover
                log.exception("kubelet sync failed")
            self.store.wait_for_change(self.period)
            if self._stop.is_set():
                break

    def sync(self) -> None:
        pods, _ = self.store.list(PODS)
        live = set()
        with self._lock:
            for p in pods:
                key = (p["metadata"]["namespace"], p["metadata"]["name"])
                live.add(key)
                w = self.workers.get(key)
                if w is not None and w.uid != p["metadata"]["uid"]:
                    if not w.finished.is_set():
                        continue  # the old incarnation is still shutting down
                    self._forget(key)
                    w = None
                if w is None:
                    if is_terminating(p):
                        self.finish_deletion(key[0], key[1], p["metadata"]["uid"])
                        continue
                    shortage = self._extended_shortage(p)
                    if shortage:
                        self._mark_unschedulable(p, shortage)
                        continue
                    w = _PodWorker(self, p)
                    self.workers[key] = w
                    w.start()
            for key in list(self.workers):
                if key not in live and self.workers[key].finished.is_set():
                    self._forget(key)

    def _extended_shortage(self, pod: dict) -> list[str]:
        """The extended resources (a name with a domain, e.g. ``microsoft.com/fpga``) the pod
        requests beyond what the node advertises and its running pods do not hold. CPU and
        memory are not accounted: every pod of the one emulated node shares the host."""
        wanted = _extended_requests(pod)
        if not wanted:
            return []
        node = self.store.try_get(NODES, "", NODE_NAME) or {}
        allocatable = (node.get("status") or {}).get("allocatable") or {}
        used: dict[str, int] = {}
        for w in self.workers.values():
            if not w.finished.is_set():
                for name, count in w.extended.items():
                    used[name] = used.get(name, 0) + count
        return [name for name, count in sorted(wanted.items())
                if count > int(allocatable.get(name, 0)) - used.get(name, 0)]

    def _mark_unschedulable(self, pod: dict, shortage: list[str]) -> None:
        """Leave the pod Pending with the scheduler's condition (written once, not every sync)."""
        message = f"0/1 nodes are available: {', '.join(f'1 Insufficient {n}' for n in shortage)}."
        conditions = (pod.get("status") or {}).get("conditions") or []
        if any(c.get("type") == "PodScheduled" and c.get("message") == message for c in conditions):
            return
        status = {"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message,
             "lastTransitionTime": now_rfc3339(), "lastProbeTime": None}]}
        try:
            self.store.mutate(PODS, pod["metadata"]["namespace"], pod["metadata"]["name"],
                              lambda x: x | {"status": status}, subresource="status")
        except err.ApiError:
            pass  # deleted meanwhile
        record_event(self.store, pod, "Pod", "v1", "Warning", "FailedScheduling", message, "default-scheduler")

    def finish_deletion(self, namespace: str, name: str, uid: str) -> None:
        """The pod's containers are stopped: delete it with grace 0 (as the real kubelet
        does), so the store removes it once no finalizer holds it."""
        try:
            self.store.delete(PODS, namespace, name, grace=0, precondition_uid=uid)
        except err.ApiError:
            pass

    def _forget(self, key: tuple[str, str]) -> None:
        w = self.workers.pop(key)
        shutil.rmtree(w.dir, ignore_errors=True)

    def stop(self) -> None:
        """Stop every pod: all their process groups are killed before this returns."""
        atexit.unregister(self._kill_at_exit)
        self._stop.set()
        with self.store.changed:
            self.store.changed.notify_all()
        if self._thread is not None:
            self._thread.join(10)
        with self._lock:
            workers = list(self.workers.values())
        for w in workers:
            w.stop()
        for w in workers:
            if w.thread.is_alive():
                w.thread.join(20)
        self.guardian.close()

    def wait_idle(self, timeout: float) -> None:
        """Wait until no pod worker runs (every process of every pod has been killed)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sync()
            with self._lock:
                busy = [w for w in self.workers.values() if not w.finished.is_set()]
            if not busy:
                return
            busy[0].finished.wait(0.1)
        raise TimeoutError(f"pods still running after {timeout}s")

    # ------------------------------------------------------------- for the API server
    def _container(self, namespace: str, pod: str, container: str) -> _Container | None:
        with self._lock:
            w = self.workers.get((namespace, pod))
        return w.container(container) if w is not None else None

    def read_logs(self, namespace: str, pod: str, container: str, *, previous: bool = False) -> bytes | None:
        c = self._container(namespace, pod, container)
        if c is None or c.log is None:
            return None
        return c.log.read_previous() if previous else c.log.read()

    def container_running(self, namespace: str, pod: str, container: str) -> bool:
        c = self._container(namespace, pod, container)
        return c is not None and c.handle is not None

    def memory_of(self, pgid: int) -> int:
        """The resident memory of a container's process group, from one scan of ``/proc``
        for every container with a memory limit, shared by all of them for one period (a
        scan costs milliseconds; one per container per tick would add up)."""
        now = time.monotonic()  # not the injectable clock: a frozen test clock must not freeze this
        with self._rss_lock:
            if now - self._rss_at >= self.period or pgid not in self._rss:
                with self._lock:
                    groups = {c.handle.pgid for w in self.workers.values() for c in w.containers
                              if c.memory_limit is not None and getattr(c.handle, "pgid", None) is not None}
                self._rss = rss_by_group(groups | {pgid})
                self._rss_at = now
            return self._rss.get(pgid, 0)

    def process_groups(self) -> list[int]:
        """The process group ids of every running container (for orphan checks)."""
        with self._lock:
            return [c.handle.pgid for w in self.workers.values() for c in w.containers
                    if c.handle is not None and hasattr(c.handle, "pgid")]

    def running_container(self, namespace: str, pod: str, container: str) -> RunningContainer | None:
        """What exec, port-forward and the metrics API need of one running container
        (:mod:`streaming`, :mod:`metrics`), or None when it is not running."""
        with self._lock:
            w = self.workers.get((namespace, pod))
        c = w.container(container) if w is not None else None
        if c is None or c.handle is None or getattr(c.handle, "pgid", None) is None:
            return None
        root = getattr(c.handle, "rootfs", None)
        return RunningContainer(pid=c.handle.pgid, uid=w.uid, env=dict(c.env), ports=dict(w.ports),
                                root=Path(root) if root else w.workdir)


@attrs.frozen
class RunningContainer:
    """A running container as the streaming and metrics endpoints see it: its main process
    (also its process group id), the pod's uid, the environment it was started with, the
    pod's port map (containerPort → loopback port) and the directory that is the
    container's filesystem root (the unpacked image, or the pod's scratch directory for a
    host process)."""

    pid: int
    uid: str
    env: dict[str, str] = attrs.field(repr=False)  # may hold secrets
    ports: dict[int, int]
    root: Path
