"""Admission for pods, and the service account controller's one job.

:func:`admit_pod` is the ``ServiceAccount`` admission plugin: a pod without
``serviceAccountName`` gets ``default``; a pod naming a service account that does not exist
is refused (``403 Forbidden``, ``pods "<name>" is forbidden: error looking up service
account <ns>/<sa>: serviceaccount "<sa>" not found``); a pod without ``imagePullSecrets``
inherits its service account's. It runs for pods created through the API and for the pods
the replica set controller creates (which go through the API on a real cluster).

:func:`ensure_default_service_account` is the serviceaccount controller: every active
namespace has a ``default`` service account.
"""

from __future__ import annotations

import copy

from aml_emulator.cluster import exceptions as err
from aml_emulator.cluster.models import is_terminating, lookup

NAMESPACES = lookup("", "v1", "namespaces")
SERVICEACCOUNTS = lookup("", "v1", "serviceaccounts")


def admit_pod(store, pod: dict) -> None:
    """Default and check the pod's service account, in place; raises the 403."""
    spec = pod.get("spec")
    if not isinstance(spec, dict):
        return
    m = pod.get("metadata") or {}
    ns = m.get("namespace") or ""
    name = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
    spec["serviceAccountName"] = name
    spec["serviceAccount"] = name  # the deprecated alias, kept in step as the apiserver does
    sa = store.try_get(SERVICEACCOUNTS, ns, name)
    if sa is None:
        raise err.forbidden("", "pods", m.get("name") or m.get("generateName") or "Unknown",
                            f'error looking up service account {ns}/{name}: serviceaccount "{name}" not found')
    if not spec.get("imagePullSecrets") and sa.get("imagePullSecrets"):
        spec["imagePullSecrets"] = copy.deepcopy(sa["imagePullSecrets"])


def ensure_default_service_account(store, namespace: str) -> None:
    ns = store.try_get(NAMESPACES, "", namespace)
    if ns is None or is_terminating(ns) or store.try_get(SERVICEACCOUNTS, namespace, "default") is not None:
        return
    try:
        store.create(SERVICEACCOUNTS, {"metadata": {"name": "default", "namespace": namespace}})
    except err.ApiError:
        pass  # created meanwhile, or the namespace went away
