"""``Microsoft.ContainerService/managedClusters``: AKS clusters backed by the emulated cluster.

Every managed cluster created here is a view of the emulator's one Kubernetes cluster:
``listClusterUserCredential`` hands out that cluster's kubeconfig (base64, as AKS does).
Create and delete are long-running operations (:mod:`aml_emulator.arm.operations`):
``201``/``202`` with ``Azure-AsyncOperation`` and ``Location``, ``provisioningState``
``Creating`` → ``Succeeded`` (or ``Failed`` when a test scripts a failure). Clusters are kept
in the ARM state directory. Wire shapes follow azure-mgmt-containerservice's
``ManagedCluster`` and ``CredentialResults`` models.
"""

from __future__ import annotations

import base64
from typing import Any

import attrs

from aml_emulator.arm import exceptions
from aml_emulator.arm.operations import CREATE, DELETE, UPDATE, register_status_routes
from aml_emulator.arm.router import COLLECTION, ITEM, ApiVersionRange, ArmRequest, ArmResponse, ResourceProvider

NAMESPACE = "Microsoft.ContainerService"
MANAGED_CLUSTERS = "managedClusters"
RESOURCE_TYPE = f"{NAMESPACE}/{MANAGED_CLUSTERS}"
#: 2019-02-01 is the oldest version with these shapes; 2026-08-01 is the default of
#: azure-mgmt-containerservice 41.8.0.
API_VERSIONS = ApiVersionRange("2019-02-01", "2026-08-01")
KUBERNETES_VERSION = "1.32.0"

PROVIDER = ResourceProvider(NAMESPACE, API_VERSIONS)


@attrs.define
class ManagedClusterResource:
    """One managed cluster: what was PUT, and how far its provisioning got."""

    name: str
    location: str
    properties: dict[str, Any]
    tags: dict[str, str] = attrs.field(factory=dict)
    provisioning_state: str = "Creating"

    def to_state(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "ManagedClusterResource":
        # an operation does not outlive a restart: one cut short is taken as finished
        state_now = state.get("provisioning_state", "Succeeded")
        return cls(name=state["name"], location=state["location"], properties=dict(state.get("properties") or {}),
                   tags=dict(state.get("tags") or {}),
                   provisioning_state="Failed" if state_now == "Failed" else "Succeeded")


PROVIDER.persist(MANAGED_CLUSTERS, ManagedClusterResource.from_state)


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


#: FPGA (Project Brainwave) VM sizes: vCPUs per VM of the "Standard PBS Family".
FPGA_VM_VCPUS = {"standard_pb6s": 6}
#: Regions that offered the PBS family (the documents' list).
FPGA_REGIONS = ("eastus", "southeastasia", "westeurope", "westus2")
#: The PBS family vCPU quota of an emulated subscription per region: one Standard_PB6s node,
#: what the documents tell users to request ("Standard PBS Family vCPUs" >= 6).
FPGA_VCPU_QUOTA = 6


def _check_fpga_pools(location: str, pools: list) -> None:
    """Azure's rules for FPGA node pools: the region must offer them, the quota must allow them."""
    vcpus = 0
    for pool in pools:
        size = str(pool.get("vmSize", "")) if isinstance(pool, dict) else ""
        if size.lower() not in FPGA_VM_VCPUS:
            continue
        if location.lower().replace(" ", "") not in FPGA_REGIONS:
            raise exceptions.ArmError(
                400, "InvalidParameter",
                f"The VM size {size} is not available in location '{location}'. FPGA VM sizes "
                f"are offered in {', '.join(FPGA_REGIONS)}.")
        vcpus += FPGA_VM_VCPUS[size.lower()] * pool.get("count", 1)
    if vcpus > FPGA_VCPU_QUOTA:
        raise exceptions.ArmError(
            400, "QuotaExceeded",
            f"Operation could not be completed as it results in exceeding approved Standard PBS "
            f"Family vCPUs quota. Location: {location}, Current Limit: {FPGA_VCPU_QUOTA}, "
            f"Additional Required: {vcpus}. Request a quota increase for the Standard PBS "
            f"Family, or use fewer FPGA nodes.")


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
    _check_fpga_pools(location, properties.get("agentPoolProfiles") or [])
    if request.backend.kubeconfig is None:
        raise exceptions.not_implemented(f"{RESOURCE_TYPE}/write without an emulated cluster (start the cluster service)")
    path = request.path
    existing = _find(request)
    group = existing[0] if existing else (path.resource_group or "")
    cluster = ManagedClusterResource(
        name=existing[1].name if existing else (path.name or ""), location=location, properties=properties,
        tags={str(k): str(v) for k, v in (body.get("tags") or {}).items()},
        provisioning_state="Updating" if existing else "Creating",
    )
    request.backend.add_resource(path.subscription_id, group, MANAGED_CLUSTERS, cluster)

    def finished(error: exceptions.ArmError | None) -> None:
        cluster.provisioning_state = "Failed" if error else "Succeeded"
        request.backend.save()
        advertise_fpgas(request.backend)

    resource_id = _resource_id(path.subscription_id, group, cluster.name)
    operation = request.backend.operations.begin(
        request, resource_type=RESOURCE_TYPE, resource_id=resource_id, location=location,
        operation=UPDATE if existing else CREATE, on_finish=finished,
        result=lambda: cluster_json(path.subscription_id, group, cluster))
    return request.backend.operations.accepted(
        request, operation, cluster_json(path.subscription_id, group, cluster), status=200 if existing else 201)


@PROVIDER.operation("GET", MANAGED_CLUSTERS, ITEM, summary="managed_clusters.get")
async def get_cluster(request: ArmRequest) -> dict[str, Any]:
    group, cluster = _get(request)
    request.backend.operations.settle_resource(_resource_id(request.path.subscription_id, group, cluster.name))
    return cluster_json(request.path.subscription_id, group, cluster)


@PROVIDER.operation("GET", MANAGED_CLUSTERS, COLLECTION, summary="managed_clusters.list, managed_clusters.list_by_resource_group")
async def list_clusters(request: ArmRequest) -> dict[str, Any]:
    path = request.path
    found = request.backend.resources(path.subscription_id, path.resource_group, MANAGED_CLUSTERS)
    for _s, group, cluster in found:
        request.backend.operations.settle_resource(_resource_id(path.subscription_id, group.name, cluster.name))
    return {"value": [cluster_json(path.subscription_id, group.name, c) for _s, group, c in found]}


@PROVIDER.operation("DELETE", MANAGED_CLUSTERS, ITEM, summary="managed_clusters.begin_delete")
async def delete_cluster(request: ArmRequest) -> ArmResponse:
    found = _find(request)
    if found is None:
        return ArmResponse(None, status=204)
    group_name, cluster = found
    path = request.path
    cluster.provisioning_state = "Deleting"

    def finished(error: exceptions.ArmError | None) -> None:
        if error is None:
            request.backend.remove_resource(path.subscription_id, group_name, MANAGED_CLUSTERS, cluster.name)
            advertise_fpgas(request.backend)
        else:
            cluster.provisioning_state = "Failed"
            request.backend.save()

    operation = request.backend.operations.begin(
        request, resource_type=RESOURCE_TYPE, resource_id=_resource_id(path.subscription_id, group_name, cluster.name),
        location=cluster.location, operation=DELETE, on_finish=finished)
    return request.backend.operations.accepted(request, operation, None, status=202)


def _credentials(request: ArmRequest) -> dict[str, Any]:
    group, cluster = _get(request)
    request.backend.operations.settle_resource(_resource_id(request.path.subscription_id, group, cluster.name))
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


register_status_routes(PROVIDER, summary="managed_clusters.begin_create_or_update, managed_clusters.begin_delete")


#: the extended resource a node with FPGAs advertises (one FPGA per PB-series VM)
FPGA_RESOURCE = "microsoft.com/fpga"


def advertise_fpgas(backend) -> None:
    """Every managed cluster is a view of the one emulated cluster, so its node advertises
    the FPGAs of every succeeded cluster's PB-series pools (and none when there are none)."""
    advertise = backend.services.get("node_resources")
    if advertise is None:
        return
    fpgas = 0
    for _sub, _group, cluster in backend.resources_of_type(MANAGED_CLUSTERS):
        if cluster.provisioning_state != "Succeeded":
            continue
        for pool in cluster.properties.get("agentPoolProfiles") or []:
            if isinstance(pool, dict) and str(pool.get("vmSize", "")).lower() in FPGA_VM_VCPUS:
                fpgas += int(pool.get("count", 1))
    advertise({FPGA_RESOURCE: fpgas})
