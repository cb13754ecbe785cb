"""az ml's configuration files and verbs: inferenceconfig.json / deploymentconfig.json read in
the documented schema with errors naming file, line and field, and ``aml model deploy --ic
--dc``, ``aml service get-keys|get-logs``, ``aml model download -i`` on the local target."""

from __future__ import annotations

import json
import textwrap

import pytest

from aml_core.configfiles import load_json, read_deployment_config, read_inference_config
from aml_core.environment import Environment
from aml_core.errors import InvalidConfig

SCORE = textwrap.dedent('''
    import json

    def init():
        pass

    def run(raw_data):
        return {"n": len(json.loads(raw_data)["data"])}
''')


@pytest.fixture
def app(tmp_path, monkeypatch):
    """The user's project folder (the current directory, as az ml expects), beside the workspace."""
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "score.py").write_text(SCORE)
    monkeypatch.chdir(folder)
    return folder


def _write(path, text: str):
    path.write_text(textwrap.dedent(text).lstrip())
    return path


# -- reading the files -----------------------------------------------------------------------


def test_loader_remembers_each_members_line(tmp_path):
    doc = load_json(_write(tmp_path / "x.json", """
        {
          "a": 1,
          "b": {
            "c": [1,
                  2]
          }
        }
    """), "file")
    assert doc.lines == {"a": 2, "b": 3}
    assert doc["b"].lines == {"c": 4}
    assert doc["b"]["c"].lines == [4, 5]


def test_inference_config_in_the_documented_schema(app, ws):
    path = _write(app / "inferenceconfig.json", """
        {
            "entryScript": "score.py",
            "sourceDirectory": ".",
            "environment": {
                "name": "myenv",
                "python": {
                    "userManagedDependencies": false,
                    "condaDependencies": {
                        "channels": ["conda-forge"],
                        "dependencies": ["python=3.11", "numpy", {"pip": ["azureml-defaults", "joblib"]}]
                    }
                },
                "docker": {"enabled": true, "baseImage": null},
                "environmentVariables": {"MODE": "fast"}
            }
        }
    """)
    config = read_inference_config(path, workspace=ws)
    env = config.environment
    assert config.entry_script_path == app / "score.py"
    assert env.name == "myenv" and env.docker.enabled is True
    assert env.python.conda_dependencies.pip_requirements() == ["joblib", "numpy"]
    assert env.python.conda_dependencies.python_version == "3.11"
    assert env.environment_variables == {"MODE": "fast"}


def test_inference_config_environment_by_name_is_the_registered_one(app, ws):
    registered = Environment("tutorial-env")
    registered.python.conda_dependencies.add_pip_package("joblib")
    registered.register(ws)
    path = _write(app / "inferenceconfig.json", """
        {"entryScript": "score.py", "environment": {"name": "tutorial-env", "version": "1"}}
    """)
    config = read_inference_config(path, workspace=ws)
    assert config.environment.version == "1"
    assert config.environment.python.conda_dependencies.pip_packages == ["joblib"]


@pytest.mark.parametrize("body, message", [
    ('{\n  "entryScript": "score.py",\n  "entrySript": "x.py"\n}', r":3: entrySript: unknown field. Did you mean 'entryScript'\?"),
    ('{\n  "sourceDirectory": "."\n}', r":1: entryScript: is required"),
    ('{\n  "entryScript": 7\n}', r":2: entryScript: must be a string, got 7"),
    ('{\n  "entryScript": "score.py",\n  "environment": {\n    "name": "e",\n    "docker": {"enabled": "yes"}\n  }\n}',
     r":5: environment.docker.enabled: must be a boolean"),
    ('{\n  "entryScript": "score.py",\n\n  "runtime": "java"\n}', r":4: runtime: InferenceConfig: runtime 'java'"),
    ('{\n  "entryScript": "score.py",\n  "x": 1,,\n}', r":3: not valid JSON"),
    ('[1]', r":1: the inference configuration file must be a JSON object"),
])
def test_inference_config_errors_name_file_line_and_field(app, body, message):
    path = app / "inferenceconfig.json"
    path.write_text(body)
    with pytest.raises(InvalidConfig, match=message) as info:
        read_inference_config(path)
    assert str(info.value).startswith(f"{path}:") and info.value.code == "InvalidConfig"


def test_deployment_config_picks_the_provider_by_compute_type(tmp_path):
    path = _write(tmp_path / "deploymentconfig.json", """
        {
            "computeType": "LOCAL",
            "port": 6789
        }
    """)
    config = read_deployment_config(path)
    assert (config.kind, config.port) == ("local", 6789)


@pytest.mark.parametrize("body, message", [
    ('{\n  "port": 1\n}', r":1: computeType: is required: the target kind, one of .*local"),
    ('{\n  "computeType": "mainframe"\n}', r":2: computeType: no installed provider serves 'mainframe'"),
    ('{\n  "computeType": "local",\n  "port": "80"\n}', r":3: port: must be an integer"),
    ('{\n  "computeType": "local",\n  "prot": 80\n}', r":3: prot: unknown field. Did you mean 'port'\?"),
    ('{\n  "computeType": "local",\n  "port": 70000\n}', r":3: port: port must be an integer between 1 and 65535"),
])
def test_deployment_config_errors_name_file_line_and_field(tmp_path, body, message):
    path = tmp_path / "deploymentconfig.json"
    path.write_text(body)
    with pytest.raises(InvalidConfig, match=message):
        read_deployment_config(path)


# -- the commands ----------------------------------------------------------------------------


def test_az_ml_flow_on_the_local_target(aml, app, ws, tmp_path):
    (tmp_path / "model.pkl").write_bytes(b"weights")
    aml.json("model", "register", "-n", "mymodel", "-p", tmp_path / "model.pkl")
    _write(app / "inferenceconfig.json", '{"entryScript": "score.py", "sourceDirectory": "."}')
    _write(app / "deploymentconfig.json", '{"computeType": "local", "engine": "process"}')
    deployed = aml.json("model", "deploy", "-m", "mymodel:1", "-n", "myservice",
                        "-ic", "inferenceconfig.json", "-dc", "deploymentconfig.json")
    try:
        assert deployed["state"] == "running"  # the local target's word, as LocalWebservice's
        result = aml("service", "get-logs", "-n", "myservice", "-l", "50")
        assert result.exit_code == 0, result.stderr
        keys = aml("service", "get-keys", "-n", "myservice")
        assert keys.exit_code != 0 and "get_keys" in keys.stderr  # local services have no keys, as in Azure ML
        downloaded = aml.json("model", "download", "-i", "mymodel:1", "-t", tmp_path / "out")
        assert open(downloaded["path"], "rb").read() == b"weights"
        again = aml("model", "download", "-i", "mymodel:1", "-t", tmp_path / "out")
        assert again.exit_code == 6
        assert aml("model", "download", "-i", "mymodel:1", "-t", tmp_path / "out", "--overwrite").exit_code == 0
    finally:
        aml("service", "delete", "myservice")


def test_deploy_reports_the_bad_file_before_touching_anything(aml, app, ws, tmp_path):
    (tmp_path / "model.pkl").write_bytes(b"weights")
    aml.json("model", "register", "-n", "mymodel", "-p", tmp_path / "model.pkl")
    _write(app / "inferenceconfig.json", '{"entryScript": "score.py"}')
    _write(app / "deploymentconfig.json", '{\n  "computeType": "local",\n  "numReplicas": 2\n}')
    result = aml("model", "deploy", "-m", "mymodel:1", "-n", "myservice", "--ic", "inferenceconfig.json",
                 "--dc", "deploymentconfig.json")
    assert result.exit_code == 6
    assert "deploymentconfig.json:3: numReplicas: unknown field" in result.stderr
    assert json.loads(aml("service", "list", "-o", "json").stdout) == []


def test_inference_config_environment_from_a_conda_file_keeps_its_version(app):
    _write(app / "myenv.yml", """
        dependencies:
          - pip:
            - joblib
    """)
    path = _write(app / "inferenceconfig.json", """
        {"entryScript": "score.py",
         "environment": {"name": "filed", "version": "3", "python": {"condaDependenciesFile": "myenv.yml"}}}
    """)
    env = read_inference_config(path).environment
    assert (env.name, env.version, env.python.conda_dependencies.pip_packages) == ("filed", "3", ["joblib"])


def test_deploy_with_az_mls_inline_options_and_a_curated_environment(aml, app, ws, tmp_path):
    (tmp_path / "model.pkl").write_bytes(b"weights")
    aml.json("model", "register", "-n", "mymodel", "-p", tmp_path / "model.pkl")
    _write(app / "deploymentconfig.json", '{"computeType": "local", "engine": "process"}')
    both = aml("model", "deploy", "-n", "svc", "-m", "mymodel:1", "--ic", "x.json", "--es", "score.py",
               "--dc", "deploymentconfig.json")
    assert both.exit_code == 2 and "--entry-script" in both.stderr
    neither = aml("model", "deploy", "-n", "svc", "-m", "mymodel:1", "--dc", "deploymentconfig.json")
    assert neither.exit_code == 2
    started = aml.json("model", "deploy", "-n", "inline-svc", "-m", "mymodel:1", "--es", "score.py", "--sd", ".",
                       "-e", "AzureML-Minimal", "--ev", "1", "--dc", "deploymentconfig.json", "--no-wait")
    try:
        from aml_core.webservice import Webservice

        service = Webservice(ws, "inline-svc")
        service.wait_for_deployment()
        assert service.run('{"data": [1, 2, 3]}') == {"n": 3}
        assert started["name"] == "inline-svc"
    finally:
        aml("service", "delete", "inline-svc")


def test_deployment_config_without_compute_type_takes_the_compute_targets_kind(tmp_path):
    path = _write(tmp_path / "deploymentconfig.json", '{"port": 8123}')
    config = read_deployment_config(path, compute_type="local")
    assert (config.kind, config.port) == ("local", 8123)


def test_environment_commands_scaffold_register_show_download(aml, app, ws):
    aml.json("environment", "scaffold", "-n", "myenv", "-d", "myenv")
    conda = app / "myenv" / "conda_dependencies.yml"
    conda.write_text(conda.read_text().replace("- azureml-defaults", "- azureml-defaults\n  - joblib"))
    first = aml.json("environment", "register", "-d", "myenv")
    assert (first["name"], first["version"]) == ("myenv", "1")
    assert first["python"]["conda_dependencies"]["pip_packages"] == ["azureml-defaults", "joblib"]
    assert aml.json("environment", "register", "-d", "myenv")["version"] == "1"  # unchanged
    listed = {e["name"]: e["version"] for e in aml.json("environment", "list")}
    assert listed["myenv"] == "1" and "AzureML-Minimal" in listed
    assert aml.json("environment", "show", "-n", "myenv", "-v", "1")["name"] == "myenv"
    aml.json("environment", "download", "-n", "AzureML-Tutorial", "-d", "tutorial")
    assert "scikit-learn" in (app / "tutorial" / "conda_dependencies.yml").read_text()
    again = aml("environment", "download", "-n", "AzureML-Tutorial", "-d", "tutorial")
    assert again.exit_code == 6 and "overwrite" in again.stderr
    missing = aml("environment", "show", "-n", "nope")
    assert missing.exit_code == 3 and "No definition exists for Environment with Name: nope" in missing.stderr
