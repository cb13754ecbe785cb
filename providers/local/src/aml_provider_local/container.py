"""The local target on a container engine (Docker, or podman's Docker-compatible API).

The service is packaged with ``Model.package`` into the workspace's registry (image
``local-<service>``), rebased onto a base image that carries Python, and run as a
container named ``aml-<workspace hash>-<service>`` publishing port 5001 on 127.0.0.1. Like
the process engine's services, the container outlives the deploying process and is
removed by ``delete()``.

The base image is an OCI layout directory or a rootfs tarball (``scripts/build-base-image.sh``
makes one offline from Debian's packages) named by ``AML_BASE_IMAGE``. An update replaces
the container (a short gap in service, unlike the process engine's zero-downtime reload).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Callable

import attrs

from aml_core.errors import Conflict, InvalidConfig, ProvisioningFailed
from aml_core.records import DeploymentSpec, ServiceRecord, utcnow
from aml_core.workspace import Workspace

BASE_IMAGE_ENV = "AML_BASE_IMAGE"
KIND = "local"


def _noop(_: str) -> None:
    pass


def engine_answers() -> bool:
    """True when a Docker-compatible engine is configured and answers a ping."""
    host = os.environ.get("DOCKER_HOST")
    if not host and not Path("/var/run/docker.sock").exists():
        return False
    try:
        import docker
    except ImportError:
        return False
    try:
        client = docker.from_env(timeout=3)
        client.ping()
        client.close()
    except Exception:  # any failure to reach it means "no engine" for auto
        return False
    return True


def choose_engine(requested: str) -> str:
    if requested != "auto":
        return requested
    return "docker" if os.environ.get(BASE_IMAGE_ENV) and engine_answers() else "process"


def base_image():
    from aml_core.oci import cached_image_from_rootfs, read_layout

    value = os.environ.get(BASE_IMAGE_ENV)
    if not value:
        raise InvalidConfig(
            f"engine='docker' needs a base image with Python: build one with scripts/build-base-image.sh and set "
            f"{BASE_IMAGE_ENV} to the tarball it prints (or to an OCI layout directory), or use engine='process'."
        )
    path = Path(value)
    if path.is_dir():
        return read_layout(path)
    if not path.is_file():
        raise InvalidConfig(f"{BASE_IMAGE_ENV}={value} does not exist.")
    return cached_image_from_rootfs(path)


def container_name(workspace: Workspace, service: str) -> str:
    digest = hashlib.sha256(str(workspace.root).encode()).hexdigest()[:8]
    return f"aml-{digest}-{service}"


def _engine(with_base: bool = False):
    from aml_core.engines.docker import DockerEngine

    return DockerEngine(base_image=base_image() if with_base else None)


def start(workspace: Workspace, spec: DeploymentSpec, port_free: Callable[[int], bool]) -> ServiceRecord:
    from aml_core.images import build_and_store

    config = spec.deployment_config
    progress = spec.progress or _noop
    if config.port is not None and not port_free(config.port):
        raise Conflict(
            f"Port {config.port} on 127.0.0.1 is already in use. Choose another with "
            f"LocalWebservice.deploy_configuration(port=...), or leave port unset to get a free one."
        )
    engine = _engine(with_base=True)
    engine.client()  # fail early, with the engine's own message, if nothing answers
    progress(f"Packaging the image local-{spec.name}")
    image = build_and_store(workspace, spec.models, spec.inference_config, f"local-{spec.name}", progress=progress)
    layout, tag = image.location.removeprefix("oci:").rsplit(":", 1)
    name = container_name(workspace, spec.name)
    progress(f"Starting container {name}")
    container = engine.run((layout, tag), name=name, port=config.port,
                           env={"WORKER_COUNT": str(config.workers)})
    details = {"engine": "docker", "container": name, "image": f"{image.name}:{image.version}",
               "docker_host": os.environ.get("DOCKER_HOST"), "port": int(container.url.rsplit(":", 1)[1])}
    progress("Running init() in the entry script")
    try:
        container.wait_ready(timeout=config.startup_timeout)
    except Exception as exc:
        logs = container.logs()
        container.stop()
        failed = ServiceRecord(name=spec.name, kind=KIND, state="failed", models=tuple(m.id for m in spec.models),
                               details={**details, "last_logs": logs[-20000:]}, error=str(exc).splitlines()[0])
        raise ProvisioningFailed(
            f"Service {spec.name!r} failed to start in its container: {str(exc).splitlines()[0]}. "
            f"See service.get_logs() for the traceback.", record=failed,
        ) from exc
    progress(f"Healthy: {container.url}/score")
    return ServiceRecord(
        name=spec.name, kind=KIND, state="running", scoring_uri=f"{container.url}/score",
        swagger_uri=f"{container.url}/swagger.json", models=tuple(m.id for m in spec.models), details=details,
    )


def _container(details: dict[str, Any]):
    from aml_core.engines.docker import _docker

    docker = _docker()
    client = docker.DockerClient(base_url=details["docker_host"]) if details.get("docker_host") else docker.from_env()
    try:
        return client.containers.get(details["container"])
    except docker.errors.NotFound:
        return None


def status(service: ServiceRecord) -> ServiceRecord:
    if service.state in ("Transitioning", "failed"):
        return service
    try:
        container = _container(service.details)
    except Exception as exc:  # the engine itself is gone
        return attrs.evolve(service, state="unknown", error=f"The container engine does not answer: {exc}")
    if container is not None and container.status == "running":
        return service if service.state == "running" else attrs.evolve(service, state="running", error=None)
    return attrs.evolve(service, state="failed",
                        error="The service's container is no longer running. Redeploy it with overwrite=True, or delete it.")


def logs(service: ServiceRecord, num_lines: int) -> str:
    container = _container(service.details) if service.state != "failed" else None
    if container is None:
        text = service.details.get("last_logs", "")
        return "\n".join(text.splitlines()[-num_lines:])
    return container.logs(tail=num_lines).decode("utf-8", "replace")


def stop(service: ServiceRecord) -> bool:
    container = _container(service.details)
    if container is None:
        return False
    try:
        container.stop(timeout=10)
    finally:
        container.remove(force=True)
    return True


def delete(workspace: Workspace, service: ServiceRecord) -> bool:
    from aml_core.images import Image

    removed = stop(service)
    for image in Image.list(workspace, image_name=f"local-{service.name}"):
        image.delete()
    return removed


def update(workspace: Workspace, service: ServiceRecord, spec: DeploymentSpec, port_free) -> ServiceRecord:
    """Replace the container: the new one starts on the same port once the old one is gone."""
    progress = spec.progress or _noop
    progress("Stopping the old container (the docker engine replaces, it does not reload)")
    stop(service)
    if spec.deployment_config.port is None and service.details.get("port"):
        spec = attrs.evolve(spec, deployment_config=attrs.evolve(spec.deployment_config, port=service.details["port"]))
    record = start(workspace, spec, port_free)
    return attrs.evolve(record, created_time=service.created_time, updated_time=utcnow())
