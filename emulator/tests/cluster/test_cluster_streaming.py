"""The verbs people debug with, against the emulated cluster: ``kubectl exec`` (pipes, a
TTY, stdin, exit codes, ``-c``), ``kubectl port-forward`` (pod, deployment, service; several
connections, both directions, half-close), ``kubectl cp`` both ways, and the official
client's ``kubernetes.stream.stream`` / ``portforward`` helpers; each bad input answered as
the apiserver and kubelet do."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import select
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml
from cluster_testing import Kubectl, deployment, process_alive, service, wait_for
from kubernetes import client
from kubernetes.stream import portforward, stream

from aml_emulator.cluster.kubelet import HOST_PROCESS_IMAGE

# A TCP echo server: echoes every byte, and half-closes when the client does.
ECHO = """\
import os, socket, threading
srv = socket.create_server(("127.0.0.1", int(os.environ["PORT"])))
print("echo on", os.environ["PORT"], flush=True)
def serve(conn):
    with conn:
        while data := conn.recv(65536):
            conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)
while True:
    threading.Thread(target=serve, args=(srv.accept()[0],), daemon=True).start()
"""


def _ready_pod(kubectl: Kubectl, name: str = "web") -> str:
    kubectl.run("apply", "-f", "-", input=yaml.safe_dump_all([deployment(name, "v1", replicas=1), service(name)]))
    kubectl.run("rollout", "status", f"deployment/{name}", "--timeout=60s")
    pods = [p for p in kubectl.json("get", "pods", "-l", f"app={name}")["items"] if not p["metadata"].get("deletionTimestamp")]
    return pods[0]["metadata"]["name"]


def _pod(name: str, containers: list[dict], **spec) -> str:
    return yaml.safe_dump({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                           "spec": {"containers": containers, "terminationGracePeriodSeconds": 2, **spec}})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _port_forward(kubectl: Kubectl, target: str, remote: str) -> Iterator[tuple[int, subprocess.Popen]]:
    local = _free_port()
    proc = subprocess.Popen(["kubectl", "--kubeconfig", str(kubectl.kubeconfig), "--cache-dir", str(kubectl.cache_dir),
                             "port-forward", target, f"{local}:{remote}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith(f"Forwarding from 127.0.0.1:{local}"), (line, proc.stderr.read() if proc.poll() is not None else "")
        yield local, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.communicate(timeout=20)


# ------------------------------------------------------------------------------------ exec

def test_exec_runs_in_the_container_environment_and_propagates_the_exit_code(kubectl, cluster):
    pod = _ready_pod(kubectl)
    r = kubectl.run("exec", pod, "--", "sh", "-c", 'echo "version=$VERSION port=$PORT"; pwd; echo oops >&2; exit 7', check=False)
    assert r.returncode == 7
    assert "command terminated with exit code 7" in r.stderr and "oops" in r.stderr
    out = r.stdout.splitlines()
    main = kubectl.json("get", "pod", pod)
    pid = int(main["status"]["containerStatuses"][0]["containerID"].split("://")[1])
    port = main["metadata"]["annotations"]["emulator.aml/port"]
    # the container's env (resolved from the pod spec) and its main process's working directory
    assert out[0] == f"version=v1 port={port}"
    assert out[1] == os.readlink(f"/proc/{pid}/cwd")
    assert kubectl.run("exec", pod, "--", "true").returncode == 0


def test_exec_stdin_and_a_chosen_container(kubectl):
    containers = [{"name": name, "image": HOST_PROCESS_IMAGE, "command": [sys.executable, "-c", "import time; time.sleep(60)"],
                   "env": [{"name": "WHO", "value": name}]} for name in ("first", "second")]
    kubectl.run("apply", "-f", "-", input=_pod("two", containers))
    kubectl.run("wait", "--for=condition=Ready", "pod/two", "--timeout=30s")
    assert kubectl.run("exec", "two", "-c", "second", "--", "printenv", "WHO").stdout == "second\n"
    r = kubectl.run("exec", "two", "--", "printenv", "WHO")  # the first container, as kubectl defaults
    assert r.stdout == "first\n" and 'Defaulted container "first"' in r.stderr
    data = "".join(f"line {i}\n" for i in range(2000))  # more than one WebSocket message
    r = kubectl.run("exec", "-i", "two", "-c", "first", "--", "sh", "-c", "wc -l; echo done", input=data)
    assert r.stdout.split() == ["2000", "done"]

    r = kubectl.run("exec", "two", "-c", "third", "--", "true", check=False)
    assert r.returncode == 1
    assert "Error from server (BadRequest): container third is not valid for pod two" in r.stderr


def test_exec_with_a_tty(kubectl):
    pod = _ready_pod(kubectl)
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 111, 0, 0))
    proc = subprocess.Popen(["kubectl", "--kubeconfig", str(kubectl.kubeconfig), "--cache-dir", str(kubectl.cache_dir),
                             "exec", "-it", pod, "--", "sh", "-c", "tty; stty size; exit 3"],
                            stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: kubectl exited and closed the terminal
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    os.close(master)
    assert proc.wait(timeout=10) == 3
    text = out.decode(errors="replace")
    assert "/dev/pts/" in text  # the command's stdin is a terminal
    assert "33 111" in text  # sized as kubectl's own terminal (the resize channel)


def test_exec_into_a_pod_that_is_not_running(kubectl):
    waiting = [{"name": "app", "image": HOST_PROCESS_IMAGE, "command": ["sleep", "30"],
                "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "missing", "key": "k"}}}]}]
    kubectl.run("apply", "-f", "-", input=_pod("waiting", waiting))
    wait_for(lambda: "CreateContainerConfigError" in kubectl.run("get", "pod", "waiting").stdout, what="the pod waiting")
    r = kubectl.run("exec", "waiting", "--", "true", check=False)
    assert r.returncode == 1
    assert 'unable to upgrade connection: container not found ("app")' in r.stderr

    done = [{"name": "app", "image": HOST_PROCESS_IMAGE, "command": ["true"]}]
    kubectl.run("apply", "-f", "-", input=_pod("done", done, restartPolicy="Never"))
    wait_for(lambda: kubectl.json("get", "pod", "done")["status"]["phase"] == "Succeeded", what="the pod completed")
    r = kubectl.run("exec", "done", "--", "true", check=False)
    assert r.returncode == 1
    assert "cannot exec into a container in a completed pod; current phase is Succeeded" in r.stderr

    r = kubectl.run("exec", "nosuchpod", "--", "true", check=False)
    assert 'Error from server (NotFound): pods "nosuchpod" not found' in r.stderr


def test_the_python_client_exec_stream(kubectl, k8s):
    pod = _ready_pod(kubectl)
    v1 = client.CoreV1Api(k8s)
    assert stream(v1.connect_get_namespaced_pod_exec, pod, "default", command=["printenv", "VERSION"],
                  stderr=True, stdin=False, stdout=True, tty=False) == "v1\n"

    resp = stream(v1.connect_get_namespaced_pod_exec, pod, "default", command=["sh", "-c", "read x; echo got $x; exit 4"],
                  stderr=True, stdin=True, stdout=True, tty=False, _preload_content=False)
    resp.write_stdin("hello\n")
    resp.run_forever(timeout=20)
    assert resp.read_stdout() == "got hello\n"
    assert resp.returncode == 4

    out = stream(v1.connect_get_namespaced_pod_exec, pod, "default", command=["tty"],
                 stderr=True, stdin=True, stdout=True, tty=True)
    assert out.startswith("/dev/pts/")

    with pytest.raises(Exception) as e:  # refused before the upgrade: a 400 with the apiserver's message
        stream(v1.connect_get_namespaced_pod_exec, pod, "default", container="nope", command=["true"],
               stderr=True, stdin=False, stdout=True, tty=False)
    assert "400" in str(e.value)


# ------------------------------------------------------------------------------ port-forward

@pytest.mark.parametrize("target", ["pod", "deploy/web", "svc/web"])
def test_port_forward_serves_several_connections(kubectl, target):
    pod = _ready_pod(kubectl)
    remote = "80" if target.startswith("svc/") else "8080"
    with _port_forward(kubectl, f"pod/{pod}" if target == "pod" else target, remote) as (local, _):
        results: list[str] = []

        def call(i: int) -> None:
            with requests.Session() as s:  # keep-alive: several requests on one forwarded connection
                for j in range(3):
                    results.append(s.get(f"http://127.0.0.1:{local}/{i}/{j}", timeout=20).text)
        threads = [threading.Thread(target=call, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert results == ["v1"] * 18


def test_port_forward_carries_both_directions_and_half_close(kubectl):
    echo = [{"name": "echo", "image": HOST_PROCESS_IMAGE, "command": [sys.executable, "-c", ECHO],
             "ports": [{"containerPort": 7000}], "readinessProbe": {"tcpSocket": {"port": 7000}, "periodSeconds": 1}}]
    kubectl.run("apply", "-f", "-", input=_pod("echo", echo))
    kubectl.run("wait", "--for=condition=Ready", "pod/echo", "--timeout=30s")
    payload = os.urandom(3 << 20)
    with _port_forward(kubectl, "pod/echo", "7000") as (local, proc):
        def roundtrip(data: bytes) -> bytes:
            with socket.create_connection(("127.0.0.1", local), timeout=30) as s:
                sender = threading.Thread(target=lambda: (s.sendall(data), s.shutdown(socket.SHUT_WR)))
                sender.start()
                got = bytearray()
                while chunk := s.recv(1 << 16):
                    got += chunk
                sender.join(30)
                return bytes(got)
        assert roundtrip(payload) == payload  # ends: the server saw our FIN and sent its own
        assert roundtrip(b"again") == b"again"
        assert proc.poll() is None  # one connection ending does not end the session


def test_port_forward_to_a_port_nobody_listens_on(kubectl):
    pod = _ready_pod(kubectl)
    with _port_forward(kubectl, f"pod/{pod}", "9999") as (local, proc):
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{local}/", timeout=20)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 1
    assert "an error occurred forwarding" in err and "9999" in err and "connection refused" in err
    assert "lost connection to pod" in err


def test_port_forward_refuses_a_pod_that_is_not_running(kubectl):
    waiting = [{"name": "app", "image": "registry.invalid/typo:1", "ports": [{"containerPort": 80}]}]
    kubectl.run("apply", "-f", "-", input=_pod("typo", waiting))
    r = kubectl.run("port-forward", "pod/typo", f"{_free_port()}:80", check=False, timeout=30)
    assert r.returncode == 1 and "pod is not running" in r.stderr


def test_the_python_client_port_forward(kubectl, k8s):
    pod = _ready_pod(kubectl)
    v1 = client.CoreV1Api(k8s)
    pf = portforward(v1.connect_get_namespaced_pod_portforward, pod, "default", ports="8080")
    s = pf.socket(8080)
    s.settimeout(20)
    s.sendall(b"GET /x HTTP/1.0\r\nHost: pod\r\n\r\n")
    reply = b""
    while chunk := s.recv(4096):
        reply += chunk
    s.close()
    assert reply.startswith(b"HTTP/1.0 200") and reply.endswith(b"v1")
    assert pf.error(8080) is None

    pf = portforward(v1.connect_get_namespaced_pod_portforward, pod, "default", ports="9999")
    s = pf.socket(9999)
    s.settimeout(20)
    assert s.recv(10) == b""
    wait_for(lambda: pf.error(9999), what="the port's error channel")
    assert "connection refused" in pf.error(9999)
    s.close()


# -------------------------------------------------------------------------------------- cp

def test_cp_both_ways(kubectl, tmp_path):
    pod = _ready_pod(kubectl)
    src = tmp_path / "model"
    (src / "sub").mkdir(parents=True)
    (src / "weights.bin").write_bytes(os.urandom(200_000))
    (src / "sub" / "conf.txt").write_text("a=1\n")
    kubectl.run("cp", str(src / "weights.bin"), f"{pod}:/weights.bin")
    kubectl.run("cp", str(src), f"{pod}:/models")
    # what the container sees: files in its root, which is its working directory here
    listing = kubectl.run("exec", pod, "--", "sh", "-c", "cat models/sub/conf.txt; wc -c < weights.bin").stdout.split()
    assert listing == ["a=1", "200000"]

    back = tmp_path / "back"
    kubectl.run("cp", f"{pod}:/models", str(back))
    assert (back / "weights.bin").read_bytes() == (src / "weights.bin").read_bytes()
    assert (back / "sub" / "conf.txt").read_text() == "a=1\n"
    kubectl.run("cp", f"{pod}:weights.bin", str(tmp_path / "w.bin"))
    assert (tmp_path / "w.bin").read_bytes() == (src / "weights.bin").read_bytes()


def test_cp_stays_inside_the_container_root(kubectl, tmp_path):
    pod = _ready_pod(kubectl)
    # a link the container made to the host's /etc: followed inside the root, as after chroot
    kubectl.run("exec", pod, "--", "ln", "-s", "/etc", "hostetc")
    for path in ("/../../../etc/passwd", "/hostetc/passwd", "/nosuchfile"):
        r = kubectl.run("cp", f"{pod}:{path}", str(tmp_path / "out"), check=False)
        assert r.returncode != 0, path
        assert "Cannot stat: No such file or directory" in r.stdout + r.stderr, (path, r.stdout, r.stderr)
        assert not (tmp_path / "out").exists()
    marker = tmp_path / "evil"
    marker.write_text("x")
    r = kubectl.run("cp", str(marker), f"{pod}:/hostetc/aml-emulator-evil", check=False)
    assert r.returncode != 0 and "Cannot open: No such file or directory" in r.stderr
    assert not Path("/etc/aml-emulator-evil").exists()


def test_exec_ends_with_its_command_and_names_a_missing_executable(kubectl):
    pod = _ready_pod(kubectl)
    started = time.monotonic()
    # the background sleep keeps the output pipe open; the session still ends with sh
    r = kubectl.run("exec", pod, "--", "sh", "-c", "sleep 300 & echo $!")
    assert time.monotonic() - started < 20
    sleeper = int(r.stdout)
    assert process_alive(sleeper)  # left running in the container, as in a real one ...
    kubectl.run("delete", "pod", pod, "--wait=true")
    wait_for(lambda: not process_alive(sleeper), what="the background process gone with its container")

    pod = _ready_pod(kubectl)
    r = kubectl.run("exec", pod, "--", "no-such-command", check=False)
    assert r.returncode == 1
    assert 'exec: "no-such-command": executable file not found in $PATH' in r.stderr


def test_exec_and_port_forward_are_authorized(kubectl):
    pod = _ready_pod(kubectl)
    who = "--as=system:serviceaccount:default:default"

    def grant(*rules: dict) -> None:
        kubectl.run("apply", "-f", "-", input=yaml.safe_dump_all([
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "debug"},
             "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}, *rules]},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "debug"},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "debug"},
             "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": "default"}]}]))

    grant()  # may read the pod, nothing more
    r = kubectl.run(who, "exec", pod, "--", "true", check=False)
    assert r.returncode == 1
    # the WebSocket GET is refused, kubectl falls back to the SPDY POST, refused as "create"
    assert ('Error from server (Forbidden): pods "%s" is forbidden: User "system:serviceaccount:default:default" '
            'cannot create resource "pods/exec" in API group "" in the namespace "default"' % pod) in r.stderr
    r = kubectl.run(who, "port-forward", f"pod/{pod}", f"{_free_port()}:8080", check=False)
    assert r.returncode == 1 and 'cannot create resource "pods/portforward"' in r.stderr

    grant({"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["get", "create"]})
    assert kubectl.run(who, "exec", pod, "--", "printenv", "VERSION").stdout == "v1\n"


def test_a_hostile_archive_extracts_nothing_outside_the_root(kubectl, k8s, cluster, tmp_path):
    import io
    import tarfile

    pod = _ready_pod(kubectl)
    outside = tmp_path / "outside"
    outside.mkdir()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        def add(name: str, data: bytes = b"x", **kw) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data) if not kw else 0
            for k, v in kw.items():
                setattr(info, k, v)
            tar.addfile(info, io.BytesIO(data) if not kw else None)
        add("../../../../../../" + str(outside).lstrip("/") + "/slip.txt")
        add("link", type=tarfile.SYMTYPE, linkname=str(outside))
        add("fine.txt", b"kept")
    v1 = client.CoreV1Api(k8s)
    resp = stream(v1.connect_get_namespaced_pod_exec, pod, "default", command=["tar", "-xmf", "-", "-C", "/"],
                  stderr=True, stdin=True, stdout=True, tty=False, binary=True, _preload_content=False)
    resp.write_stdin(raw.getvalue())
    resp.close_channel(0)  # v5: end of stdin
    resp.run_forever(timeout=30)
    assert resp.returncode == 2
    errors = resp.read_stderr().decode()
    assert "slip.txt" in errors and "link" in errors, errors
    assert list(outside.iterdir()) == []
    assert kubectl.run("exec", pod, "--", "cat", "fine.txt").stdout == "kept"


def test_attach_is_refused_by_name(kubectl):
    pod = _ready_pod(kubectl)
    r = kubectl.run("attach", pod, check=False, timeout=30)
    assert r.returncode == 1
    assert "The pods/attach operation has not been implemented in the emulator" in r.stderr
