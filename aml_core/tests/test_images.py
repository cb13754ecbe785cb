"""Model.package / ContainerImage / Image: versions, digests, registries, real readers."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import requests

from aml_core import ContainerImage, Environment, Image, InferenceConfig, Model, Workspace
from aml_core.errors import InvalidConfig, NotFound

QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart"
SAMPLE = {"data": [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]]}


@pytest.fixture
def ws(tmp_path):
    return Workspace.create(tmp_path / "ws")


@pytest.fixture
def model(ws, tmp_path):
    import joblib
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge

    x, y = load_diabetes(return_X_y=True)
    path = tmp_path / "sklearn_regression_model.pkl"
    joblib.dump(Ridge().fit(x, y), path)
    return Model.register(ws, path, "sklearn_regression_model")


@pytest.fixture
def inference_config():
    env = Environment.from_pip_requirements("quickstart-env", QUICKSTART / "requirements.txt")
    return InferenceConfig(entry_script="score.py", source_directory=str(QUICKSTART), environment=env)


def test_packages_auto_version_and_the_same_inputs_give_the_same_digest(ws, model, inference_config):
    first = Model.package(ws, [model], inference_config, image_name="myimage")
    second = Model.package(ws, [model], inference_config, image_name="myimage")
    assert (first.version, second.version) == (1, 2)
    assert first.digest == second.digest and first.digest.startswith("sha256:")
    assert second.image_location.endswith("/registry/myimage:2")
    assert [i.id for i in Image.list(ws)] == ["myimage:2", "myimage:1"]
    assert Image(ws, "myimage").version == 2


def test_a_changed_script_changes_the_digest(ws, model, inference_config, tmp_path):
    app = tmp_path / "app"
    shutil.copytree(QUICKSTART, app)
    first = Model.package(ws, [model], inference_config, image_name="img")
    (app / "score.py").write_text((app / "score.py").read_text() + "\n# changed\n")
    changed = InferenceConfig(entry_script="score.py", source_directory=str(app), environment=inference_config.environment)
    assert Model.package(ws, [model], changed, image_name="img").digest != first.digest


def test_skopeo_reads_the_embedded_registry(ws, model, inference_config):
    skopeo = shutil.which("skopeo")
    if skopeo is None:
        pytest.skip("skopeo is not installed (apt-get install skopeo; make test installs it)")
    image = Model.package(ws, [model], inference_config, image_name="readable")
    out = subprocess.run([skopeo, "inspect", image.image_location], capture_output=True, text=True, check=True)
    info = json.loads(out.stdout)
    assert info["Digest"] == image.digest
    assert info["Labels"]["org.aml.entry-script"] == "score.py"


def test_the_process_engine_runs_and_scores_the_packaged_image(ws, model, inference_config, tmp_path):
    from aml_core.engines import ProcessEngine

    image = Model.package(ws, [model], inference_config, image_name="served")
    layout, tag = image.image_location.removeprefix("oci:").rsplit(":", 1)
    with ProcessEngine(cache_dir=tmp_path / "cache").run((layout, tag), name="served") as container:
        container.wait_ready(timeout=120)
        response = requests.post(container.url + "/score", json=SAMPLE, timeout=30)
    assert response.status_code == 200
    assert len(response.json()) == 2


def test_delete_removes_one_version_from_the_registry(ws, model, inference_config):
    old = Model.package(ws, [model], inference_config, image_name="gone")
    kept = Model.package(ws, [model], inference_config, image_name="gone")
    old.delete()
    assert [i.id for i in Image.list(ws)] == ["gone:2"]
    tags = [m["annotations"]["org.opencontainers.image.ref.name"]
            for m in json.loads((ws.root / "registry" / "gone" / "index.json").read_text())["manifests"]]
    assert tags == ["2"]
    with pytest.raises(NotFound):
        Image(ws, "gone", version=1)
    assert kept.digest


def test_generate_dockerfile_writes_a_build_context(ws, model, inference_config, tmp_path):
    package = Model.package(ws, [model], inference_config, image_name="ctx", generate_dockerfile=True)
    out = Path(package.save(tmp_path / "context"))
    dockerfile = (out / "Dockerfile").read_text()
    assert "\nFROM localhost/aml-python-base:latest\n" in dockerfile and "ENTRYPOINT" in dockerfile
    assert package.digest is None and package.creation_state == "Succeeded"


def test_the_container_image_spelling_builds_the_same_kind_of_image(ws, model):
    config = ContainerImage.image_configuration(execution_script="score.py", runtime="python",
                                                source_directory=str(QUICKSTART), tags={"legacy": "yes"})
    image = ContainerImage.create(workspace=ws, name="legacy", models=[model], image_config=config)
    assert image.id == "legacy:1" and image.tags == {"legacy": "yes"}
    with pytest.raises(InvalidConfig, match="runtime"):
        ContainerImage.image_configuration(execution_script="score.py", runtime="spark")


def test_bad_image_names_and_broken_scripts_are_refused_before_anything_is_stored(ws, model, tmp_path):
    (tmp_path / "score.py").write_text("def init():\n    pass\n")
    broken = InferenceConfig(entry_script="score.py", source_directory=str(tmp_path))
    with pytest.raises(InvalidConfig, match="run()"):
        Model.package(ws, [model], broken, image_name="broken")
    with pytest.raises(InvalidConfig, match="Invalid image name"):
        Model.package(ws, [model], broken, image_name="Bad Name")
    assert Image.list(ws) == []


def test_image_create_with_a_container_image_configuration_is_container_image_create(ws, model):
    """azureml-core's ``Image.create`` spelling: a configuration without a target kind is a
    scoring image, deployed by ``deploy_from_image`` on whatever target the deployment
    configuration names (which it must give)."""
    from aml_core.webservice import Webservice

    config = ContainerImage.image_configuration(execution_script="score.py", runtime="python",
                                                source_directory=str(QUICKSTART))
    image = Image.create(ws, "generic", [model], config)
    assert image.id == "generic:1" and image.creation_state == "Succeeded"
    assert ContainerImage.create(ws, "generic", [model], config).digest == image.digest
    with pytest.raises(InvalidConfig, match="deploy_from_image needs a deployment_config"):
        Webservice.deploy_from_image(ws, "svc", image, deployment_config=None)
