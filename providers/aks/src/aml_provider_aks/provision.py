"""Provision or attach an AKS cluster through Azure Resource Manager, from the cloud profile.

Everything (ARM endpoint, CA, subscription, resource group, token) comes from
:meth:`aml_core.profiles.CloudProfile.load`; the emulator and Azure differ only in the
profile. The cluster's kubeconfig (``listClusterUserCredential``) is kept in the workspace,
mode 0600, at ``services/aks/computes/<name>.kubeconfig``.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from aml_core.errors import AmlError, Conflict, InvalidConfig, NotFound, ProvisioningFailed
from aml_core.secure_files import private_dir, write_private
from aml_core.records import ComputeRecord, ProvisionRequest
from aml_core.workspace import Workspace

from aml_provider_aks.config import KIND, AksAttachConfiguration, AksProvisioningConfiguration


def _client(profile):
    from azure.mgmt.containerservice import ContainerServiceClient

    from aml_azure_common import management_client

    return management_client(ContainerServiceClient, profile)


def _kubeconfig_path(workspace: Workspace, name: str) -> Path:
    return workspace.root / "services" / KIND / "computes" / f"{name}.kubeconfig"


def _write_private(path: Path, data: bytes) -> None:
    private_dir(path.parent)
    write_private(path, data)


def _translate(exc: Exception, what: str) -> Exception:
    from aml_azure_common import translate

    return translate(exc, what, fix="Check the resource group and cluster name in the cloud profile.")


def _fetch_kubeconfig(client, resource_group: str, cluster_name: str) -> bytes:
    creds = client.managed_clusters.list_cluster_user_credentials(resource_group, cluster_name)
    value = creds.kubeconfigs[0].value
    # the SDK decodes the base64 'value' to bytes; a raw REST answer would still be base64 text
    return value if isinstance(value, bytes) else base64.b64decode(value)


def _attached_keys(workspace: Workspace) -> dict[str, str]:
    from aml_core.compute import list_computes

    return {c.details.get("target_key"): c.name for c in list_computes(workspace)
            if c.kind == KIND and c.details.get("target_key")}


def provision(workspace: Workspace, request: ProvisionRequest) -> ComputeRecord:
    from aml_core.profiles import CloudProfile

    config = request.config
    if request.attach:
        if not isinstance(config, AksAttachConfiguration):
            raise InvalidConfig(f"attach needs AksCompute.attach_configuration(...), got {type(config).__name__}.")
        return _attach(workspace, request.name, config)
    if not isinstance(config, AksProvisioningConfiguration):
        raise InvalidConfig(f"create needs AksCompute.provisioning_configuration(...), got {type(config).__name__}.")
    profile = CloudProfile.load()
    client = _client(profile)
    location = config.location or profile.extra.get("location") or "westus"
    body = {"location": location, "tags": {"aml.cluster_purpose": config.cluster_purpose},
            "properties": {"dnsPrefix": f"{request.name}-dns", "agentPoolProfiles": [
                {"name": "agentpool", "count": config.agent_count, "vmSize": config.vm_size, "mode": "System"}]}}
    what = f"Creating AKS cluster {request.name!r} in resource group {profile.resource_group!r}"
    try:
        from aml_azure_common import wait_for

        cluster = wait_for(client.managed_clusters.begin_create_or_update(profile.resource_group, request.name, body),
                           what=what)
        if cluster.provisioning_state != "Succeeded":
            raise ProvisioningFailed(f"{what} ended {cluster.provisioning_state}.")
        kubeconfig = _fetch_kubeconfig(client, profile.resource_group, request.name)
    except Exception as exc:
        if isinstance(exc, AmlError):
            raise
        raise _translate(exc, what) from exc
    path = _kubeconfig_path(workspace, request.name)
    _write_private(path, kubeconfig)
    return ComputeRecord(name=request.name, kind=KIND, provisioning_state="Succeeded", details={
        "attached": False, "kubeconfig": str(path), "resource_group": profile.resource_group,
        "cluster_name": request.name, "cluster_purpose": config.cluster_purpose,
        "agent_count": config.agent_count, "vm_size": config.vm_size, "location": location,
        "target_key": f"arm:{profile.resource_group.lower()}/{request.name.lower()}"})


def _attach(workspace: Workspace, name: str, config: AksAttachConfiguration) -> ComputeRecord:
    taken = _attached_keys(workspace)
    if config.target_key in taken:
        raise Conflict(f"This cluster is already attached to workspace {workspace.name!r} as compute "
                       f"{taken[config.target_key]!r}; use it, or detach it first.")
    path = _kubeconfig_path(workspace, name)
    details: dict[str, Any] = {"attached": True, "cluster_purpose": config.cluster_purpose,
                               "target_key": config.target_key, "kubeconfig": str(path)}
    if config.kubeconfig_path:
        source = Path(config.kubeconfig_path).expanduser()
        if not source.is_file():
            raise InvalidConfig(f"kubeconfig_path {str(source)!r} does not exist.")
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_private(path, source.read_bytes())
    else:
        from aml_core.profiles import CloudProfile

        if config.resource_id:
            parts = config.resource_id.split("/")
            group, cluster_name = parts[4], parts[-1]
        else:
            group, cluster_name = config.resource_group, config.cluster_name
        client = _client(CloudProfile.load())
        what = f"Attaching AKS cluster {cluster_name!r} of resource group {group!r}"
        try:
            cluster = client.managed_clusters.get(group, cluster_name)
            kubeconfig = _fetch_kubeconfig(client, group, cluster_name)
        except Exception as exc:
            raise _translate(exc, what) from exc
        if cluster.provisioning_state != "Succeeded":
            raise ProvisioningFailed(f"{what}: the cluster is {cluster.provisioning_state}, not Succeeded.")
        _write_private(path, kubeconfig)
        details.update(resource_group=group, cluster_name=cluster_name)
    return ComputeRecord(name=name, kind=KIND, provisioning_state="Succeeded", details=details)


def release(workspace: Workspace, compute: ComputeRecord, detach: bool) -> bool:
    details = compute.details
    if not detach:
        if details.get("attached"):
            raise InvalidConfig(f"Compute {compute.name!r} was attached, not created here; detach() it instead.")
        from aml_core.profiles import CloudProfile

        client = _client(CloudProfile.load())
        try:
            client.managed_clusters.begin_delete(details["resource_group"], details["cluster_name"]).result()
        except Exception as exc:
            raise _translate(exc, f"Deleting AKS cluster {details.get('cluster_name')!r}") from exc
    path = Path(details.get("kubeconfig") or _kubeconfig_path(workspace, compute.name))
    existed = path.exists()
    path.unlink(missing_ok=True)
    return existed


def kubeconfig_for(workspace: Workspace, compute_name: str | None) -> str:
    """The kubeconfig of a provisioned/attached compute target (raises with the fix when missing)."""
    from aml_core.compute import load_compute

    if not compute_name:
        raise InvalidConfig("AKS deployments need deployment_target=<an AksCompute> (provision or attach one).")
    record = load_compute(workspace, compute_name)
    if record is None or record.kind != KIND:
        raise NotFound(f"There is no AKS compute target {compute_name!r} in workspace {workspace.name!r}.")
    if record.provisioning_state != "Succeeded":
        raise InvalidConfig(f"Compute {compute_name!r} is {record.provisioning_state}; wait_for_completion() first.")
    return record.details["kubeconfig"]


