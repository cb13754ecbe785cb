"""The local target on a real container engine: podman's Docker-compatible API with runc.

Slow tier: builds (once, cached by scripts/build-base-image.sh) a Debian base image with
Python, starts a private podman API service, and deploys the contract model through it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import requests

from aml_contract_tests.fixtures import SAMPLE_INPUT
from aml_core.model import Model
from aml_core.webservice import Webservice
from aml_provider_local import LocalWebservice

BUILD_SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "build-base-image.sh"

pytestmark = [pytest.mark.slow, pytest.mark.engine]


@pytest.fixture(scope="module")
def docker_engine(tmp_path_factory):
    """DOCKER_HOST and AML_BASE_IMAGE pointing at a private podman service and the base image."""
    pytest.importorskip("docker", reason="the docker engine needs the docker SDK (pip install 'aml-provider-local[docker]')")
    if os.geteuid() != 0:
        pytest.skip("the podman tier runs rootful (CI runs as root)")
    if shutil.which("podman") is None or shutil.which("debootstrap") is None and not Path("/usr/sbin/debootstrap").exists():
        pytest.skip("podman and debootstrap are needed (scripts/install-system-deps.sh installs them)")
    from aml_core.engines.podman import podman_service

    built = subprocess.run(["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=1800)
    if built.returncode != 0:
        pytest.fail(f"scripts/build-base-image.sh failed:\n{built.stderr[-3000:]}")
    base_tar = built.stdout.strip().splitlines()[-1]
    with podman_service(tmp_path_factory.mktemp("podman")) as service:
        saved = {k: os.environ.get(k) for k in ("DOCKER_HOST", "AML_BASE_IMAGE")}
        os.environ["DOCKER_HOST"] = service.docker_host
        os.environ["AML_BASE_IMAGE"] = base_tar
        try:
            yield service
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def test_auto_picks_docker_and_the_container_scores_updates_and_goes(
    docker_engine, aml_workspace, aml_model, aml_inference_config, aml_inference_config_v2
):
    service = Model.deploy(aml_workspace, "local-docker", [aml_model], aml_inference_config,
                           LocalWebservice.deploy_configuration(engine="auto"))
    try:
        service.wait_for_deployment()
        assert service.record.details["engine"] == "docker"
        first = service.run(SAMPLE_INPUT)
        assert len(first) == 2
        assert requests.post(service.scoring_uri, json=SAMPLE_INPUT, timeout=30).json() == first
        assert "Healthy" in requests.get(service.scoring_uri.removesuffix("score"), timeout=10).text
        again = Webservice(aml_workspace, "local-docker")
        assert again.update_deployment_state() == "running"
        assert service.get_logs()  # the container's own output
        service.update(inference_config=aml_inference_config_v2)
        assert service.run(SAMPLE_INPUT) == {"version": 2, "predictions": first}
    finally:
        name = service.record.details.get("container")
        service.delete()
    listed = docker_engine.podman("ps", "-a", "--format", "{{.Names}}")
    assert name and name not in listed.stdout


def test_a_failing_init_in_a_container_keeps_its_logs(docker_engine, aml_workspace, aml_model, aml_broken_inference_config):
    from aml_core.errors import ProvisioningFailed

    service = Model.deploy(aml_workspace, "local-docker-bad", [aml_model], aml_broken_inference_config,
                           LocalWebservice.deploy_configuration(engine="docker"))
    with pytest.raises(ProvisioningFailed, match="get_logs"):
        service.wait_for_deployment()
    failed = Webservice(aml_workspace, "local-docker-bad")
    assert "the model file could not be loaded" in failed.get_logs()
    failed.delete()


def test_docker_without_a_base_image_says_how_to_make_one(aml_workspace, aml_model, aml_inference_config, monkeypatch):
    from aml_core.errors import InvalidConfig

    monkeypatch.delenv("AML_BASE_IMAGE", raising=False)
    service = Model.deploy(aml_workspace, "local-docker-nobase", [aml_model], aml_inference_config,
                           LocalWebservice.deploy_configuration(engine="docker"))
    with pytest.raises(InvalidConfig, match="build-base-image.sh"):
        service.wait_for_deployment()
    Webservice(aml_workspace, "local-docker-nobase").delete()
