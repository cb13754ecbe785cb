"""``Microsoft.ContainerService/managedClusters``: AKS clusters backed by the emulated cluster.

Every managed cluster created here is a view of the emulator's one Kubernetes cluster:
``listClusterUserCredential`` hands out that cluster's kubeconfig (base64, as AKS does).
Create and delete are long-running operations in ARM's shape: ``201``/``202`` with
``Azure-AsyncOperation`` (and ``Location``) headers, a status document at
``/subscriptions/{sub}/providers/Microsoft.ContainerService/locations/{loc}/operations/{id}``,
and ``provisioningState`` going ``Creating`` → ``Succeeded`` after
:data:`PROVISIONING_SECONDS`. Wire shapes follow azure-mgmt-containerservice's
``ManagedCluster`` and ``CredentialResults`` models.
"""

from __future__ import annotations

import base64
import datetime as _dt
import time
import uuid
from typing import Any

import attrs

from aml_emulator.arm import exceptions
from aml_emulator.arm.router import COLLECTION, ITEM, ApiVersionRange, ArmRequest, ArmResponse, ResourceProvider

NAMESPACE = "Microsoft.ContainerService"
MANAGED_CLUSTERS = "managedClusters"
RESOURCE_TYPE = f"{NAMESPACE}/{MANAGED_CLUSTERS}"
#: 2019-02-01 is the oldest version with these shapes; 2026-08-01 is the default of
#: azure-mgmt-containerservice 41.8.0.
API_VERSIONS = ApiVersionRange("2019-02-01", "2026-08-01")
#: how long a create stays ``Creating`` (a real AKS takes minutes; tests want it quick)
PROVISIONING_SECONDS = 0.5
KUBERNETES_VERSION = "1.32.0"

PROVIDER = ResourceProvider(NAMESPACE, API_VERSIONS)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat().replace("+00:00", "Z")


@attrs.define
class ManagedClusterResource:
    """One managed cluster: what was PUT, and when it finishes provisioning."""

    name: str
    location: str
    properties: dict[str, Any]
    tags: dict[str, str] = attrs.field(factory=dict)
    ready_at: float = 0.0
    failed: bool = False

    @property
    def provisioning_state(self) -> str:
        if self.failed:
            return "Failed"
        return "Succeeded" if time.monotonic() >= self.ready_at else "Creating"


@attrs.define
class AsyncOperation:
    id: str
    resource: ManagedClusterResource | None
    start: str
    #: a delete is finished at once; a create when its resource is provisioned
    done_at: float = 0.0

    def status(self) -> str:
        if self.resource is not None:
            state = self.resource.provisioning_state
            return {"Creating": "InProgress"}.get(state, state)
        return "Succeeded" if time.monotonic() >= self.done_at else "InProgress"


def _resource_id(subscription_id: str, group: str, name: str) -> str:
    return f"/subscriptions/{subscription_id}/resourceGroups/{group}/providers/{RESOURCE_TYPE}/{name}"


def cluster_json(subscription_id: str, group: str, cluster: ManagedClusterResource) -> dict[str, Any]:
    props = cluster.properties
    pools = []
    for pool in props.get("agentPoolProfiles") or [{"name": "nodepool1", "count": 3, "vmSize": "Standard_D3_v2"}]:
        pools.append({"name": pool.get("name", "nodepool1"), "count": pool.get("count", 3),
                      "vmSize": pool.get("vmSize", "Standard_D3_v2"), "mode": pool.get("mode", "System"),
                      "osType": "Linux", "type": "VirtualMachineScaleSets",
                      "provisioningState": cluster.provisioning_state,
                      "powerState": {"code": "Running"}, "orchestratorVersion": KUBERNETES_VERSION})
    dns_prefix = props.get("dnsPrefix") or f"{cluster.name}-dns"
    return {
        "id": _resource_id(subscription_id, group, cluster.name),
        "name": cluster.name,
        "type": RESOURCE_TYPE,
        "location": cluster.location,
        "tags": dict(cluster.tags),
        "sku": {"name": "Base", "tier": "Free"},
        "properties": {
            "provisioningState": cluster.provisioning_state,
            "powerState": {"code": "Running"},
            "kubernetesVersion": props.get("kubernetesVersion") or KUBERNETES_VERSION,
            "currentKubernetesVersion": KUBERNETES_VERSION,
            "dnsPrefix": dns_prefix,
            "fqdn": f"{dns_prefix}.hcp.{cluster.location}.azmk8s.io",
            "agentPoolProfiles": pools,
            "nodeResourceGroup": f"MC_{group}_{cluster.name}_{cluster.location}",
            "enableRBAC": True,
            "networkProfile": props.get("networkProfile") or {"networkPlugin": "kubenet",
                                                              "loadBalancerSku": "standard"},
        },
    }


def _find(request: ArmRequest) -> tuple[str, ManagedClusterResource] | None:
    path = request.path
    for _sub, group, cluster in request.backend.resources(path.subscription_id, path.resource_group, MANAGED_CLUSTERS):
        if cluster.name.lower() == (path.name or "").lower():
            return group.name, cluster
    return None


def _get(request: ArmRequest) -> tuple[str, ManagedClusterResource]:
    found = _find(request)
    if found is None:
        raise exceptions.resource_not_found(RESOURCE_TYPE, request.path.name or "", request.path.resource_group or "")
    return found


def _operation_headers(request: ArmRequest, location: str, operation: AsyncOperation) -> dict[str, str]:
    url = (f"{request.base_url}/subscriptions/{request.path.subscription_id}/providers/{NAMESPACE}/locations/"
           f"{location}/operations/{operation.id}?api-version={request.api_version}")
    return {"Azure-AsyncOperation": url, "Location": url, "Retry-After": "1"}


@PROVIDER.operation("PUT", MANAGED_CLUSTERS, ITEM, summary="managed_clusters.begin_create_or_update")
async def create_or_update(request: ArmRequest) -> ArmResponse:
    body = request.json()
    if not isinstance(body, dict):
        raise exceptions.invalid_request_content("the body must be a JSON object")
    location = body.get("location")
    if not isinstance(location, str) or not location:
        raise exceptions.ArmError(400, "LocationRequired", "The location property is required for this definition.")
    properties = body.get("properties") or {}
    if not isinstance(properties, dict):
        raise exceptions.invalid_request_content("'properties' must be a JSON object")
    for pool in properties.get("agentPoolProfiles") or []:
        count = pool.get("count", 1) if isinstance(pool, dict) else None
        if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= 1000:
            raise exceptions.ArmError(400, "InvalidParameter",
                                      f"The value '{count}' of agentPoolProfile.count is invalid; it must be 0-1000.")
    if request.backend.kubeconfig is None:
        raise exceptions.not_implemented(f"{RESOURCE_TYPE}/write without an emulated cluster (start the cluster service)")
    path = request.path
    existing = _find(request)
    cluster = ManagedClusterResource(
        name=path.name or "", location=location, properties=properties,
        tags={str(k): str(v) for k, v in (body.get("tags") or {}).items()},
        ready_at=time.monotonic() + PROVISIONING_SECONDS,
    )
    if existing is not None:
        cluster.name = existing[1].name
    request.backend.add_resource(path.subscription_id, path.resource_group or "", MANAGED_CLUSTERS, cluster)
    operation = AsyncOperation(id=str(uuid.uuid4()), resource=cluster, start=_now())
    request.backend.operations[operation.id] = operation
    group = existing[0] if existing else (path.resource_group or "")
    return ArmResponse(cluster_json(path.subscription_id, group, cluster), status=200 if existing else 201,
                       headers=_operation_headers(request, location, operation))


@PROVIDER.operation("GET", MANAGED_CLUSTERS, ITEM, summary="managed_clusters.get")
async def get_cluster(request: ArmRequest) -> dict[str, Any]:
    group, cluster = _get(request)
    return cluster_json(request.path.subscription_id, group, cluster)


@PROVIDER.operation("GET", MANAGED_CLUSTERS, COLLECTION, summary="managed_clusters.list, managed_clusters.list_by_resource_group")
async def list_clusters(request: ArmRequest) -> dict[str, Any]:
    path = request.path
    found = request.backend.resources(path.subscription_id, path.resource_group, MANAGED_CLUSTERS)
    return {"value": [cluster_json(path.subscription_id, group.name, c) for _s, group, c in found]}


@PROVIDER.operation("DELETE", MANAGED_CLUSTERS, ITEM, summary="managed_clusters.begin_delete")
async def delete_cluster(request: ArmRequest) -> ArmResponse:
    found = _find(request)
    if found is None:
        return ArmResponse(None, status=204)
    group_name, cluster = found
    group = request.backend.ensure_group(request.path.subscription_id, group_name)
    group.resources.pop((MANAGED_CLUSTERS.lower(), cluster.name.lower()), None)
    operation = AsyncOperation(id=str(uuid.uuid4()), resource=None, start=_now())
    request.backend.operations[operation.id] = operation
    return ArmResponse(None, status=202, headers=_operation_headers(request, cluster.location, operation))


def _credentials(request: ArmRequest) -> dict[str, Any]:
    _group, cluster = _get(request)
    if cluster.provisioning_state != "Succeeded":
        raise exceptions.ArmError(409, "OperationNotAllowed",
                                  f"Managed cluster '{cluster.name}' is {cluster.provisioning_state}; "
                                  f"its credentials are available once it has Succeeded.")
    kubeconfig = request.backend.kubeconfig()
    return {"kubeconfigs": [{"name": "clusterUser", "value": base64.b64encode(kubeconfig.encode()).decode()}]}


@PROVIDER.operation("POST", MANAGED_CLUSTERS, "listClusterUserCredential",
                    summary="managed_clusters.list_cluster_user_credentials")
async def list_user_credentials(request: ArmRequest) -> dict[str, Any]:
    return _credentials(request)


@PROVIDER.operation("POST", MANAGED_CLUSTERS, "listClusterAdminCredential",
                    summary="managed_clusters.list_cluster_admin_credentials")
async def list_admin_credentials(request: ArmRequest) -> dict[str, Any]:
    return _credentials(request)


@PROVIDER.operation("GET", "locations/operations", ITEM, summary="managed_clusters.begin_create_or_update, managed_clusters.begin_delete")
async def operation_status(request: ArmRequest) -> dict[str, Any]:
    operation = request.backend.operations.get(request.path.name or "")
    if operation is None:
        raise exceptions.ArmError(404, "NotFound", f"Operation '{request.path.name}' was not found.")
    status = operation.status()
    result: dict[str, Any] = {"id": operation.id, "name": operation.id, "status": status, "startTime": operation.start}
    if status != "InProgress":
        result["endTime"] = _now()
    if status == "Failed":
        result["error"] = {"code": "ProvisioningFailed", "message": "The managed cluster failed to provision."}
    return result
