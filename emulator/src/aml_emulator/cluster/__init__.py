"""An emulated Kubernetes cluster: an API server that ``kubectl`` and the official
``kubernetes`` client accept, controllers (deployments, replica sets, garbage collection,
endpoints, autoscaling), a kubelet that runs pods as local processes (images pulled from a
registry; a plain host command only with the pseudo-image ``HOST_PROCESS_IMAGE``), exec,
port-forward and the metrics API, and a loopback load balancer per service.

    from aml_emulator.cluster import ClusterService
    with ClusterService() as cluster:
        subprocess.run(["kubectl", "--kubeconfig", str(cluster.kubeconfig_path), "get", "pods"])
"""

from aml_emulator.cluster.exceptions import ApiError
from aml_emulator.cluster.kubelet import (
                                          HOST_PROCESS_IMAGE,
                                          ContainerLog,
                                          ImagePullError,
                                          PodRuntime,
                                          ProcessRuntime,
                                          RunContainerError,
)
from aml_emulator.cluster.service import ClusterService, MetricsSource
from aml_emulator.cluster.store import StateFormatError

__all__ = ["HOST_PROCESS_IMAGE", "ApiError", "ClusterService", "ContainerLog", "ImagePullError", "MetricsSource",
           "PodRuntime", "ProcessRuntime", "RunContainerError", "StateFormatError"]
