"""The front door's image, built by our own packaging (``aml_provider_aks.frontdoor_image``)."""

from __future__ import annotations

import io
import json
import tarfile

import pytest
import requests
from aks_testing import wait_until
from aml_core.engines import ProcessEngine
from aml_core.images import ContainerRegistry
from aml_core.oci import RegistryClient
from aml_core.oci.image import LABEL_ENVIRONMENT
from aml_core.oci.testing import free_port
from aml_provider_aks.frontdoor_image import (
    ENTRYPOINT,
    REPOSITORY,
    build_frontdoor_image,
    push_frontdoor_image,
)


def layer_paths(image) -> set[str]:
    (layer,) = image.layers
    with tarfile.open(fileobj=io.BytesIO(layer.read()), mode="r:gz") as tar:
        return set(tar.getnames())


def test_the_image_ships_the_host_and_the_front_door_with_their_requirements():
    image = build_frontdoor_image()
    assert build_frontdoor_image().digest == image.digest  # same sources, same image
    paths = layer_paths(image)
    assert {"opt/aml/lib/aml_provider_aks/frontdoor_host.py", "opt/aml/lib/aml_core/frontdoor/app.py"} <= paths
    assert not any("__pycache__" in p for p in paths)
    requirements = json.loads(image.labels()[LABEL_ENVIRONMENT])["requirements"]
    assert any(r.startswith("kubernetes") for r in requirements) and any(r.startswith("pyjwt") for r in requirements)
    assert any(r.startswith("uvicorn") for r in requirements)  # aml-core's own, for the server
    config = image.config_json()["config"]
    assert config["Entrypoint"] == list(ENTRYPOINT) and "8080/tcp" in config["ExposedPorts"]


def test_the_image_runs_the_host_against_a_cluster(tmp_path):
    """The image as the process engine runs it (what the emulator's kubelet does), watching
    the emulator's cluster through its kubeconfig: it serves, and its admin API lists the
    services routed from the cluster's Secrets."""
    from aml_emulator.cluster import ClusterService

    port = free_port()
    with ClusterService() as cluster:
        container = ProcessEngine(cache_dir=tmp_path / "cache").run(
            build_frontdoor_image(), name="fe", port=port,
            env={"AML_FRONTDOOR_KUBECONFIG": str(cluster.kubeconfig_path), "AML_FRONTDOOR_ADMIN_TOKEN": "t0ken"})
        try:
            def healthy():
                if container.wait(0) is not None:
                    pytest.fail(f"the front door exited: {container.logs()}")
                try:
                    return requests.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200
                except requests.ConnectionError:
                    return False

            wait_until("the front door answers", healthy, timeout=60)
            listed = requests.get(f"http://127.0.0.1:{port}/-/services", timeout=5,
                                  headers={"Authorization": "Bearer t0ken"})
            assert listed.status_code == 200, listed.text
            refused = requests.get(f"http://127.0.0.1:{port}/-/services", timeout=5)
            assert refused.status_code == 401
        finally:
            container.stop()
        assert "front door listening on 127.0.0.1" in container.logs()


def test_pushing_is_content_addressed_and_idempotent(tmp_path):
    from aml_emulator.registry import RegistryService

    with RegistryService() as registry:
        user, password = registry.credentials.username, next(iter(registry.credentials.passwords.values()))
        target = ContainerRegistry(registry.login_server, user, password)
        notes: list[str] = []
        first = push_frontdoor_image(target, progress=notes.append)
        assert push_frontdoor_image(target) == first
        assert first.startswith(f"{registry.login_server}/{REPOSITORY}:")
        tag = first.rsplit(":", 1)[1]
        pulled = RegistryClient(registry.login_server, username=user, password=password).pull_image(REPOSITORY, tag)
        assert pulled.digest == build_frontdoor_image().digest
        assert any("Pushing" in n for n in notes)
