"""Run an image as a real container through the Docker Engine API (Docker or podman).

Talks to ``DOCKER_HOST`` (or ``base_url``) with the ``docker`` SDK, which is imported only
inside these functions and is an optional extra (``pip install aml-core[docker]``); nothing
else in the core imports this module.

The image is handed to the engine as a ``docker save``-style archive (``POST /images/load``)
rather than pulled by the engine, so a registry on 127.0.0.1 over plain HTTP works without
configuring the engine's insecure registries: references are pulled by our own
:class:`~aml_core.oci.RegistryClient` (blobs cached under ``<cache>/blobs``) and loaded.
The image must carry its own Python (build it on a base image, see
``scripts/build-base-image.sh``).
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path

import requests

from aml_core.engines.base import Engine, RunningContainer
from aml_core.errors import Conflict, InvalidConfig, NotFound, ProvisioningFailed
from aml_core.oci.image import (
    LABEL_APP_LAYERS,
    PORT,
    Image,
    app_layer_count,
    rebase,
    write_docker_archive,
)
from aml_core.oci.media import digest_hex
from aml_core.oci.testing import free_port

#: images loaded by this engine are tagged ``<LOCAL_REPOSITORY>:<first 16 hex of digest>``
LOCAL_REPOSITORY = "localhost/aml-engine"


def _docker():
    try:
        import docker  # the SDK is optional: only this engine needs it
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise NotFound(
            "the docker engine needs the docker SDK: pip install 'aml-core[docker]'"
        ) from exc
    return docker


def _has_app_label(image: Image) -> bool:
    return LABEL_APP_LAYERS in image.labels()


class DockerContainer(RunningContainer):
    def __init__(self, *, name: str, url: str, image_digest: str, container) -> None:
        self.name, self.url, self.image_digest = name, url, image_digest
        self.container = container

    def __repr__(self) -> str:
        return (
            f"DockerContainer(name={self.name!r}, url={self.url!r}, id={self.container.id[:12]!r})"
        )

    def logs(self) -> str:
        try:
            return self.container.logs(stdout=True, stderr=True).decode(errors="replace")
        except _docker().errors.NotFound:
            return ""

    def wait(self, timeout: float | None = None) -> int | None:
        docker = _docker()
        try:
            self.container.reload()
        except docker.errors.NotFound:
            return -1
        if self.container.status in ("exited", "dead", "stopped"):
            return int(self.container.attrs.get("State", {}).get("ExitCode", -1))
        if timeout == 0:
            return None
        try:
            result = self.container.wait(timeout=timeout)
        except requests.exceptions.RequestException:  # the SDK's wait times out this way
            return None
        return int(result.get("StatusCode", -1))

    def stop(self, timeout: float = 10.0) -> None:
        docker = _docker()
        try:
            self.container.stop(timeout=int(timeout))
        except docker.errors.NotFound:
            return
        except docker.errors.APIError:
            pass
        try:
            self.container.remove(force=True)
        except docker.errors.NotFound:
            pass


class DockerEngine(Engine):
    """Runs images with Docker or podman's Docker-compatible API.

    :param base_url: ``unix:///path/podman.sock`` or ``tcp://...``; default ``DOCKER_HOST``.
    :param base_image: what images built without a base (``Model.package``'s) are rebased
        onto before they run (:func:`aml_core.oci.rebase`); it must provide ``python3`` and
        the packages the images' environments need.
    """

    kind = "docker"

    def __init__(
        self,
        *,
        base_url: str | None = None,
        base_image: Image | None = None,
        timeout: int = 300,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.base_image = base_image
        self.base_url = base_url
        self.timeout = timeout
        self._client = None

    def client(self):
        if self._client is None:
            docker = _docker()
            try:
                if self.base_url:
                    self._client = docker.DockerClient(base_url=self.base_url, timeout=self.timeout)
                else:
                    self._client = docker.from_env(timeout=self.timeout)
                self._client.ping()
            except docker.errors.DockerException as exc:
                self._client = None
                raise ProvisioningFailed(
                    f"cannot reach a container engine at {self.base_url or 'DOCKER_HOST'}: {exc}. "
                    "Start one (e.g. `podman system service --time=0 unix:///tmp/podman.sock` and "
                    "DOCKER_HOST=unix:///tmp/podman.sock) or use the process engine."
                ) from exc
        return self._client

    def load(self, image) -> str:
        """Make ``image`` available to the engine; returns its local tag."""
        image = self.resolve(image)
        tag = f"{LOCAL_REPOSITORY}:{digest_hex(image.digest)[:16]}"
        docker = _docker()
        client = self.client()
        try:
            client.images.get(tag)
            return tag
        except docker.errors.ImageNotFound:
            pass
        with tempfile.TemporaryDirectory(prefix="aml-load-") as tmp:
            archive = write_docker_archive(image, Path(tmp) / "image.tar", repo_tags=[tag])
            with open(archive, "rb") as fh:
                try:
                    client.images.load(fh)
                except docker.errors.APIError as exc:
                    raise ProvisioningFailed(
                        f"the container engine refused image {image.digest}: {exc}"
                    ) from exc
        return tag

    def run(
        self, image, *, name: str, port: int | None = None, env: Mapping[str, str] | None = None
    ) -> DockerContainer:
        resolved = self.resolve(image)
        if _has_app_label(resolved) and app_layer_count(resolved) == len(resolved.layers):
            if self.base_image is None:
                raise InvalidConfig(
                    f"image {resolved.digest} has only the app's layers and no base with Python, "
                    "so it cannot run in a container; give DockerEngine(base_image=...) (see "
                    "scripts/build-base-image.sh), build it with PackageSpec(base=...), or run it "
                    "with the process engine"
                )
            resolved = rebase(resolved, self.base_image)
        tag = self.load(resolved)
        port = port or free_port()
        docker = _docker()
        client = self.client()
        try:
            old = client.containers.get(name)
        except docker.errors.NotFound:
            old = None
        if old is not None and old.status == "running":
            raise Conflict(
                f"a container named {name!r} is already running ({old.id[:12]}); stop it first "
                "or choose another name"
            )
        if old is not None:
            old.remove(force=True)  # a leftover of an earlier run that exited
        try:
            container = client.containers.run(
                tag,
                name=name,
                detach=True,
                environment=dict(env or {}),
                ports={f"{PORT}/tcp": ("127.0.0.1", port)},
            )
        except docker.errors.APIError as exc:
            raise ProvisioningFailed(
                f"the container engine could not start {name!r}: {exc}"
            ) from exc
        return DockerContainer(
            name=name,
            url=f"http://127.0.0.1:{port}",
            image_digest=resolved.digest,
            container=container,
        )
