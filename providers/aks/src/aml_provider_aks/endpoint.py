"""``AksEndpoint``: one scoring URI in front of up to six versions, each with its own model,
code, scale and share of the traffic (controlled rollout).

Each version is a Deployment and Service ``<endpoint>-<version>`` (see
:mod:`aml_provider_aks.deploy`); the endpoint's front-door entry lists them with their
``traffic_percentile`` and ``is_default``, and the front door splits requests by it, sending
what no version claims to the default version. The version table lives in the service
record's ``details["versions"]``; endpoint-wide settings (auth, limits) in
``details["endpoint_config"]``.
"""

from __future__ import annotations

import contextlib

from collections.abc import Callable, Iterable
from typing import Any

import attrs
from aml_core.errors import InvalidConfig, NotFound
from aml_core.model import model_record
from aml_core.records import DeploymentSpec, ModelRecord, ServiceRecord, TrafficSplit, utcnow
from aml_core.workspace import Workspace

from aml_provider_aks import deploy as _deploy
from aml_provider_aks.config import (
    ENDPOINT_KIND,
    MAX_VERSIONS,
    AksEndpointDeploymentConfiguration,
    AksServiceDeploymentConfiguration,
    check_traffic,
    check_version_name,
)
from aml_provider_aks.frontdoor import locate
from aml_provider_aks.provision import kubeconfig_for
from aml_provider_aks.webservice import AksWebservice

CONTROL, TREATMENT = "Control", "Treatment"


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


#: "leave as it is" for a traffic_percentile, where None means "no share"
UNSET: Any = _Unset()
#: the settings of AksWebservice.deploy_configuration that belong to one version
VERSION_SETTINGS = tuple(a.name for a in attrs.fields(AksServiceDeploymentConfiguration)
                         if a.name not in ("auth_enabled", "token_auth_enabled", "primary_key", "secondary_key",
                                           "tags", "properties", "description", "namespace",
                                           "compute_target_name", "blobfuse_enabled", "enable_app_insights"))
ENDPOINT_SETTINGS = ("auth_enabled", "token_auth_enabled", "enable_app_insights", "description", "tags", "properties")


@attrs.frozen
class AksEndpointVersion:
    """One version of an endpoint, as ``AksEndpoint.versions`` shows it."""

    name: str
    traffic_percentile: int | None
    is_default: bool
    version_type: str
    models: tuple[str, ...]
    image: str | None
    deployment_config: AksServiceDeploymentConfiguration
    tags: dict[str, str] = attrs.Factory(dict)
    properties: dict[str, str] = attrs.Factory(dict)
    description: str | None = None


@attrs.frozen
class VersionChange:
    """What ``create_version``/``update_version``/``delete_version`` asks of the table."""

    name: str
    action: str  # "create" | "update" | "delete"
    settings: dict[str, Any] = attrs.Factory(dict)
    models: tuple[ModelRecord, ...] | None = None
    inference_config: Any = None
    traffic_percentile: Any = UNSET
    is_default: bool | None = None
    is_control_version_type: bool | None = None
    #: the version's own tags, properties and description (``update_version``: tags replace
    #: the old ones, properties are added, as ``AksWebservice.update`` does)
    tags: dict[str, str] | None = None
    properties: dict[str, str] | None = None
    description: str | None = None


class AksEndpoint(AksWebservice):
    """An endpoint with versions on an AKS (or emulated) cluster; azureml-core's names."""

    _webservice_type = ENDPOINT_KIND

    class VersionType:
        control = CONTROL
        treatment = TREATMENT

    @staticmethod
    def deploy_configuration(autoscale_enabled=None, autoscale_min_replicas=None, autoscale_max_replicas=None,
                             autoscale_refresh_seconds=None, autoscale_target_utilization=None,
                             collect_model_data=None, auth_enabled=None, cpu_cores=None, memory_gb=None,
                             enable_app_insights=None, scoring_timeout_ms=None, replica_max_concurrent_requests=None,
                             max_request_wait_time=None, num_replicas=None, primary_key=None, secondary_key=None,
                             tags=None, properties=None, description=None, gpu_cores=None, period_seconds=None,
                             initial_delay_seconds=None, timeout_seconds=None, success_threshold=None,
                             failure_threshold=None, namespace=None, token_auth_enabled=None, version_name=None,
                             traffic_percentile=None, compute_target_name=None, cpu_cores_limit=None,
                             memory_gb_limit=None) -> AksEndpointDeploymentConfiguration:
        return AksEndpointDeploymentConfiguration(**dict(locals()))

    @property
    def versions(self) -> dict[str, AksEndpointVersion]:
        table = self._record.details.get("versions") or {}
        return {name: AksEndpointVersion(
            name=name, traffic_percentile=v.get("traffic_percentile"), is_default=v["is_default"],
            version_type=v["type"], models=tuple(v.get("models") or ()), image=v.get("image"),
            deployment_config=AksServiceDeploymentConfiguration.from_dict(v["config"]),
            tags=dict(v.get("tags") or {}), properties=dict(v.get("properties") or {}),
            description=v.get("description")) for name, v in table.items()}

    @property
    def default_version(self) -> str | None:
        return next((n for n, v in self.versions.items() if v.is_default), None)

    def _change(self, label: str, change: VersionChange | None = None, *, endpoint_settings: dict | None = None,
                wait: bool = True) -> None:
        workspace = self.workspace
        self._provider_operation(label, lambda current, progress: apply_change(
            workspace, current, change, endpoint_settings or {}, progress), wait=wait)

    def create_version(self, version_name: str, *, models: Iterable[Any] | None = None, inference_config: Any = None,
                       traffic_percentile: int | None = None, is_default: bool | None = None,
                       is_control_version_type: bool | None = None, tags: dict | None = None,
                       properties: dict | None = None, description: str | None = None, wait: bool = True,
                       **settings: Any) -> None:
        """Add a version (at most 6). ``models`` and ``inference_config`` default to the default
        version's; ``settings`` are the per-version AKS settings (``num_replicas``, ``cpu_cores``...);
        ``tags``, ``properties`` and ``description`` are the version's own."""
        self._change("create_version", VersionChange(
            name=check_version_name(version_name), action="create", settings=_version_settings(settings),
            models=_models(models), inference_config=inference_config,
            traffic_percentile=check_traffic(traffic_percentile), is_default=is_default,
            is_control_version_type=is_control_version_type, tags=_strings(tags, "tags"),
            properties=_strings(properties, "properties"), description=description), wait=wait)

    def update_version(self, version_name: str, *, models: Iterable[Any] | None = None, inference_config: Any = None,
                       traffic_percentile: Any = UNSET, is_default: bool | None = None,
                       is_control_version_type: bool | None = None, tags: dict | None = None,
                       properties: dict | None = None, description: str | None = None, wait: bool = True,
                       **settings: Any) -> None:
        """Change a version. Only traffic, default, control/treatment, tag, property or
        description changes re-route without a rollout; new models, code or settings roll the
        version's replicas. ``tags`` replace the version's tags; ``properties`` are added."""
        if traffic_percentile is not UNSET:
            check_traffic(traffic_percentile)
        self._change("update_version", VersionChange(
            name=version_name, action="update", settings=_version_settings(settings), models=_models(models),
            inference_config=inference_config, traffic_percentile=traffic_percentile, is_default=is_default,
            is_control_version_type=is_control_version_type, tags=_strings(tags, "tags"),
            properties=_strings(properties, "properties"), description=description), wait=wait)

    def delete_version(self, version_name: str, wait: bool = True) -> None:
        self._change("delete_version", VersionChange(name=version_name, action="delete"), wait=wait)

    def update(self, auth_enabled: bool | None = None, token_auth_enabled: bool | None = None,
               enable_app_insights: bool | None = None, description: str | None = None,
               tags: dict | None = None, properties: dict | None = None, wait: bool = True, **_: Any) -> None:
        """Endpoint-wide settings; versions change with ``update_version``."""
        asked = {"auth_enabled": auth_enabled, "token_auth_enabled": token_auth_enabled,
                 "enable_app_insights": enable_app_insights, "description": description, "tags": tags,
                 "properties": properties}
        given = {k: v for k, v in asked.items() if v is not None}
        if not given:
            raise InvalidConfig("No parameters provided to update.")
        self._change("update", endpoint_settings=given, wait=wait)


def _version_settings(settings: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(settings) - set(VERSION_SETTINGS))
    if unknown:
        endpoint_wide = [k for k in unknown if k in ENDPOINT_SETTINGS]
        hint = f" ({', '.join(endpoint_wide)} apply to the whole endpoint: use endpoint.update())" if endpoint_wide else ""
        raise InvalidConfig(f"Unknown version settings: {', '.join(unknown)}{hint}.")
    return {k: v for k, v in settings.items() if v is not None}


def _strings(value: dict | None, what: str) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidConfig(f"{what} must be a dict of strings, got {type(value).__name__}.")
    return {str(k): str(v) for k, v in value.items()}


def _apply_metadata(entry: dict, change: VersionChange) -> None:
    if change.tags is not None:
        entry["tags"] = dict(change.tags)
    if change.properties is not None:
        entry["properties"] = {**(entry.get("properties") or {}), **change.properties}
    if change.description is not None:
        entry["description"] = change.description


def _models(models: Iterable[Any] | None) -> tuple[ModelRecord, ...] | None:
    if models is None:
        return None
    out = [model_record(m) for m in models]
    if not out:
        raise InvalidConfig("A version needs at least one model.")
    return tuple(out)


# ------------------------------------------------------------------ the version table
def _table_check(endpoint: str, table: dict[str, dict]) -> None:
    if len(table) > MAX_VERSIONS:
        raise InvalidConfig(f"Endpoint {endpoint!r} would have {len(table)} versions; an endpoint has at most "
                            f"{MAX_VERSIONS}. Delete one first with delete_version().")
    shares = {n: v["traffic_percentile"] for n, v in table.items() if v.get("traffic_percentile")}
    if sum(shares.values()) > 100:
        listed = ", ".join(f"{n}={p}%" for n, p in sorted(shares.items()))
        raise InvalidConfig(f"The traffic percentiles of endpoint {endpoint!r} add up to {sum(shares.values())}, "
                            f"more than 100 ({listed}). Lower one of them.")
    defaults = [n for n, v in table.items() if v["is_default"]]
    if len(defaults) != 1:
        raise InvalidConfig(f"Endpoint {endpoint!r} must have exactly one default version, got {defaults or 'none'}.")


def _flip(table: dict[str, dict], name: str, is_default: bool | None, is_control: bool | None) -> None:
    """Setting is_default (or control) on one version clears it on the others, as in azureml-core."""
    if is_default:
        for other in table.values():
            other["is_default"] = False
        table[name]["is_default"] = True
    elif is_default is False and table[name]["is_default"]:
        raise InvalidConfig(f"Version {name!r} is the default; make another version the default "
                            f"(update_version(other, is_default=True)) instead of unsetting it.")
    if is_control:
        for other in table.values():
            other["type"] = TREATMENT
        table[name]["type"] = CONTROL
    elif is_control is False:
        table[name]["type"] = TREATMENT


def _version_entry(config: AksServiceDeploymentConfiguration, models: tuple[ModelRecord, ...],
                   inference_config: Any) -> dict:
    return {"config": config.to_dict(), "models": [m.id for m in models],
            "inference_config": inference_config.to_dict()}


def _load_models(workspace: Workspace, ids: Iterable[str]) -> tuple[ModelRecord, ...]:
    from aml_core import registry

    out = []
    for model_id in ids:
        name, _, version = model_id.partition(":")
        out.append(registry.get_model(workspace, name, int(version)))
    return tuple(out)


def _inference(data: dict) -> Any:
    from aml_core.inference import InferenceConfig

    return InferenceConfig.from_dict(data)


# ------------------------------------------------------------------ hooks
def deploy(workspace: Workspace, spec: DeploymentSpec, existing: ServiceRecord | None = None) -> ServiceRecord:
    """``Model.deploy`` with ``AksEndpoint.deploy_configuration``: a new endpoint with its first
    version, or (``overwrite=True`` / ``update()`` of the stored spec) that version replaced."""
    config = spec.deployment_config
    if not isinstance(config, AksEndpointDeploymentConfiguration):
        raise InvalidConfig(f"AKS endpoints need AksEndpoint.deploy_configuration(...), got {type(config).__name__}.")
    progress = spec.progress or (lambda text: None)
    version = config.version_name or "v1"
    per_version = config.version_settings()
    if existing is not None and existing.details.get("versions"):
        change = VersionChange(name=version, action="update" if version in existing.details["versions"] else "create",
                               settings={k: getattr(per_version, k) for k in VERSION_SETTINGS
                                         if getattr(per_version, k) is not None},
                               models=spec.models, inference_config=spec.inference_config,
                               traffic_percentile=config.traffic_percentile)
        return apply_change(workspace, existing, change, {}, progress)
    namespace = config.namespace or "default"
    record = ServiceRecord(
        name=spec.name, kind=ENDPOINT_KIND, state="Transitioning", models=tuple(m.id for m in spec.models),
        auth_mode=_deploy.auth_mode(config), tags=dict(config.tags or {}), properties=dict(config.properties or {}),
        details={"namespace": namespace, "kubeconfig": kubeconfig_for(workspace, spec.compute_target),
                 "compute_target": spec.compute_target, "endpoint_config": config.version_settings().to_dict()
                 | {k: getattr(config, k) for k in ("auth_enabled", "token_auth_enabled", "primary_key",
                                                    "secondary_key", "namespace")},
                 "versions": {}})
    change = VersionChange(name=version, action="create", settings={}, models=spec.models,
                           inference_config=spec.inference_config, traffic_percentile=config.traffic_percentile,
                           is_default=True, is_control_version_type=True)
    try:
        return apply_change(workspace, record, change, {}, progress, first_config=per_version)
    except Exception as exc:
        # the version being made is recorded, so delete() removes what it left on the cluster
        failed = attrs.evolve(record, state="Failed", error=str(exc),
                              details={**record.details, "versions": {version: {}}})
        with contextlib.suppress(AttributeError):
            exc.record = failed
        raise


def apply_change(workspace: Workspace, record: ServiceRecord, change: VersionChange | None, endpoint_settings: dict,
                 progress: Callable[[str], None], *, first_config: AksServiceDeploymentConfiguration | None = None,
                 traffic: TrafficSplit | None = None) -> ServiceRecord:
    """Apply one change to the endpoint: roll the versions it touches, then re-route."""
    details = record.details
    table = {n: dict(v) for n, v in (details.get("versions") or {}).items()}
    endpoint_cfg = AksServiceDeploymentConfiguration.from_dict(details["endpoint_config"])
    tags, properties = dict(record.tags), dict(record.properties)
    if endpoint_settings:
        tags = endpoint_settings.pop("tags", tags)
        properties = {**properties, **endpoint_settings.pop("properties", {})}
        endpoint_settings.pop("description", None)
        if endpoint_settings.get("token_auth_enabled") and "auth_enabled" not in endpoint_settings:
            endpoint_settings["auth_enabled"] = False
        endpoint_cfg = attrs.evolve(endpoint_cfg, **endpoint_settings)
    rollouts: dict[str, tuple[AksServiceDeploymentConfiguration, tuple[ModelRecord, ...], Any]] = {}
    removed: list[str] = []
    if change is not None:
        name = change.name
        if change.action == "create":
            if name in table:
                raise InvalidConfig(f"Endpoint {record.name!r} already has a version {name!r}; use update_version().")
            if len(table) >= MAX_VERSIONS:
                raise InvalidConfig(f"Endpoint {record.name!r} has {len(table)} versions ({', '.join(table)}); an "
                                    f"endpoint has at most {MAX_VERSIONS}. Delete one first with delete_version().")
            base = next((v for v in table.values() if v["is_default"]), None)
            config = first_config or AksServiceDeploymentConfiguration(num_replicas=1)
            if change.settings:
                config = config.evolve_settings(**change.settings)
            models = change.models or (_load_models(workspace, base["models"]) if base else None)
            inference = change.inference_config or (_inference(base["inference_config"]) if base else None)
            if not models or inference is None:
                raise InvalidConfig(f"create_version({name!r}) needs models and an inference_config.")
            traffic_pct = None if change.traffic_percentile is UNSET else change.traffic_percentile
            table[name] = {"traffic_percentile": traffic_pct, "is_default": not table, "type": TREATMENT,
                           **_version_entry(config, models, inference)}
            _apply_metadata(table[name], change)
            _flip(table, name, change.is_default, change.is_control_version_type or (len(table) == 1 or None))
            rollouts[name] = (config, models, inference)
        elif name not in table:
            raise NotFound(f"Endpoint {record.name!r} has no version {name!r}; it has {', '.join(table) or 'none'}.")
        elif change.action == "delete":
            if len(table) == 1:
                raise InvalidConfig(f"{name!r} is the last version of endpoint {record.name!r}; delete the endpoint.")
            if table[name]["is_default"]:
                raise InvalidConfig(f"Version {name!r} is the default of endpoint {record.name!r}; make another "
                                    f"version the default (update_version(other, is_default=True)) first.")
            del table[name]
            removed.append(name)
        else:
            entry = table[name]
            if change.traffic_percentile is not UNSET:
                entry["traffic_percentile"] = change.traffic_percentile
            _apply_metadata(entry, change)
            _flip(table, name, change.is_default, change.is_control_version_type)
            if change.settings or change.models or change.inference_config:
                config = AksServiceDeploymentConfiguration.from_dict(entry["config"])
                if change.settings:
                    config = config.evolve_settings(**change.settings)
                models = change.models or _load_models(workspace, entry["models"])
                inference = change.inference_config or _inference(entry["inference_config"])
                entry.update(_version_entry(config, models, inference))
                rollouts[name] = (config, models, inference)
    if traffic is not None:
        missing = sorted(set(traffic.weights) - set(table) | ({traffic.default} - set(table)))
        if missing:
            raise NotFound(f"Endpoint {record.name!r} has no version {', '.join(missing)}.")
        for vname, entry in table.items():
            entry["traffic_percentile"] = traffic.weights.get(vname)
            entry["is_default"] = vname == traffic.default
    _table_check(record.name, table)

    namespace = details["namespace"]
    with _deploy.Cluster(details["kubeconfig"]) as c:
        frontdoor = locate(c.core)
        for vname, (config, models, inference) in rollouts.items():
            image, registry = _deploy.package(workspace, f"{record.name}-{vname}", models, inference, progress)
            table[vname]["image"] = image
            _deploy.apply_version(c, namespace, record.name, vname, image, registry, config, progress)
            progress(f"Waiting for the rollout of version {vname!r}")
            _deploy.wait_rollout(c, namespace, _deploy.deployment_name(record.name, vname), progress)
        payload = _deploy.entry_payload(
            endpoint_cfg, _deploy.keys_for(endpoint_cfg, _deploy.read_entry(c, namespace, record.name)),
            namespace, record.name,
            {n: {"traffic_percentile": v["traffic_percentile"], "is_default": v["is_default"]} for n, v in table.items()})
        _deploy.write_entry(c, namespace, record.name, payload)
        progress("Waiting for the front door to route the versions")
        frontdoor.wait_applied(record.name, payload)
        for vname in removed:
            progress(f"Removing version {vname!r}")
            _deploy.delete_version(c, namespace, record.name, vname, wait=60.0)
    all_models = tuple(dict.fromkeys(m for v in table.values() for m in v["models"]))
    return attrs.evolve(record, state="Healthy", error=None, models=all_models, auth_mode=_deploy.auth_mode(endpoint_cfg),
                        tags=tags, properties=properties, scoring_uri=frontdoor.scoring_uri(record.name),
                        swagger_uri=frontdoor.swagger_uri(record.name), updated_time=utcnow(),
                        details={**details, "versions": table, "endpoint_config": endpoint_cfg.to_dict()})


def traffic(workspace: Workspace, service: ServiceRecord, split: TrafficSplit) -> ServiceRecord:
    return apply_change(workspace, service, None, {}, lambda text: None, traffic=split)
