"""The local target's deployment configuration."""

from __future__ import annotations

from typing import Any

import attrs

from aml_core.configfiles import JsonField
from aml_core.errors import InvalidConfig

ENGINES = ("auto", "process", "docker")
MEMORY_LIMIT_NEEDS_PROCESS_ENGINE = (
    "memory_gb_limit is enforced on the process engine only; deploy with "
    "LocalWebservice.deploy_configuration(engine='process', memory_gb_limit=...), or leave it unset.")


def _check_port(instance: Any, attribute: Any, value: int | None) -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 65536):
        raise InvalidConfig(f"port must be an integer between 1 and 65535, got {value!r}.")


def _check_workers(instance: Any, attribute: Any, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidConfig(f"workers must be a positive integer, got {value!r}.")


@attrs.frozen(kw_only=True)
class LocalWebserviceDeploymentConfiguration:
    """Where and how a local service runs.

    :param port: the port on 127.0.0.1; ``None`` picks a free one.
    :param engine: ``"process"`` runs the scoring runtime as a local process group (no
        container engine needed); ``"docker"`` runs the packaged image as a container through
        ``DOCKER_HOST`` (Docker or podman), on the base image named by ``AML_BASE_IMAGE``;
        ``"auto"`` (the default) picks docker when both are there, else process.
    :param workers: scoring worker processes (1 is enough for a test; use the core count
        for throughput).
    :param startup_timeout: seconds to wait for ``init()`` to finish.
    :param memory_gb_limit: the most memory (GB, resident) the service may hold, as a
        container's limit; over it, its largest worker is killed (OOMKilled) and replaced, and
        the service's ``error`` says so. Enforced by the runtime's supervisor on the process
        engine; the docker engine refuses it (it is not passed to the container engine yet,
        and a limit that is silently not enforced is worse than none).
    """

    kind = "local"
    #: ``deploymentconfig.json`` with ``"computeType": "local"``: az ml's ``port``, plus
    #: this target's own ``engine`` and ``workers``
    deployment_json_fields = (
        JsonField("port", "port", "integer"),
        JsonField("engine", "engine", "string"),
        JsonField("workers", "workers", "integer"),
    )

    port: int | None = attrs.field(default=None, validator=_check_port)
    engine: str = attrs.field(default="auto")
    workers: int = attrs.field(default=1, validator=_check_workers)
    startup_timeout: float = 300.0
    memory_gb_limit: float | None = attrs.field(default=None)

    @memory_gb_limit.validator
    def _check_memory(self, attribute: Any, value: float | None) -> None:
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
            raise InvalidConfig(f"memory_gb_limit must be a positive number of GB, got {value!r}.")
        if value is not None and self.engine == "docker":
            raise InvalidConfig(MEMORY_LIMIT_NEEDS_PROCESS_ENGINE)

    @property
    def memory_limit_bytes(self) -> int | None:
        return None if self.memory_gb_limit is None else int(self.memory_gb_limit * 1024 ** 3)

    @engine.validator
    def _check_engine(self, attribute: Any, value: str) -> None:
        if value not in ENGINES:
            raise InvalidConfig(f"engine must be one of {', '.join(ENGINES)}, got {value!r}.")

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LocalWebserviceDeploymentConfiguration":
        names = {a.name for a in attrs.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def evolve_settings(self, **settings: Any) -> "LocalWebserviceDeploymentConfiguration":
        names = {a.name for a in attrs.fields(type(self))}
        unknown = sorted(set(settings) - names)
        if unknown:
            raise InvalidConfig(f"Unknown local service settings: {', '.join(unknown)}.")
        return attrs.evolve(self, **settings)
