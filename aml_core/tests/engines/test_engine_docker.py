"""The docker engine through podman's Docker-compatible API, and the Dockerfile build context.

Slow: the first run builds the Debian base image (scripts/build-base-image.sh, cached under
~/.cache/aml/base-images keyed by the script's hash); each session loads it into a private
podman storage.
"""

from __future__ import annotations

import pytest
import requests
from aml_core.engines.docker import DockerContainer, DockerEngine
from aml_core.errors import Conflict, InvalidConfig, ProvisioningFailed
from aml_core.oci import build_image, write_build_context
from aml_core.oci.testing import free_port


@pytest.fixture(scope="module")
def engine(podman, tmp_path_factory):
    pytest.importorskip(
        "docker", reason="the docker engine needs the docker SDK (pip install 'aml-core[docker]')"
    )
    return DockerEngine(
        base_url=podman.docker_host, cache_dir=tmp_path_factory.mktemp("docker-cache")
    )


@pytest.mark.slow
@pytest.mark.engine
def test_runs_and_scores_the_quickstart_image_in_a_container(
    engine, base_image, quickstart, quickstart_spec
):
    # built without a base, as Model.package does; the engine rebases it onto the Debian base
    image = build_image(quickstart_spec())
    rebasing = DockerEngine(
        base_url=engine.base_url, base_image=base_image, cache_dir=engine.cache_dir
    )
    with rebasing.run(image, name="quickstart-docker") as container:
        container.wait_ready(timeout=180)
        resp = requests.post(
            container.url + "/score", json={"data": quickstart["sample"]}, timeout=30
        )
        assert resp.status_code == 200, container.logs()
        assert resp.json() == pytest.approx(quickstart["expected"])
        attrs = container.container.attrs
        assert attrs["Config"]["Labels"]["org.aml.entry-script"] == "score.py"
        assert "/var/azureml-app/src/score.py" in container.logs()  # the image's own paths
        with pytest.raises(Conflict, match="already running"):
            rebasing.run(image, name="quickstart-docker")
    assert container.wait(timeout=0) is not None  # stopped and removed
    # what ran is exactly the image build_image makes when given the base up front
    with_base = build_image(quickstart_spec(base=base_image))
    assert container.image_digest == with_base.digest
    # loading again reuses the engine's copy (tagged by digest)
    tag = rebasing.load(with_base)
    assert tag.endswith(with_base.digest.split(":")[1][:16])


@pytest.mark.slow
@pytest.mark.engine
def test_podman_builds_the_generated_dockerfile(
    engine, podman, base_image, quickstart, quickstart_spec, tmp_path
):
    base_tag = engine.load(base_image)
    context = write_build_context(quickstart_spec(), tmp_path / "context", base_image=base_tag)
    dockerfile = (context / "Dockerfile").read_text()
    assert dockerfile.startswith("# Generated") and f"FROM {base_tag}" in dockerfile
    built = podman.podman(
        "build", "--pull=never", "--network=host", "-t", "localhost/aml-built:1", str(context)
    )
    assert "all requirements are satisfied" in built.stdout + built.stderr  # nothing to install
    client = engine.client()
    image = client.images.get("localhost/aml-built:1")
    assert image.labels["org.aml.entry-script"] == "score.py"
    port = free_port()
    container = client.containers.run(
        "localhost/aml-built:1", name="built", detach=True, ports={"5001/tcp": ("127.0.0.1", port)}
    )
    try:
        handle = DockerContainer(
            name="built", url=f"http://127.0.0.1:{port}", image_digest="", container=container
        )
        handle.wait_ready(timeout=180)
        resp = requests.post(handle.url + "/score", json={"data": quickstart["sample"]}, timeout=30)
        assert resp.json() == pytest.approx(quickstart["expected"])
    finally:
        container.remove(force=True)


def test_an_image_without_a_base_is_refused_before_loading(quickstart_spec, tmp_path):
    pytest.importorskip(
        "docker", reason="the docker engine needs the docker SDK (pip install 'aml-core[docker]')"
    )
    engine = DockerEngine(base_url="unix:///nonexistent/podman.sock", cache_dir=tmp_path)
    with pytest.raises(InvalidConfig, match="no base with Python"):
        engine.run(build_image(quickstart_spec()), name="no-base")


def test_an_unreachable_engine_names_the_fix(tmp_path):
    pytest.importorskip(
        "docker", reason="the docker engine needs the docker SDK (pip install 'aml-core[docker]')"
    )
    engine = DockerEngine(base_url=f"unix://{tmp_path}/missing.sock", cache_dir=tmp_path)
    with pytest.raises(ProvisioningFailed, match="podman system service"):
        engine.client()
