"""Fixtures for the registry tests: one running emulator per session, reset before each test."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from typing import Iterator

import pytest
import requests

from aml_emulator.registry import RegistryService

from registry_images import OCI_CONFIG, OCI_MANIFEST, sha256


@pytest.fixture(scope="session")
def registry_service() -> Iterator[RegistryService]:
    service = RegistryService().start()
    yield service
    service.stop()


@pytest.fixture
def reg(registry_service: RegistryService) -> RegistryService:
    """The session's registry, emptied before the test (state never leaks between tests)."""
    registry_service.reset()
    return registry_service


@pytest.fixture
def client(reg: RegistryService) -> "Client":
    """A requests client logged in with the admin user's first password."""
    return Client(reg.url, (reg.credentials.username, reg.credentials.passwords["password"]))


class Client:
    """A thin helper over ``requests`` for the distribution API, with Basic credentials."""

    def __init__(self, base: str, auth: tuple[str, str] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        self.base = base
        self.session = requests.Session()
        self.session.auth = auth
        if headers:
            self.session.headers.update(headers)

    def request(self, method: str, path: str, **kw) -> requests.Response:
        url = path if path.startswith("http") else self.base + path
        kw.setdefault("timeout", 30)
        kw.setdefault("allow_redirects", False)
        return self.session.request(method, url, **kw)

    def get(self, path: str, **kw) -> requests.Response:
        return self.request("GET", path, **kw)

    def head(self, path: str, **kw) -> requests.Response:
        return self.request("HEAD", path, **kw)

    def post(self, path: str, **kw) -> requests.Response:
        return self.request("POST", path, **kw)

    def put(self, path: str, **kw) -> requests.Response:
        return self.request("PUT", path, **kw)

    def patch(self, path: str, **kw) -> requests.Response:
        return self.request("PATCH", path, **kw)

    def delete(self, path: str, **kw) -> requests.Response:
        return self.request("DELETE", path, **kw)

    # -- composite operations ---------------------------------------------------------

    def push_blob(self, name: str, data: bytes) -> str:
        digest = sha256(data)
        r = self.post(f"/v2/{name}/blobs/uploads/")
        assert r.status_code == 202, r.text
        r = self.put(r.headers["Location"], params={"digest": digest}, data=data,
                     headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 201, r.text
        return digest

    def push_image(self, name: str, tag: str | None, layer: bytes = b"layer-bytes",
                   config: bytes | None = None, extra: dict | None = None,
                   media_type: str = OCI_MANIFEST) -> tuple[str, bytes]:
        """Push a config, one layer and a manifest; return (manifest digest, manifest bytes)."""
        config = config if config is not None else json.dumps({"os": "linux", "layer": sha256(layer)}).encode()
        config_digest = self.push_blob(name, config)
        layer_digest = self.push_blob(name, layer)
        doc = manifest_doc(config_digest, len(config), [(layer_digest, len(layer))], media_type)
        if extra:
            doc.update(extra)
        body = json.dumps(doc).encode()
        r = self.put(f"/v2/{name}/manifests/{tag or sha256(body)}", data=body,
                     headers={"Content-Type": media_type})
        assert r.status_code == 201, r.text
        return r.headers["Docker-Content-Digest"], body


def manifest_doc(config_digest: str, config_size: int, layers: list[tuple[str, int]],
                 media_type: str = OCI_MANIFEST) -> dict:
    docker = "docker" in media_type
    return {
        "schemaVersion": 2, "mediaType": media_type,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json" if docker else OCI_CONFIG,
                   "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip" if docker
                    else "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": s}
                   for d, s in layers],
    }


def error_codes(response: requests.Response) -> list[str]:
    return [e["code"] for e in response.json()["errors"]]


def need_binary(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not found: install the Debian package {package!r} (apt-get install {package})")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def docker_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Debian's docker-registry (CNCF distribution 2.8) on a loopback port: the reference."""
    binary = need_binary("docker-registry", "docker-registry")
    root = tmp_path_factory.mktemp("docker-registry")
    port = free_port()
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: error\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n")
    proc = subprocess.Popen([binary, "serve", str(config)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if requests.get(url + "/v2/", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read().decode() if proc.stderr else ""
                pytest.fail(f"docker-registry did not start: {err[-2000:]}")
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
