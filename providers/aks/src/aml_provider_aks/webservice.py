"""Public handles: ``AksWebservice`` (services) and ``AksCompute`` (clusters), azureml-core's names."""

from __future__ import annotations

from typing import Any

from aml_core.compute import ComputeTarget
from aml_core.webservice import Webservice

from aml_provider_aks.config import (
    DEV_TEST,
    FAST_PROD,
    AksAttachConfiguration,
    AksProvisioningConfiguration,
    AksServiceDeploymentConfiguration,
)


class AksWebservice(Webservice):
    """A scoring service on an AKS (or emulated) Kubernetes cluster."""

    _webservice_type = "aks"

    @staticmethod
    def deploy_configuration(autoscale_enabled=None, autoscale_min_replicas=None, autoscale_max_replicas=None,
                             autoscale_refresh_seconds=None, autoscale_target_utilization=None,
                             collect_model_data=None, auth_enabled=None, cpu_cores=None, memory_gb=None,
                             enable_app_insights=None, scoring_timeout_ms=None, replica_max_concurrent_requests=None,
                             max_request_wait_time=None, num_replicas=None, primary_key=None, secondary_key=None,
                             tags=None, properties=None, description=None, gpu_cores=None, period_seconds=None,
                             initial_delay_seconds=None, timeout_seconds=None, success_threshold=None,
                             failure_threshold=None, namespace=None, token_auth_enabled=None,
                             compute_target_name=None, cpu_cores_limit=None, memory_gb_limit=None,
                             blobfuse_enabled=None) -> AksServiceDeploymentConfiguration:
        args = dict(locals())
        return AksServiceDeploymentConfiguration(**args)

    # -- replicas, as the cluster last showed them --------------------------------------------
    @property
    def num_replicas(self) -> int | None:
        """How many replicas the service's Deployment asks for now, whoever set the count:
        the deployment configuration, the autoscaler, ``aml_scale`` or ``kubectl scale``.
        Read by :meth:`update_deployment_state` (once here if it never was)."""
        return self._replica_count("replicas")

    @property
    def ready_replicas(self) -> int | None:
        """How many of them are ready to serve, as of the last :meth:`update_deployment_state`."""
        return self._replica_count("ready_replicas")

    def _replica_count(self, key: str) -> int | None:
        details = self._record.details
        if key not in details and "namespace" in details and self.state != "Deleted":
            self.update_deployment_state()
        return self._record.details.get(key)


class AksCompute(ComputeTarget):
    """An AKS cluster, provisioned through ARM or attached (by ARM name/id or kubeconfig)."""

    class ClusterPurpose:
        FAST_PROD = FAST_PROD
        DEV_TEST = DEV_TEST

    @staticmethod
    def provisioning_configuration(agent_count: int | None = None, vm_size: str | None = None,
                                   ssl_cname: str | None = None, ssl_cert_pem_file: str | None = None,
                                   ssl_key_pem_file: str | None = None, location: str | None = None,
                                   cluster_purpose: str | None = None, load_balancer_type: str | None = None,
                                   load_balancer_subnet: str | None = None, **extra: Any) -> AksProvisioningConfiguration:
        return AksProvisioningConfiguration(
            agent_count=3 if agent_count is None else agent_count, vm_size=vm_size or "Standard_D3_v2",
            cluster_purpose=cluster_purpose or FAST_PROD, location=location,
            load_balancer_type=load_balancer_type or "PublicIp",
            load_balancer_subnet=load_balancer_subnet or "aks-subnet", extra=dict(extra))

    @staticmethod
    def attach_configuration(resource_group: str | None = None, cluster_name: str | None = None,
                             resource_id: str | None = None, cluster_purpose: str | None = None,
                             kubeconfig_path: str | None = None, **_: Any) -> AksAttachConfiguration:
        return AksAttachConfiguration(resource_group=resource_group, cluster_name=cluster_name,
                                      resource_id=resource_id, kubeconfig_path=kubeconfig_path,
                                      cluster_purpose=cluster_purpose or FAST_PROD)
