"""``aml_scale`` for AKS services: a fixed replica count, or autoscale bounds.

A fixed count (``num_replicas``) removes the service's HorizontalPodAutoscaler and sets the
Deployment's ``replicas`` through its ``scale`` subresource (what ``kubectl scale`` does);
autoscale bounds create or replace the HPA (the body ``deploy.py`` deploys with) and bring
the current count inside them at once rather than at the autoscaler's next sync. The hook
returns once the cluster has accepted the change; pods converge afterwards.

``Webservice.scale()`` stores the new settings in the service's deployment configuration
(``AksServiceDeploymentConfiguration.with_scale``), so a later ``service.update()`` keeps the
scale instead of re-applying the count the service was deployed with.
"""

from __future__ import annotations

from typing import Any

import attrs
from aml_core.errors import InvalidConfig, NotFound
from aml_core.frontdoor import deployment_name
from aml_core.records import ScaleRequest, ServiceRecord, utcnow
from aml_core.workspace import Workspace

from aml_provider_aks.config import AksServiceDeploymentConfiguration

_BOUNDS = ("autoscale_min_replicas", "autoscale_max_replicas", "autoscale_target_utilization")


def _positive(name: str, value: Any, hint: str) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidConfig(f"{name} must be a positive integer (got {value!r}); {hint}.")


def validate(request: ScaleRequest) -> None:
    """What can be said of a request without knowing the service; raises InvalidConfig."""
    _positive("num_replicas", request.num_replicas, "pass num_replicas=1 or more")
    _positive("autoscale_min_replicas", request.autoscale_min_replicas, "the smallest minimum is 1")
    _positive("autoscale_max_replicas", request.autoscale_max_replicas,
              "pass a maximum of at least autoscale_min_replicas")
    _positive("autoscale_target_utilization", request.autoscale_target_utilization,
              "pass a percentage between 1 and 100 (the default is 70)")
    if request.autoscale_target_utilization is not None and request.autoscale_target_utilization > 100:
        raise InvalidConfig(f"autoscale_target_utilization is a percentage of the CPU request (got "
                            f"{request.autoscale_target_utilization}); pass a value between 1 and 100.")
    bounds = [n for n in _BOUNDS if getattr(request, n) is not None]
    if request.num_replicas is not None and (request.autoscale_enabled or bounds):
        given = ", ".join(["autoscale_enabled=True"] * bool(request.autoscale_enabled) + bounds)
        raise InvalidConfig(f"num_replicas sets a fixed count and switches autoscale off, so it cannot be "
                            f"combined with {given}; pass either num_replicas or the autoscale settings.")
    if request.autoscale_enabled is False and bounds:
        raise InvalidConfig(f"{', '.join(bounds)} only apply with autoscale on; drop them, or pass "
                            f"autoscale_enabled=True.")
    lo, hi = request.autoscale_min_replicas, request.autoscale_max_replicas
    if lo is not None and hi is not None and lo > hi:
        raise InvalidConfig(f"autoscale_min_replicas ({lo}) cannot be greater than autoscale_max_replicas "
                            f"({hi}); lower the minimum or raise the maximum.")
    if request.num_replicas is None and request.autoscale_enabled is None and not bounds:
        raise InvalidConfig("No scale parameters provided: pass num_replicas, or autoscale_enabled=True "
                            "and/or autoscale_min_replicas, autoscale_max_replicas, "
                            "autoscale_target_utilization.")


def _from_cluster(c: Any, namespace: str, name: str) -> AksServiceDeploymentConfiguration:
    """The configuration the cluster shows, for a service the workspace keeps no spec of."""
    from aml_provider_aks.deploy import _missing

    try:
        hpa = c.scaling.read_namespaced_horizontal_pod_autoscaler(name, namespace)
    except Exception as exc:
        if not _missing(exc):
            raise
        return AksServiceDeploymentConfiguration(num_replicas=_read_replicas(c, namespace, name))
    target = None
    for metric in hpa.spec.metrics or []:
        if metric.resource is not None and metric.resource.target is not None:
            target = metric.resource.target.average_utilization
    return AksServiceDeploymentConfiguration(autoscale_enabled=True, autoscale_min_replicas=hpa.spec.min_replicas,
                                             autoscale_max_replicas=hpa.spec.max_replicas,
                                             autoscale_target_utilization=target)


def _read_replicas(c: Any, namespace: str, name: str) -> int:
    from aml_provider_aks.deploy import _missing

    try:
        return int(c.apps.read_namespaced_deployment_scale(name, namespace).spec.replicas or 0)
    except Exception as exc:
        if not _missing(exc):
            raise
        raise NotFound(f"Deployment {name!r} of the service is gone from namespace {namespace!r} of the "
                       f"cluster; deploy the service again.") from exc


# ------------------------------------------------------------------ the hook
def scale(workspace: Workspace, service: ServiceRecord, request: ScaleRequest,
          deployment_config: AksServiceDeploymentConfiguration | None = None) -> ServiceRecord:
    from aml_provider_aks.deploy import Cluster, _apply, _hpa, _ignore_missing

    validate(request)
    versions = list(service.details.get("versions") or [service.name])
    if len(versions) != 1:
        raise InvalidConfig(f"Service {service.name!r} has versions {', '.join(versions)}; scale one version "
                            f"at a time by updating that version with its num_replicas or autoscale settings.")
    version = versions[0]
    namespace = service.details.get("namespace") or "default"
    name = deployment_name(service.name, version)
    with Cluster(service.details["kubeconfig"]) as c:
        replicas_now = _read_replicas(c, namespace, name)
        # the core passes the stored configuration with the request applied; without one
        # (a direct hook call) the cluster's HPA and Deployment say what the settings are
        config = deployment_config or _from_cluster(c, namespace, name).with_scale(request, replicas_now)
        if config.effective_autoscale_enabled:
            _apply(c.scaling.create_namespaced_horizontal_pod_autoscaler,
                   c.scaling.replace_namespaced_horizontal_pod_autoscaler,
                   c.scaling.read_namespaced_horizontal_pod_autoscaler, namespace, name,
                   _hpa(service.name, version, config))
            # the autoscaler would bring the count inside the bounds at its next sync; now is better
            desired = min(max(replicas_now, config.effective_min_replicas), config.effective_max_replicas)
        else:
            # the autoscaler goes first, so it cannot undo the new count
            _ignore_missing(c.scaling.delete_namespaced_horizontal_pod_autoscaler, name, namespace)
            desired = config.num_replicas
        if desired != replicas_now:
            c.apps.patch_namespaced_deployment_scale(name, namespace, {"spec": {"replicas": desired}})
    return attrs.evolve(service, details={**service.details, "replicas": desired}, updated_time=utcnow())
