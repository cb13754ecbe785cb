"""An emulated Kubernetes cluster: an API server that ``kubectl`` and the official
``kubernetes`` client accept, controllers (deployments, replica sets, garbage collection,
endpoints, autoscaling), a kubelet that runs pods as local processes, and a loopback load
balancer per service.

    from aml_emulator.cluster import ClusterService
    with ClusterService() as cluster:
        subprocess.run(["kubectl", "--kubeconfig", str(cluster.kubeconfig_path), "get", "pods"])
"""

from aml_emulator.cluster.exceptions import ApiError
from aml_emulator.cluster.kubelet import (
                                          ContainerLog,
                                          ImagePullError,
                                          PodRuntime,
                                          ProcessRuntime,
                                          RunContainerError,
)
from aml_emulator.cluster.service import ClusterService, MetricsSource
from aml_emulator.cluster.store import StateFormatError

__all__ = ["ApiError", "ClusterService", "ContainerLog", "ImagePullError", "MetricsSource", "PodRuntime",
           "ProcessRuntime", "RunContainerError", "StateFormatError"]
