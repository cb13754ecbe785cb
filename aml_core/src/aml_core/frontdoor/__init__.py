"""The front door: the router before cluster-hosted scoring services (Azure ML's front end).

Key and token auth, weighted traffic between an endpoint's versions, per-replica concurrency
limits with a bounded queue (503), scoring timeouts (504), one retry on an unreachable replica
(502), and per-version load metrics for the autoscaler. Configured through an admin API
(``/-/services/{name}``); see :mod:`aml_core.frontdoor.app` for the routes.

In the emulator it runs in-process; on a real cluster it runs as a pod, fed from the
cluster's objects (:mod:`aml_core.frontdoor.kube`) by the AKS provider's host
(``python -m aml_provider_aks.frontdoor_host``, installed by ``aml aks install-frontdoor``).
Configured over its admin API only, it runs on its own as well::

    python -m aml_core.frontdoor --host 0.0.0.0 --port 8080 --admin-token-file /secrets/admin
"""

from aml_core.frontdoor.app import FrontDoor, deployment_name
from aml_core.frontdoor.config import ConfigError, ServiceEntry, Version, payload_revision

__all__ = ["ConfigError", "FrontDoor", "ServiceEntry", "Version", "deployment_name", "payload_revision"]
