"""The front door's image in a real container engine: podman (Docker-compatible API, runc),
driven with the docker SDK, rebased onto the project's Debian + Python base image
(``scripts/build-base-image.sh``), as a cluster with real containers would run it.

The container watches the emulator's cluster as a pod would: the service-account token and
the cluster's CA mounted at the standard path, ``KUBERNETES_SERVICE_HOST/PORT`` in its
environment, the admin token from a mounted file. The container shares the host's network
(``network_mode="host"``), so it reaches the cluster on loopback.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import requests
from aks_testing import wait_until
from aml_core.frontdoor import kube
from aml_core.oci import cached_image_from_rootfs
from aml_core.oci.testing import free_port
from aml_provider_aks.frontdoor_image import build_frontdoor_image

REPO_ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def podman_with_base(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the podman tier runs rootful (CI runs as root)")
    if shutil.which("podman") is None or shutil.which("debootstrap") is None and not Path("/usr/sbin/debootstrap").exists():
        pytest.skip("podman and debootstrap are needed (scripts/install-system-deps.sh installs them)")
    from aml_core.engines.podman import podman_service

    built = subprocess.run(["bash", str(REPO_ROOT / "scripts" / "build-base-image.sh")], capture_output=True,
                           text=True, timeout=1800, check=False)
    if built.returncode != 0:
        pytest.fail(f"scripts/build-base-image.sh failed:\n{built.stderr[-3000:]}")
    base = cached_image_from_rootfs(Path(built.stdout.strip().splitlines()[-1]))
    with podman_service(tmp_path_factory.mktemp("podman")) as service:
        yield service, base


def test_the_rebased_image_runs_in_podman_and_routes_from_the_cluster(podman_with_base, tmp_path):
    import docker
    from aml_core.engines.docker import DockerEngine
    from aml_emulator.cluster import ClusterService
    from kubernetes import client, config

    service, base = podman_with_base
    engine = DockerEngine(base_url=service.docker_host)
    tag = engine.load(build_frontdoor_image(base=base))
    sa_dir, token_dir = tmp_path / "serviceaccount", tmp_path / "azureml-fe"
    sa_dir.mkdir()
    token_dir.mkdir()
    (token_dir / "admin-token").write_text("podman-admin")
    port = free_port()
    with ClusterService() as cluster:
        (sa_dir / "token").write_text(cluster.token)
        shutil.copy(cluster.ca_path, sa_dir / "ca.crt")
        (sa_dir / "namespace").write_text("azureml")
        api_port = cluster.url.rsplit(":", 1)[1]
        container = docker.DockerClient(base_url=service.docker_host).containers.run(
            tag, ["--admin-token-file", "/etc/azureml-fe/admin-token"], detach=True,
            environment={"AML_HOST": "127.0.0.1", "AML_PORT": str(port),
                         "KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": api_port},
            volumes={str(sa_dir): {"bind": "/var/run/secrets/kubernetes.io/serviceaccount", "mode": "ro"},
                     str(token_dir): {"bind": "/etc/azureml-fe", "mode": "ro"}},
            network_mode="host")  # the compat API defaults to a bridge; the cluster is on loopback
        try:
            def listed():
                container.reload()
                if container.status == "exited":
                    pytest.fail(f"the front door exited: {container.logs().decode(errors='replace')}")
                try:
                    answer = requests.get(f"http://127.0.0.1:{port}/-/services", timeout=2,
                                          headers={"Authorization": "Bearer podman-admin"})
                except requests.ConnectionError:
                    return None
                return answer.json() if answer.status_code == 200 else None

            try:
                wait_until("the containerised front door answers", listed, timeout=120)
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{container.logs().decode(errors='replace')[-3000:]}") from None
            # a routing entry appears in the cluster: the container's watch picks it up
            core = client.CoreV1Api(config.new_client_from_config(config_file=str(cluster.kubeconfig_path)))
            core.create_namespace({"metadata": {"name": "models"}})
            entry = {"auth": "key", "keys": {"primary": "k1", "secondary": "k2"},
                     "versions": {"web": {"upstream": "models/web", "is_default": True}}}
            core.create_namespaced_secret("models", kube.entry_secret("web", "models", entry))
            wait_until("the service is routed", lambda: "web" in json.dumps(listed()), timeout=60)
            no_replica = requests.post(f"http://127.0.0.1:{port}/api/v1/service/web/score", json={"data": 1},
                                       headers={"Authorization": "Bearer k1"}, timeout=10)
            assert no_replica.status_code == 503, no_replica.text  # routed, but no ready replica yet
            wrong_key = requests.post(f"http://127.0.0.1:{port}/api/v1/service/web/score", json={"data": 1},
                                      headers={"Authorization": "Bearer nope"}, timeout=10)
            assert wrong_key.status_code == 401
        finally:
            container.stop(timeout=10)
            logs = container.logs().decode(errors="replace")
            container.remove(force=True)
        assert "front door listening on 127.0.0.1" in logs, logs
