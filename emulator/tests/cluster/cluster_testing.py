"""Helpers for the cluster tests: manifests of a tiny HTTP server run as a pod, kubectl,
and bounded polling."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aml_emulator.cluster.kubelet import HOST_PROCESS_IMAGE

# A pod that answers GET with its VERSION; prints one line per request to stdout.
SERVER = """\
import os, sys, http.server as h
class H(h.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    def do_GET(self):
        body = os.environ.get("VERSION", "v1").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, fmt, *args):
        print("served", self.path, flush=True)
print("listening on", os.environ["PORT"], "secret", os.environ.get("SECRET_VALUE", "-"), flush=True)
h.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"""

CRASHER = """\
import sys
print("starting and then failing", flush=True)
print("Traceback (most recent call last): boom", file=sys.stderr, flush=True)
sys.exit(3)
"""


def container(version: str = "v1", *, probe: bool = True, script: str = SERVER, name: str = "web") -> dict:
    c: dict[str, Any] = {"name": name, "image": HOST_PROCESS_IMAGE, "command": [sys.executable, "-c", script],
                         "env": [{"name": "VERSION", "value": version}],
                         "ports": [{"containerPort": 8080, "name": "http"}]}
    if probe:
        c["readinessProbe"] = {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1}
    return c


def deployment(name: str = "web", version: str = "v1", replicas: int = 2, **kw: Any) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [container(version, **kw)],
                                           "terminationGracePeriodSeconds": 5}}}}


def service(name: str = "web") -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": "http", "name": "http"}]}}


def wait_for(pred: Callable[[], Any], timeout: float = 20.0, interval: float = 0.1, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class Kubectl:
    def __init__(self, kubeconfig: Path, cache_dir: Path) -> None:
        self.kubeconfig = kubeconfig
        self.cache_dir = cache_dir

    def run(self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        r = subprocess.run(["kubectl", "--kubeconfig", str(self.kubeconfig), "--cache-dir", str(self.cache_dir), *args],
                           input=input, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
        return r

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-o", "json").stdout)


def http_get(url: str, timeout: float = 3.0) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.status, resp.read()


def api_request(cluster: Any, method: str, path: str, *, body: Any = None, headers: dict | None = None,
                token: str | None = "default", stream: bool = False):
    """A raw HTTPS call to the API server (for what the typed clients do not expose)."""
    ctx = ssl.create_default_context(cafile=str(cluster.ca_path))
    data = json.dumps(body).encode() if body is not None and not isinstance(body, bytes) else body
    req = urllib.request.Request(cluster.url + path, data=data, method=method)
    if token == "default":
        token = cluster.token
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    if data is not None and "Content-Type" not in (headers or {}):
        req.add_header("Content-Type", "application/json")
    try:
        resp = urllib.request.urlopen(req, context=ctx, timeout=10)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")
    if stream:
        return resp.status, resp
    raw = resp.read()
    try:
        return resp.status, json.loads(raw)
    except ValueError:
        return resp.status, raw


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
