"""Value objects that cross the boundary between the core and providers.

Every hook takes and returns these frozen attrs classes, so a provider never has to guess
at a dict's shape. Serialisation to JSON (for the workspace store and the CLI) lives in
:mod:`aml_core.serialization`, not here.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any, Callable

import attrs

from aml_core.capabilities import Capabilities


def utcnow() -> str:
    """An ISO-8601 UTC timestamp, the format every record uses."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@attrs.frozen(kw_only=True)
class TargetKind:
    """What a provider announces through ``aml_target_kinds``."""

    #: the target kind, e.g. ``"local"``; also the ``computeType`` of its services
    name: str
    #: the distribution name of the provider, for messages and ``aml providers``
    provider: str
    capabilities: Capabilities
    description: str = ""
    #: the Webservice subclass that ``Webservice(ws, name)`` returns for this kind
    webservice_class: Any = attrs.field(default=None, eq=False, hash=False, repr=False)
    #: the deployment configuration class (with ``to_dict``/``from_dict``) for stored specs
    deployment_config_class: Any = attrs.field(default=None, eq=False, hash=False, repr=False)


@attrs.frozen(kw_only=True)
class FileEntry:
    """One file of a registered model, stored by content in the artifact store."""

    path: str  # relative, POSIX separators
    digest: str  # "sha256:<hex>"
    size: int
    executable: bool = False


@attrs.frozen(kw_only=True)
class ModelRecord:
    """A registered model version (immutable; tags and properties change by new records)."""

    name: str
    version: int
    #: the basename of what was registered: a file name, or a folder name
    root: str
    #: True when a folder was registered
    is_folder: bool
    files: tuple[FileEntry, ...]
    description: str | None = None
    tags: dict[str, str] = attrs.field(factory=dict)
    properties: dict[str, str] = attrs.field(factory=dict)
    created_time: str = attrs.field(factory=utcnow)
    model_framework: str | None = None

    @property
    def id(self) -> str:
        return f"{self.name}:{self.version}"


@attrs.frozen(kw_only=True)
class RegisterRequest:
    """What ``Model.register`` asks a model-registry backend to store."""

    name: str
    #: absolute path of the file or folder to register
    path: str
    description: str | None = None
    tags: dict[str, str] = attrs.field(factory=dict)
    properties: dict[str, str] = attrs.field(factory=dict)
    model_framework: str | None = None


@attrs.frozen(kw_only=True)
class DeploymentSpec:
    """Everything a provider needs to create or update a service."""

    name: str
    kind: str
    models: tuple[ModelRecord, ...]
    #: an :class:`aml_core.inference.InferenceConfig`
    inference_config: Any
    #: the target's deployment configuration object (its ``kind`` equals ``self.kind``)
    deployment_config: Any
    #: the compute target's name, for targets that deploy onto provisioned compute
    compute_target: str | None = None
    overwrite: bool = False
    #: an :class:`ImageRecord` to run as it is (``Webservice.deploy_from_image``); then
    #: ``inference_config`` is ``None`` and ``models`` are the image's. Providers get the
    #: image to run with :func:`aml_core.images.deployment_image` either way.
    image: Any = None
    #: called with one line of progress text at a time (``wait_for_deployment(show_output)``)
    progress: Callable[[str], None] | None = attrs.field(default=None, eq=False, repr=False)


@attrs.frozen(kw_only=True)
class ServiceRecord:
    """A deployed service as the workspace remembers it."""

    name: str
    kind: str
    state: str
    scoring_uri: str | None = None
    swagger_uri: str | None = None
    models: tuple[str, ...] = ()
    #: "none" | "key" | "token"
    auth_mode: str = "none"
    error: str | None = None
    created_time: str = attrs.field(factory=utcnow)
    updated_time: str = attrs.field(factory=utcnow)
    tags: dict[str, str] = attrs.field(factory=dict)
    properties: dict[str, str] = attrs.field(factory=dict)
    #: provider-private, JSON-serialisable details (process ids, ports, namespaces ...)
    details: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class AuthRequest:
    """An auth operation on a service: ``get_keys``, ``regen_key`` or ``get_token``."""

    action: str = attrs.field(validator=attrs.validators.in_(("get_keys", "regen_key", "get_token")))
    key_type: str | None = None  # "Primary" | "Secondary" for regen_key
    set_key: str | None = attrs.field(default=None, repr=False)


@attrs.frozen(kw_only=True)
class AuthResult:
    primary_key: str | None = attrs.field(default=None, repr=False)
    secondary_key: str | None = attrs.field(default=None, repr=False)
    token: str | None = attrs.field(default=None, repr=False)
    refresh_after: float | None = None
    expiry_on: float | None = None


@attrs.frozen(kw_only=True)
class ScaleRequest:
    num_replicas: int | None = None
    autoscale_enabled: bool | None = None
    autoscale_min_replicas: int | None = None
    autoscale_max_replicas: int | None = None
    autoscale_target_utilization: int | None = None


def _check_weights(instance: "TrafficSplit", attribute: Any, value: dict[str, int]) -> None:
    if any(not 0 <= w <= 100 for w in value.values()):
        raise ValueError("traffic percentages must be between 0 and 100")
    if sum(value.values()) > 100:
        raise ValueError(f"traffic percentages add up to {sum(value.values())}, more than 100")


@attrs.frozen(kw_only=True)
class TrafficSplit:
    """Traffic percentage per endpoint version; what is left goes to ``default``."""

    weights: dict[str, int] = attrs.field(validator=_check_weights)
    default: str


@attrs.frozen(kw_only=True)
class ProvisionRequest:
    kind: str
    name: str
    #: the target's provisioning or attach configuration
    config: Any
    attach: bool = False


@attrs.frozen(kw_only=True)
class ComputeRecord:
    name: str
    kind: str
    provisioning_state: str
    provisioning_errors: tuple[str, ...] = ()
    details: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class PackageRequest:
    kind: str
    models: tuple[ModelRecord, ...]
    inference_config: Any
    image_name: str | None = None
    image_label: str | None = None
    generate_dockerfile: bool = False


@attrs.frozen(kw_only=True)
class ImageRecord:
    name: str
    version: int
    digest: str | None = None
    location: str | None = None
    #: for ``generate_dockerfile=True``: the directory holding the build context
    context_dir: str | None = None
    details: dict[str, Any] = attrs.field(factory=dict)
