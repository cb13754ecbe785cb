"""azureml-core names the source documents use: the environment registry, the workspace's
identity and config file, and Model.register's list-form tags."""

from __future__ import annotations

import json
import sys

import pytest

from aml_core import Environment, Model, Workspace
from aml_core.conda_dependencies import CondaDependencies
from aml_core.errors import InvalidConfig, NotFound, NotSupported


@pytest.fixture
def ws(tmp_path):
    return Workspace.create(tmp_path / "ws", "myworkspace", subscription_id="sub-1", resource_group="myresourcegroup",
                            location="westeurope")


# -- environments -------------------------------------------------------------------------


def _functions_guide_env() -> Environment:
    # how-to-deploy-functions, as written
    myenv = Environment(name="myenv")
    myenv.docker.enabled = True
    myenv.python.conda_dependencies = CondaDependencies.create(conda_packages=['scikit-learn'],
                                                               pip_packages=['azureml-defaults'])
    return myenv


def test_register_numbers_versions_from_1_and_keeps_an_unchanged_definition(ws):
    env = _functions_guide_env()
    first = env.register(ws)
    assert first.version == "1"
    assert env.register(ws).version == "1"
    env.python.conda_dependencies.add_pip_package("numpy")
    assert env.register(ws).version == "2"
    assert Environment.get(ws, "myenv").version == "2"
    old = Environment.get(workspace=ws, name="myenv", version="1")
    assert old.python.conda_dependencies.pip_packages == ["azureml-defaults"]
    assert old.python.conda_dependencies.conda_packages == ["scikit-learn"]
    assert old.docker.enabled is True


def test_registered_environments_are_seen_by_another_handle_on_the_workspace(ws):
    _functions_guide_env().register(ws)
    again = Workspace.get(ws.root)
    assert Environment.get(again, "myenv").python.conda_dependencies.conda_packages == ["scikit-learn"]


def test_list_has_the_latest_of_each_name_and_the_curated_ones(ws):
    env = _functions_guide_env()
    env.register(ws)
    env.environment_variables["MODE"] = "fast"
    env.register(ws)
    found = Environment.list(ws)
    assert found["myenv"].version == "2"
    assert {"AzureML-Minimal", "AzureML-Tutorial", "AzureML-Scikit-learn"} <= set(found)


def test_get_of_an_unknown_environment_names_it_and_the_fix(ws):
    with pytest.raises(NotFound, match=r"^No definition exists for Environment with Name: tutorial-env Version: 1\. "
                                       r"Environment 'tutorial-env' version '1' is not registered.*env.register\(ws\)") as info:
        Environment.get(workspace=ws, name="tutorial-env", version="1")
    assert info.value.code == "NotFound"
    _functions_guide_env().register(ws)
    with pytest.raises(NotFound, match="'myenv' version '7'"):
        Environment.get(ws, "myenv", version="7")


def test_curated_environments_can_be_started_from_but_not_overwritten(ws):
    curated = Environment.get(ws, "AzureML-Tutorial")
    assert "scikit-learn" in curated.python.conda_dependencies.pip_packages
    with pytest.raises(InvalidConfig, match="reserved"):
        curated.register(ws)
    curated.name = "my-tutorial"
    assert curated.register(ws).version == "1"


def test_build_local_gives_an_interpreter_that_has_the_environment(ws):
    env = Environment.get(ws, "AzureML-Minimal")
    python = env.build_local(workspace=ws, useDocker=False)
    assert python == sys.executable  # this interpreter already has everything Minimal needs


def test_build_local_with_docker_says_what_to_use_instead(ws):
    with pytest.raises(NotSupported, match="Model.package"):
        _functions_guide_env().build_local(ws, useDocker=True)


def test_user_managed_dependencies_install_nothing(ws):
    from aml_core.images import _environment_spec

    env = _functions_guide_env()
    env.python.conda_dependencies.add_pip_package("numpy")
    assert _environment_spec(env).pip_requirements
    env.python.user_managed_dependencies = True
    assert _environment_spec(env).pip_requirements == ()


# -- workspace ----------------------------------------------------------------------------


def test_workspace_reports_its_identity_and_details(ws):
    assert (ws.subscription_id, ws.resource_group, ws.location) == ("sub-1", "myresourcegroup", "westeurope")
    details = ws.get_details()
    assert details["id"] == ("/subscriptions/sub-1/resourceGroups/myresourcegroup/providers/"
                             "Microsoft.MachineLearningServices/workspaces/myworkspace")
    assert details["name"] == "myworkspace" and details["location"] == "westeurope"
    assert details["containerRegistry"] is None  # embedded store: no registry resource


def test_write_config_then_from_config_finds_it_from_below(ws, tmp_path, monkeypatch):
    project = tmp_path / "project"
    written = ws.write_config(path=project)
    assert json.loads(open(written).read())["workspace_name"] == "myworkspace"
    (project / "src").mkdir()
    monkeypatch.delenv("AML_WORKSPACE", raising=False)
    monkeypatch.chdir(project / "src")
    assert Workspace.from_config().root == ws.root
    assert Workspace.from_config(path=written).root == ws.root
    assert Workspace.from_config(path=str(project)).root == ws.root


def test_get_by_name_subscription_and_resource_group(tmp_path, monkeypatch):
    monkeypatch.setenv("AML_WORKSPACES_HOME", str(tmp_path / "home"))
    made = Workspace.create(tmp_path / "home" / "myworkspace", "myworkspace", subscription_id="sub-1",
                            resource_group="myresourcegroup")
    found = Workspace.get(name="myworkspace", subscription_id="sub-1", resource_group="myresourcegroup")
    assert found.root == made.root
    with pytest.raises(NotFound, match="Workspace not found.*'other-rg'"):
        Workspace.get(name="myworkspace", subscription_id="sub-1", resource_group="other-rg")


def test_from_config_names_a_broken_config_file(tmp_path):
    bad = tmp_path / ".azureml" / "config.json"
    bad.parent.mkdir()
    bad.write_text('{"subscription_id": "x"}')
    with pytest.raises(InvalidConfig, match=r"config.json.*workspace_name"):
        Workspace.from_config(path=str(tmp_path))


# -- Model.register tags ------------------------------------------------------------------


def test_register_takes_the_2018_guides_list_of_tags(ws, tmp_path):
    (tmp_path / "model.pkl").write_bytes(b"weights")
    # how-to-deploy-and-where (2018), as written
    model = Model.register(model_path = str(tmp_path / "model.pkl"),
                           model_name = "Mymodel",
                           tags = ["0.1"],
                           description = "test",
                           workspace = ws)
    assert model.tags == {"0.1": ""}
    assert [m.id for m in Model.list(ws, tags=["0.1"])] == ["Mymodel:1"]
    with pytest.raises(InvalidConfig, match="must be strings"):
        Model.register(ws, str(tmp_path / "model.pkl"), "Mymodel", tags=[0.1])


def test_save_to_directory_and_load_it_back(ws, tmp_path):
    env = _functions_guide_env()
    env.environment_variables["MODE"] = "fast"
    env.python.conda_dependencies.python_version = "3.11"
    env.save_to_directory(tmp_path / "env")
    assert {p.name for p in (tmp_path / "env").iterdir()} == {"azureml_environment.json", "conda_dependencies.yml"}
    with pytest.raises(InvalidConfig, match="overwrite=True"):
        env.save_to_directory(tmp_path / "env")
    loaded = Environment.load_from_directory(tmp_path / "env")
    assert loaded.hash == env.hash
    assert (loaded.docker.enabled, loaded.environment_variables) == (True, {"MODE": "fast"})
    (tmp_path / "env" / "azureml_environment.json").write_text('{\n  "name": "x",\n  "docker": {"enabld": true}\n}')
    with pytest.raises(InvalidConfig, match=r"azureml_environment.json:3: docker.enabld: unknown field"):
        Environment.load_from_directory(tmp_path / "env")


def test_functions_guide_environment_goes_into_an_inference_config(tmp_path, monkeypatch):
    from aml_core.model import InferenceConfig

    monkeypatch.chdir(tmp_path)
    (tmp_path / "score.py").write_text("def init():\n    pass\n\ndef run(raw_data):\n    return raw_data\n")
    myenv = _functions_guide_env()
    inference_config = InferenceConfig(entry_script="score.py", environment=myenv)
    assert inference_config.environment.python.conda_dependencies.pip_requirements() == ["scikit-learn"]


def test_legacy_image_create_builds_the_next_version(ws, tmp_path, monkeypatch):
    from aml_core.images import ContainerImage, Image

    monkeypatch.chdir(tmp_path)
    (tmp_path / "score.py").write_text("def init():\n    pass\n\ndef run(raw_data):\n    return raw_data\n")
    (tmp_path / "model.pkl").write_bytes(b"weights")
    model = Model.register(ws, "model.pkl", "legacy")
    config = ContainerImage.image_configuration(execution_script="score.py", runtime="python")
    first = Image.create(ws, "myimage", [model], config)
    second = Image.create(workspace=ws, name="myimage", models=[model], image_config=config)
    assert (first.id, second.id) == ("myimage:1", "myimage:2")


def test_from_config_walking_up_ignores_an_unrelated_config_json(ws, tmp_path, monkeypatch):
    project = tmp_path / "project"
    ws.write_config(path=project)
    (project / "src").mkdir()
    (project / "src" / "config.json").write_text('{"debug": true}')  # the user's own settings file
    monkeypatch.delenv("AML_WORKSPACE", raising=False)
    monkeypatch.chdir(project / "src")
    assert Workspace.from_config().root == ws.root


def test_create_in_the_sdks_form_then_get_by_name(tmp_path, monkeypatch):
    monkeypatch.setenv("AML_WORKSPACES_HOME", str(tmp_path / "home"))
    ws = Workspace.create(name='myworkspace',
                          subscription_id='<azure-subscription-id>',
                          resource_group='myresourcegroup',
                          create_resource_group=True,
                          location='eastus2')
    assert ws.root == (tmp_path / "home" / "myworkspace").resolve()
    found = Workspace.get(name='myworkspace', subscription_id='<azure-subscription-id>',
                          resource_group='myresourcegroup')
    assert (found.root, found.location) == (ws.root, "eastus2")
    with pytest.raises(InvalidConfig, match="already exists"):
        Workspace.create(name='myworkspace')
