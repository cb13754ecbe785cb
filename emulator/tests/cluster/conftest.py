"""Fixtures: a started ClusterService tuned for speed, kubectl bound to it, and the
official kubernetes client configured from its kubeconfig."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from aml_emulator.cluster import ClusterService
from cluster_testing import Kubectl


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ClusterService]:
    c = ClusterService(state_dir=None, backoff_base=0.3, hpa_sync_period=0.2, hpa_downscale_window=1.0,
                       drain_delay=0.4, bookmark_interval=0.5)
    c.start()
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture
def kubectl(cluster: ClusterService, tmp_path: Path) -> Kubectl:
    return Kubectl(cluster.kubeconfig_path, tmp_path / "kube-cache")


@pytest.fixture
def k8s(cluster: ClusterService):
    """The official client, loaded from the generated kubeconfig (CA data + bearer token)."""
    from kubernetes import config

    api_client = config.new_client_from_config(config_file=str(cluster.kubeconfig_path))
    try:
        yield api_client
    finally:
        api_client.close()
