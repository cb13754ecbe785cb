"""A private podman API service: the Docker-compatible API on a unix socket, no daemon.

For machines without Docker (and for tests): podman with runc, cgroupfs, host networking
for builds, and its own storage folders, so nothing touches the system's podman state::

    with podman_service(tmp_path) as svc:
        DockerEngine(base_url=svc.docker_host).run(image, name="svc")
        svc.podman("build", "--pull=never", "-t", "x", context)   # the CLI on the same storage
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import attrs

from aml_core.errors import NotFound, ProvisioningFailed

#: runc + cgroupfs work without systemd; tmp_dir and network_config_dir are private so that
#: cleaning up (``podman system reset``) never touches another podman user's state
CONTAINERS_CONF = """\
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "{workdir}/tmp"

[network]
network_config_dir = "{workdir}/networks"

[containers]
netns = "host"
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
"""


@attrs.frozen
class PodmanService:
    workdir: Path
    socket: Path

    @property
    def docker_host(self) -> str:
        return f"unix://{self.socket}"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "CONTAINERS_CONF": str(self.workdir / "containers.conf"),
            "CONTAINERS_STORAGE_CONF": str(self.workdir / "storage.conf"),
        }

    def podman(
        self, *args: str, timeout: float = 600, check: bool = True
    ) -> subprocess.CompletedProcess:
        """Run the podman CLI against this service's storage."""
        done = subprocess.run(
            ["podman", *args], env=self.env(), capture_output=True, text=True, timeout=timeout
        )
        if check and done.returncode != 0:
            raise ProvisioningFailed(f"podman {' '.join(args)} failed:\n{done.stderr[-3000:]}")
        return done


@contextlib.contextmanager
def podman_service(
    workdir: Path, *, storage_driver: str = "overlay", timeout: float = 30.0
) -> Iterator[PodmanService]:
    """Start ``podman system service`` on ``<workdir>/podman.sock``; stop and clean up after.

    :raises NotFound: podman or runc is missing (``apt-get install podman runc``).
    :raises ProvisioningFailed: the service did not come up within ``timeout`` seconds.
    """
    for tool in ("podman", "runc"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            raise NotFound(f"{tool} is not installed; run: apt-get install podman runc")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "containers.conf").write_text(CONTAINERS_CONF.format(workdir=workdir))
    (workdir / "storage.conf").write_text(
        f'[storage]\ndriver = "{storage_driver}"\n'
        f'graphroot = "{workdir / "storage"}"\nrunroot = "{workdir / "run"}"\n'
    )
    service = PodmanService(workdir=workdir, socket=workdir / "podman.sock")
    log = open(workdir / "service.log", "wb")
    proc = subprocess.Popen(
        ["podman", "system", "service", "--time=0", service.docker_host],
        env=service.env(),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + timeout
        while not service.socket.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise ProvisioningFailed(
                    "podman system service did not start: "
                    + (workdir / "service.log").read_text(errors="replace")[-2000:]
                )
            time.sleep(0.05)
        yield service
    finally:
        service.podman("rm", "--all", "--force", "--time", "2", check=False, timeout=120)
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
        log.close()
        # unmounts overlay layers and deletes the private storage
        service.podman("system", "reset", "--force", check=False, timeout=120)
        shutil.rmtree(workdir / "storage", ignore_errors=True)
        shutil.rmtree(workdir / "run", ignore_errors=True)
