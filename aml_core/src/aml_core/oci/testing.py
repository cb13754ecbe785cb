"""Run Debian's ``docker-registry`` (CNCF distribution) as a reference registry.

For tests and benchmarks that check our client against a registry nobody in this project
wrote. Listens on 127.0.0.1 on a free port, stores blobs in a temporary folder, allows
deletes, and can require htpasswd Basic auth::

    with reference_registry(tmp_path) as url:
        RegistryClient(url).ping()
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import requests

from aml_core.errors import NotFound

BINARY = "docker-registry"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, *, timeout: float = 20.0, ok=(200, 401)) -> None:
    """Poll ``url`` until it answers with one of ``ok`` (bounded by ``timeout``)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).status_code in ok:
                return
        except requests.RequestException as exc:
            last = exc
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout} s ({last})")


@contextlib.contextmanager
def reference_registry(
    workdir: Path, *, htpasswd: str | None = None, extra_config: str = ""
) -> Iterator[str]:
    """Start ``docker-registry``; yields ``http://127.0.0.1:<port>``; stops it afterwards.

    :param htpasswd: the content of an htpasswd file (bcrypt entries) to require Basic auth.
    :param extra_config: YAML appended to the configuration (e.g. an ``auth: token:`` section).
    :raises NotFound: the binary is missing (``apt-get install docker-registry``).
    """
    binary = shutil.which(BINARY) or (
        f"/usr/bin/{BINARY}" if Path(f"/usr/bin/{BINARY}").exists() else None
    )
    if binary is None:
        raise NotFound("docker-registry is not installed; run: apt-get install docker-registry")
    workdir = Path(workdir)
    storage = workdir / "storage"
    storage.mkdir(parents=True, exist_ok=True)
    port = free_port()
    auth = ""
    if htpasswd is not None:
        (workdir / "htpasswd").write_text(htpasswd)
        auth = f"auth:\n  htpasswd:\n    realm: test\n    path: {workdir / 'htpasswd'}\n"
    config = workdir / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n" + auth + extra_config
    )
    log = open(workdir / "registry.log", "wb")
    proc = subprocess.Popen(
        [binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/v2/")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()
