"""AKS configurations: the deployment configuration (azureml-core's parameters, effective
defaults and ``_validate_update`` rules) and the compute provisioning/attach configurations."""

from __future__ import annotations

import re
from typing import Any

import attrs

from aml_core.configfiles import JsonField
from aml_core.errors import InvalidConfig

KIND = "aks"
_NAMESPACE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_POSITIVE = ("autoscale_min_replicas", "autoscale_max_replicas", "autoscale_refresh_seconds",
             "autoscale_target_utilization", "cpu_cores", "memory_gb", "scoring_timeout_ms",
             "replica_max_concurrent_requests", "max_request_wait_time", "num_replicas", "period_seconds",
             "initial_delay_seconds", "timeout_seconds", "success_threshold", "failure_threshold",
             "cpu_cores_limit", "memory_gb_limit")
#: ``deploymentconfig.json`` with ``"computeType": "aks"``: az ml's names (the service
#: payload's, reference b4) -> deploy_configuration's parameters
DEPLOYMENT_JSON_FIELDS = (
    JsonField("autoScaler", None, "object", members=(
        JsonField("autoscaleEnabled", "autoscale_enabled", "boolean"),
        JsonField("minReplicas", "autoscale_min_replicas", "integer"),
        JsonField("maxReplicas", "autoscale_max_replicas", "integer"),
        JsonField("refreshPeriodInSeconds", "autoscale_refresh_seconds", "integer"),
        JsonField("targetUtilization", "autoscale_target_utilization", "integer"),
    )),
    JsonField("containerResourceRequirements", None, "object", members=(
        JsonField("cpu", "cpu_cores", "number"),
        JsonField("memoryInGB", "memory_gb", "number"),
        JsonField("cpuLimit", "cpu_cores_limit", "number"),
        JsonField("memoryInGBLimit", "memory_gb_limit", "number"),
        JsonField("gpu", "gpu_cores", "integer"),
    )),
    JsonField("livenessProbeRequirements", None, "object", members=(
        JsonField("periodSeconds", "period_seconds", "integer"),
        JsonField("initialDelaySeconds", "initial_delay_seconds", "integer"),
        JsonField("timeoutSeconds", "timeout_seconds", "integer"),
        JsonField("failureThreshold", "failure_threshold", "integer"),
        JsonField("successThreshold", "success_threshold", "integer"),
    )),
    JsonField("dataCollection", None, "object", members=(
        JsonField("storageEnabled", "collect_model_data", "boolean"),
    )),
    JsonField("keys", None, "object", members=(
        JsonField("primaryKey", "primary_key", "string"),
        JsonField("secondaryKey", "secondary_key", "string"),
    )),
    JsonField("authEnabled", "auth_enabled", "boolean"),
    JsonField("tokenAuthEnabled", "token_auth_enabled", "boolean"),
    JsonField("appInsightsEnabled", "enable_app_insights", "boolean"),
    JsonField("scoringTimeoutMs", "scoring_timeout_ms", "integer"),
    JsonField("maxConcurrentRequestsPerContainer", "replica_max_concurrent_requests", "integer"),
    JsonField("maxQueueWaitMs", "max_request_wait_time", "integer"),
    JsonField("numReplicas", "num_replicas", "integer"),
    JsonField("gpuCores", "gpu_cores", "integer"),
    JsonField("namespace", "namespace", "string"),
    JsonField("computeTargetName", "compute_target_name", "string"),
    JsonField("tags", "tags", "string map"),
    JsonField("properties", "properties", "string map"),
    JsonField("description", "description", "string"),
)
_AUTOSCALE = ("autoscale_min_replicas", "autoscale_max_replicas", "autoscale_refresh_seconds",
              "autoscale_target_utilization")


@attrs.frozen(kw_only=True)
class AksServiceDeploymentConfiguration:
    """``AksWebservice.deploy_configuration(...)``: ``None`` means the effective default
    (see the ``effective_*`` properties); validated at construction."""

    kind = KIND
    deployment_json_fields = DEPLOYMENT_JSON_FIELDS

    autoscale_enabled: bool | None = None
    autoscale_min_replicas: int | None = None
    autoscale_max_replicas: int | None = None
    autoscale_refresh_seconds: int | None = None
    autoscale_target_utilization: int | None = None
    collect_model_data: bool | None = None
    auth_enabled: bool | None = None
    cpu_cores: float | None = None
    memory_gb: float | None = None
    enable_app_insights: bool | None = None
    scoring_timeout_ms: int | None = None
    replica_max_concurrent_requests: int | None = None
    max_request_wait_time: int | None = None
    num_replicas: int | None = None
    primary_key: str | None = attrs.field(default=None, repr=False)
    secondary_key: str | None = attrs.field(default=None, repr=False)
    tags: dict[str, str] | None = None
    properties: dict[str, str] | None = None
    description: str | None = None
    gpu_cores: int | None = None
    period_seconds: int | None = None
    initial_delay_seconds: int | None = None
    timeout_seconds: int | None = None
    success_threshold: int | None = None
    failure_threshold: int | None = None
    namespace: str | None = None
    token_auth_enabled: bool | None = None
    compute_target_name: str | None = None
    cpu_cores_limit: float | None = None
    memory_gb_limit: float | None = None
    blobfuse_enabled: bool | None = None

    def __attrs_post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        for name in _POSITIVE:
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
                raise InvalidConfig(f"Invalid configuration, {name} must be greater than zero (got {value!r}).")
        if self.gpu_cores is not None and (not isinstance(self.gpu_cores, int) or self.gpu_cores < 0):
            raise InvalidConfig(f"Invalid configuration, gpu_cores must be a non-negative integer (got {self.gpu_cores!r}).")
        if self.cpu_cores is not None and self.cpu_cores_limit is not None and self.cpu_cores > self.cpu_cores_limit:
            raise InvalidConfig("Invalid configuration, cpu_cores must be less than or equal to cpu_cores_limit.")
        if self.memory_gb is not None and self.memory_gb_limit is not None and self.memory_gb > self.memory_gb_limit:
            raise InvalidConfig("Invalid configuration, memory_gb must be less than or equal to memory_gb_limit.")
        if self.autoscale_enabled and self.num_replicas is not None:
            raise InvalidConfig("Invalid configuration, autoscale enabled and num_replicas provided.")
        if self.autoscale_enabled is False and self.num_replicas is None:
            raise InvalidConfig("Invalid configuration, autoscale disabled but num_replicas not provided.")
        if not self.effective_autoscale_enabled:
            given = [n for n in _AUTOSCALE if getattr(self, n) is not None]
            if given:
                raise InvalidConfig(f"Invalid configuration, autoscale disabled but {', '.join(given)} provided.")
        if self.effective_min_replicas > self.effective_max_replicas:
            raise InvalidConfig("Invalid configuration, autoscale_min_replicas cannot be greater than "
                                "autoscale_max_replicas.")
        if self.auth_enabled and self.token_auth_enabled:
            raise InvalidConfig("Invalid configuration, cannot set both token_auth_enabled and auth_enabled; "
                                "disable key auth (auth_enabled=False) to turn token auth on.")
        if self.namespace is not None and (not isinstance(self.namespace, str) or not _NAMESPACE.match(self.namespace)):
            raise InvalidConfig(f"Invalid namespace {self.namespace!r}: at most 63 characters of [a-z0-9-], "
                                f"not starting or ending with '-'.")

    # -- effective defaults (azureml-core 1.61 aks.py) ----------------------------------------
    @property
    def effective_autoscale_enabled(self) -> bool:
        return self.autoscale_enabled if self.autoscale_enabled is not None else self.num_replicas is None

    effective_min_replicas = property(lambda self: self.autoscale_min_replicas or 1)
    effective_max_replicas = property(lambda self: self.autoscale_max_replicas or 10)
    effective_target_utilization = property(lambda self: self.autoscale_target_utilization or 70)
    effective_refresh_seconds = property(lambda self: self.autoscale_refresh_seconds or 1)
    effective_cpu_cores = property(lambda self: self.cpu_cores if self.cpu_cores is not None else 0.1)
    effective_memory_gb = property(lambda self: self.memory_gb if self.memory_gb is not None else 0.5)
    effective_scoring_timeout_ms = property(lambda self: self.scoring_timeout_ms or 60000)
    effective_period_seconds = property(lambda self: self.period_seconds or 10)
    effective_initial_delay_seconds = property(lambda self: self.initial_delay_seconds or 310)
    effective_timeout_seconds = property(lambda self: self.timeout_seconds or 2)
    effective_success_threshold = property(lambda self: self.success_threshold or 1)
    effective_failure_threshold = property(lambda self: self.failure_threshold or 3)

    @property
    def effective_auth_enabled(self) -> bool:
        if self.token_auth_enabled:
            return False
        return True if self.auth_enabled is None else bool(self.auth_enabled)

    # -- persistence ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AksServiceDeploymentConfiguration":
        names = {a.name for a in attrs.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def with_scale(self, request: Any, replicas: int | None = None) -> AksServiceDeploymentConfiguration:
        """This configuration with an ``aml_core.records.ScaleRequest`` applied, by the rules of
        ``deploy_configuration``; ``replicas`` is the current count, kept when autoscale is
        switched off without a count. Raises :class:`InvalidConfig` naming the fix."""
        from aml_provider_aks.scale import validate

        validate(request)
        changes = {k: v for k, v in attrs.asdict(request).items() if v is not None}
        bounds = [n for n in ("autoscale_min_replicas", "autoscale_max_replicas", "autoscale_target_utilization")
                  if n in changes]
        if bounds and "autoscale_enabled" not in changes and not self.effective_autoscale_enabled:
            raise InvalidConfig(f"The service has a fixed replica count ({self.num_replicas}); pass "
                                f"autoscale_enabled=True with {', '.join(bounds)} to switch autoscale on.")
        if changes.get("autoscale_enabled") is False and "num_replicas" not in changes:
            # autoscale off: keep the count it had reached
            changes["num_replicas"] = replicas or self.num_replicas or self.effective_min_replicas
        autoscale = changes.get("autoscale_enabled", self.effective_autoscale_enabled and "num_replicas" not in changes)
        if autoscale:
            lo = changes.get("autoscale_min_replicas", self.autoscale_min_replicas) or 1
            hi = changes.get("autoscale_max_replicas", self.autoscale_max_replicas) or 10
            if lo > hi:
                raise InvalidConfig(f"autoscale_min_replicas ({lo}) cannot be greater than autoscale_max_replicas "
                                    f"({hi}); lower the minimum or raise the maximum.")
        return self.evolve_settings(**changes)

    def evolve_settings(self, **settings: Any) -> "AksServiceDeploymentConfiguration":
        names = {a.name for a in attrs.fields(type(self))}
        unknown = sorted(set(settings) - names)
        if unknown:
            raise InvalidConfig(f"Unknown AKS service settings: {', '.join(unknown)}.")
        changes = dict(settings)
        # Turning autoscale off with a replica count (or on) replaces the other mode's settings.
        if changes.get("num_replicas") is not None and "autoscale_enabled" not in changes:
            changes["autoscale_enabled"] = False
        if changes.get("autoscale_enabled") is True:
            changes.setdefault("num_replicas", None)
        if changes.get("autoscale_enabled") is False:
            for name in _AUTOSCALE:
                changes.setdefault(name, None)
        return attrs.evolve(self, **changes)


ENDPOINT_KIND = "aksendpoint"
MAX_VERSIONS = 6
_VERSION_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$")


def check_version_name(name: Any) -> str:
    if not isinstance(name, str) or not _VERSION_NAME.match(name):
        raise InvalidConfig(f"Invalid version name {name!r}: 1-32 characters of [a-z0-9-], not starting or "
                            f"ending with '-' (it becomes part of Kubernetes object names).")
    return name


def check_traffic(value: Any) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100):
        raise InvalidConfig(f"Invalid configuration, traffic_percentile must be an integer from 0 to 100 "
                            f"(got {value!r}).")
    return value


@attrs.frozen(kw_only=True)
class AksEndpointDeploymentConfiguration(AksServiceDeploymentConfiguration):
    """``AksEndpoint.deploy_configuration(...)``: the AKS settings of the endpoint and of its
    first version, plus that version's name and traffic share."""

    kind = ENDPOINT_KIND
    deployment_json_fields = DEPLOYMENT_JSON_FIELDS + (
        JsonField("versionName", "version_name", "string"),
        JsonField("trafficPercentile", "traffic_percentile", "integer"),
    )

    version_name: str | None = None
    traffic_percentile: int | None = None

    def validate(self) -> None:
        super().validate()
        if self.version_name is not None:
            check_version_name(self.version_name)
        check_traffic(self.traffic_percentile)

    def version_settings(self) -> AksServiceDeploymentConfiguration:
        """The per-version part (scale, resources, probes) as a plain AKS configuration."""
        names = {a.name for a in attrs.fields(AksServiceDeploymentConfiguration)}
        return AksServiceDeploymentConfiguration(**{k: v for k, v in attrs.asdict(self).items() if k in names})


# -- compute -------------------------------------------------------------------------------------

#: vCPUs of common VM sizes (Azure's published sizes), for the FastProd rule
VM_VCPUS = {
    "Standard_D1_v2": 1, "Standard_D2_v2": 2, "Standard_D3_v2": 4, "Standard_D4_v2": 8, "Standard_D5_v2": 16,
    "Standard_D11_v2": 2, "Standard_D12_v2": 4, "Standard_D13_v2": 8, "Standard_D14_v2": 16,
    "Standard_DS2_v2": 2, "Standard_DS3_v2": 4, "Standard_DS4_v2": 8, "Standard_DS5_v2": 16,
    "Standard_D2s_v3": 2, "Standard_D4s_v3": 4, "Standard_D8s_v3": 8, "Standard_D16s_v3": 16,
    "Standard_D2_v3": 2, "Standard_D4_v3": 4, "Standard_D8_v3": 8, "Standard_D16_v3": 16,
    "Standard_F2s_v2": 2, "Standard_F4s_v2": 4, "Standard_F8s_v2": 8, "Standard_F16s_v2": 16,
    "Standard_NC6": 6, "Standard_NC12": 12, "Standard_NC24": 24, "Standard_PB6s": 6,
}
FAST_PROD, DEV_TEST = "FastProd", "DevTest"
FAST_PROD_MIN_VCPUS = 12


class ClusterPurpose:
    FAST_PROD = FAST_PROD
    DEV_TEST = DEV_TEST


@attrs.frozen(kw_only=True)
class AksProvisioningConfiguration:
    """``AksCompute.provisioning_configuration(...)``: a new cluster through ARM."""

    kind = KIND

    agent_count: int = 3
    vm_size: str = "Standard_D3_v2"
    cluster_purpose: str = FAST_PROD
    location: str | None = None
    load_balancer_type: str = "PublicIp"
    load_balancer_subnet: str | None = "aks-subnet"
    extra: dict[str, Any] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.agent_count, int) or isinstance(self.agent_count, bool) or self.agent_count < 1:
            raise InvalidConfig(f"agent_count must be a positive integer, got {self.agent_count!r}.")
        if self.cluster_purpose not in (FAST_PROD, DEV_TEST):
            raise InvalidConfig(f"cluster_purpose must be {FAST_PROD!r} or {DEV_TEST!r}, got {self.cluster_purpose!r}.")
        if self.load_balancer_type not in ("PublicIp", "InternalLoadBalancer"):
            raise InvalidConfig(f"load_balancer_type must be 'PublicIp' or 'InternalLoadBalancer', "
                                f"got {self.load_balancer_type!r}.")
        if self.cluster_purpose == FAST_PROD:
            vcpus = VM_VCPUS.get(self.vm_size)
            if vcpus is None:
                raise InvalidConfig(f"Unknown vm_size {self.vm_size!r} for the FastProd rule; use one of "
                                    f"{', '.join(sorted(VM_VCPUS))}, or cluster_purpose='DevTest'.")
            if self.agent_count * vcpus < FAST_PROD_MIN_VCPUS:
                raise InvalidConfig(
                    f"FastProd rule: a FastProd cluster needs at least {FAST_PROD_MIN_VCPUS} vCPUs "
                    f"(agent_count x vCPUs per VM); {self.agent_count} x {self.vm_size} ({vcpus} vCPUs) = "
                    f"{self.agent_count * vcpus}. Add agents, pick a bigger vm_size, or use cluster_purpose='DevTest'.")


@attrs.frozen(kw_only=True)
class AksAttachConfiguration:
    """``AksCompute.attach_configuration(...)``: an existing cluster, by ARM name/id or kubeconfig."""

    kind = KIND

    resource_group: str | None = None
    cluster_name: str | None = None
    resource_id: str | None = None
    kubeconfig_path: str | None = None
    cluster_purpose: str = FAST_PROD

    def __attrs_post_init__(self) -> None:
        if self.kubeconfig_path:
            return
        if self.resource_id:
            if not re.match(r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.ContainerService/"
                            r"managedClusters/[^/]+$", self.resource_id, re.I):
                raise InvalidConfig(f"resource_id {self.resource_id!r} is not a managed cluster's ARM id "
                                    f"(/subscriptions/.../resourceGroups/.../providers/Microsoft.ContainerService/"
                                    f"managedClusters/NAME).")
            return
        if not (self.resource_group and self.cluster_name):
            raise InvalidConfig("attach_configuration needs resource_group and cluster_name, or resource_id, "
                                "or kubeconfig_path.")

    @property
    def target_key(self) -> str:
        """What identifies the attached cluster (to refuse attaching it twice)."""
        if self.kubeconfig_path:
            return f"kubeconfig:{self.kubeconfig_path}"
        if self.resource_id:
            parts = self.resource_id.split("/")
            return f"arm:{parts[4].lower()}/{parts[-1].lower()}"
        return f"arm:{(self.resource_group or '').lower()}/{(self.cluster_name or '').lower()}"
