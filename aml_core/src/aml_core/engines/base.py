"""What every engine offers: run an image, get a handle on the running container."""

from __future__ import annotations

import abc
import os
import time
from collections.abc import Mapping
from pathlib import Path

import requests

from aml_core.errors import DeploymentTimeout, NotFound, ProvisioningFailed
from aml_core.oci.image import Image, parse_layout_location, read_layout
from aml_core.oci.registry import Reference, RegistryClient


class RunningContainer(abc.ABC):
    """A started image. ``url`` is where its scoring server listens (``http://127.0.0.1:N``)."""

    name: str
    url: str
    image_digest: str

    @abc.abstractmethod
    def logs(self) -> str:
        """Everything the container wrote to stdout and stderr so far."""

    @abc.abstractmethod
    def stop(self, timeout: float = 10.0) -> None:
        """Stop it (SIGTERM, then SIGKILL after ``timeout``); idempotent."""

    @abc.abstractmethod
    def wait(self, timeout: float | None = None) -> int | None:
        """Wait until it exits; its exit status, or None if still running after ``timeout``."""

    def wait_ready(self, timeout: float = 60.0, path: str = "/") -> None:
        """Poll ``GET path`` until it answers 200; raises with the logs if it exits or times out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if requests.get(self.url + path, timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            status = self.wait(timeout=0)
            if status is not None:
                raise ProvisioningFailed(
                    f"container {self.name!r} exited with status {status} before it was ready; "
                    f"its logs:\n{self.logs()[-4000:]}"
                )
            time.sleep(0.2)
        raise DeploymentTimeout(
            f"container {self.name!r} was not ready at {self.url}{path} within {timeout} s; "
            f"its logs:\n{self.logs()[-4000:]}"
        )

    def __enter__(self) -> RunningContainer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class Engine(abc.ABC):
    """Runs images. Implementations: :class:`~aml_core.engines.process.ProcessEngine`
    (no container engine needed) and :class:`~aml_core.engines.docker.DockerEngine`."""

    #: short name for messages and configuration ("process", "docker")
    kind: str = ""

    def __init__(
        self,
        *,
        registry_credentials: Mapping[str, tuple[str, str]] | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        #: ``{"host:port": (username, password)}`` for pulling from registries
        self._credentials = dict(registry_credentials or {})
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(cache_dir={str(self.cache_dir)!r})"

    @abc.abstractmethod
    def run(
        self, image, *, name: str, port: int | None = None, env: Mapping[str, str] | None = None
    ) -> RunningContainer:
        """Start ``image`` as ``name``, its port 5001 published on 127.0.0.1:``port``.

        :param image: a registry reference (``host:port/repo:tag``), an OCI layout as
            ``oci:<dir>:<tag>``, a layout directory ``Path``, ``(layout_dir, tag)``, or an
            :class:`~aml_core.oci.Image`.
        :param port: the host port; a free one when None.
        :param env: extra environment variables (they override the image's).
        :returns: a handle; the server may still be starting (see ``wait_ready``).
        :raises NotFound: the image or a blob is missing.
        :raises ProvisioningFailed: the engine could not start it.
        """

    def resolve(self, image) -> Image:
        """Turn any accepted image source into an :class:`Image` (pulling if needed)."""
        if isinstance(image, Image):
            return image
        if isinstance(image, tuple):
            return read_layout(Path(image[0]), tag=image[1])
        if isinstance(image, Path):
            return read_layout(image)
        if isinstance(image, str) and image.startswith("oci:"):
            directory, tag = parse_layout_location(image)
            return read_layout(directory, tag=tag)
        if isinstance(image, str):
            ref = Reference.parse(image)
            user, password = self._credentials.get(ref.registry, (None, None))
            client = RegistryClient(ref.registry, username=user, password=password)
            return client.pull_image(
                ref.repository, ref.reference, blob_dir=self.cache_dir / "blobs"
            )
        raise NotFound(
            f"cannot run {image!r}: give a registry reference, oci:<dir>:<tag>, a layout path or an Image"
        )


def default_cache_dir() -> Path:
    """``$AML_CACHE_DIR``, else ``~/.cache/aml``."""
    root = os.environ.get("AML_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "aml")
    return Path(root)
