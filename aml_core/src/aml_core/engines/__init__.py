"""Engines that run an OCI image and hand back a :class:`RunningContainer`.

* :class:`ProcessEngine` needs no container engine: it unpacks the image into a cache keyed
  by digest, materialises its environment once, and runs its entrypoint as a process.
* :class:`~aml_core.engines.docker.DockerEngine` (imported on demand, it needs the ``docker``
  package: ``pip install aml-core[docker]``) runs it as a real container through Docker or
  podman's Docker-compatible API.

Both share one interface::

    with ProcessEngine().run(image, name="svc", port=None, env={}) as container:
        container.wait_ready()
        requests.post(container.url + "/score", json=...)
"""

from aml_core.engines.base import Engine, RunningContainer, default_cache_dir
from aml_core.engines.process import ProcessContainer, ProcessEngine


def get_engine(kind: str, **kwargs) -> Engine:
    """``"process"`` or ``"docker"`` → an engine instance (kwargs go to its constructor)."""
    if kind == "process":
        return ProcessEngine(**kwargs)
    if kind == "docker":
        from aml_core.engines.docker import DockerEngine

        return DockerEngine(**kwargs)
    from aml_core.errors import InvalidConfig

    raise InvalidConfig(f"unknown engine {kind!r}; choose 'process' or 'docker'")


__all__ = [
    "Engine",
    "ProcessContainer",
    "ProcessEngine",
    "RunningContainer",
    "default_cache_dir",
    "get_engine",
]
