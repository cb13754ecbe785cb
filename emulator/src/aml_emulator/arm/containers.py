"""What every ARM resource provider that runs containers needs (container groups, web apps,
function apps): the engine, loopback ports, and pulling an image with given credentials.

Images are pulled by the emulator itself, with the credentials the resource carries (ACI's
``imageRegistryCredentials``, App Service's ``DOCKER_REGISTRY_SERVER_*`` settings), so a
wrong password fails the way the resource's owner sees it, before the engine runs anything.
"""

from __future__ import annotations

import socket
from typing import Any

#: the emulator's one public address: every running container is published here
PUBLIC_IP = "127.0.0.1"


def engine(backend: Any) -> Any:
    """The engine containers run on: ``backend.services["engine"]``, else a
    :class:`aml_core.engines.ProcessEngine` made once and kept there."""
    found = backend.services.get("engine")
    if found is None:
        from aml_core.engines import ProcessEngine

        found = backend.services["engine"] = ProcessEngine()
    return found


def free_port(host: str = PUBLIC_IP) -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_free(port: int, host: str = PUBLIC_IP) -> bool:
    """Whether ``port`` can be bound (a port kept across a restart may have been taken)."""
    with socket.socket() as sock:
        # as the servers in containers do: a port whose old connections linger is free
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def pull_image(backend: Any, reference: str, credentials: dict[str, tuple[str | None, str | None]]) -> Any:
    """Pull ``reference`` (``host:port/repo:tag``) into the engine's blob cache.

    :param credentials: ``{registry host: (username, password)}``; a registry not listed is
        pulled anonymously.
    :raises Exception: whatever the registry client raises (refused credentials, unknown
        image); callers put its text in the resource's state and logs.
    """
    from aml_core.oci.registry import Reference, RegistryClient

    ref = Reference.parse(reference)
    user, password = credentials.get(ref.registry, (None, None))
    client = RegistryClient(ref.registry, username=user, password=password)
    return client.pull_image(ref.repository, ref.reference, blob_dir=engine(backend).cache_dir / "blobs")
