"""AppServiceWebservice: the deployment configuration's rules (no remote call), then web apps on
the emulator through azure-mgmt-web: the documents' Model.package + web app flow, keys checked in
the container, the log stream, an update no calling client notices, and bad inputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest
import requests

from aml_core.errors import InvalidConfig, ProvisioningFailed
from aml_core.inference import InferenceConfig
from aml_core.model import Model
from aml_core.webservice import Webservice
from aml_provider_appservice import AppServiceDeploymentConfiguration, AppServiceWebservice

SCORE = textwrap.dedent('''
    import json
    import os

    def init():
        global factor
        with open(os.path.join(os.environ["AZUREML_MODEL_DIR"], "factor.txt")) as f:
            factor = float(f.read())
        print("score.py: init loaded factor", factor, flush=True)

    def run(raw_data):
        return [x * factor for x in json.loads(raw_data)["data"]]
''')


# -- deploy_configuration: defaults and rules, before any remote call -----------------------


def test_defaults():
    config = AppServiceWebservice.deploy_configuration()
    assert (config.effective_plan_name, config.effective_sku) == ("aml-appservice-plan", "S1")
    assert not config.effective_auth_enabled and config.app_name_for("svc") == "svc"
    assert AppServiceDeploymentConfiguration.from_dict(config.to_dict()) == config
    assert AppServiceWebservice.deploy_configuration(sku="p1v3").effective_sku == "P1v3"


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"sku": "Z9"}, "sku 'Z9' is not a pricing tier of a Linux App Service plan; use one of F1, B1"),
    ({"sku": 1}, "sku 1 is not a pricing tier"),
    ({"plan_name": "bad plan!"}, "plan_name 'bad plan!': 1 to 60 letters, digits, '-' or '_'"),
    ({"app_name": "-x"}, "app_name '-x': 2 to 60 letters, digits or '-'"),
    ({"location": " "}, "location must be an Azure region name"),
    ({"primary_key": "abc"}, "primary_key can only be set with auth_enabled=True"),
    ({"auth_enabled": True, "secondary_key": "a b"}, "secondary_key must be a non-empty string without spaces"),
    ({"tags": {"a": 1}}, "tags must be a dict of strings to strings"),
    ({"auth_enabled": "yes"}, "auth_enabled must be True or False"),
])
def test_bad_settings_name_the_parameter_and_the_rule(kwargs, message):
    with pytest.raises(InvalidConfig) as info:
        AppServiceWebservice.deploy_configuration(**kwargs)
    assert message in str(info.value)
    assert info.value.code == "InvalidConfig"


def test_update_settings_replace_tags_and_add_properties():
    config = AppServiceWebservice.deploy_configuration(tags={"a": "1"}, properties={"p": "1"})
    changed = config.evolve_settings(tags={"b": "2"}, properties={"q": "2"}, description="new")
    assert changed.tags == {"b": "2"} and changed.properties == {"p": "1", "q": "2"}
    with pytest.raises(InvalidConfig, match="does not take sku"):
        config.evolve_settings(sku="S2")


# -- web apps on the emulator ---------------------------------------------------------------


@pytest.fixture
def app(tmp_path):
    folder = tmp_path / "app"
    folder.mkdir()
    (folder / "score.py").write_text(SCORE)
    return folder


@pytest.fixture
def factor_model(ws, tmp_path):
    folder = tmp_path / "factor"
    folder.mkdir()
    (folder / "factor.txt").write_text("3")
    return Model.register(ws, folder / "factor.txt", "factor")


@pytest.fixture
def inference(app):
    return InferenceConfig(entry_script="score.py", source_directory=str(app))


@pytest.fixture
def cleanup(ws):
    yield
    for service in Webservice.list(ws):
        service.delete()


def _web():
    from azure.mgmt.web import WebSiteManagementClient

    from aml_azure_common import management_client

    return management_client(WebSiteManagementClient)


def test_the_documents_flow_package_then_a_web_app(ws, factor_model, inference, cleanup, capsys, emulator):
    package = Model.package(ws, [factor_model], inference, image_name="factor-web")
    package.wait_for_creation()
    service = Webservice.deploy_from_image(ws, "web-flow", package, AppServiceWebservice.deploy_configuration(
        plan_name="docs-plan", tags={"area": "docs"}))
    service.wait_for_deployment(show_output=True)
    shown = capsys.readouterr().out
    shown = " ".join(shown.split())  # the printer wraps long lines
    assert "Creating Linux App Service plan 'docs-plan' (S1)" in shown and "Creating web app 'web-flow'" in shown
    assert isinstance(service, AppServiceWebservice) and service.state == "Healthy" and service.error is None
    assert service.scoring_uri == f"https://{service.default_host_name}/score"
    assert service.run(json.dumps({"data": [1, 2]})) == [3.0, 6.0]
    assert not service.auth_enabled and service.tags == {"area": "docs"}

    # what the documents set by hand is there, seen through the SDK
    web = _web()
    plan = web.app_service_plans.get(emulator.resource_group, "docs-plan")
    assert plan.reserved and plan.kind == "linux" and plan.sku.name == "S1"
    site = web.web_apps.get(emulator.resource_group, "web-flow")
    assert site.kind == "app,linux,container" and site.server_farm_id == plan.id
    assert web.web_apps.get_configuration(emulator.resource_group, "web-flow").linux_fx_version == \
        f"DOCKER|{package.location}"
    settings = web.web_apps.list_application_settings(emulator.resource_group, "web-flow").properties
    assert settings["DOCKER_REGISTRY_SERVER_URL"] == f"https://{emulator.registry.login_server}"
    assert settings["DOCKER_REGISTRY_SERVER_USERNAME"] == emulator.registry.credentials.username
    assert settings["WEBSITES_PORT"] == "5001"

    logs = service.get_logs()
    assert "Welcome, you are now connected to log-streaming service" in logs
    assert "init loaded factor 3.0" in logs

    found = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        from aml_core.workspace import Workspace
        from aml_core.webservice import Webservice
        s = Webservice(Workspace.get({str(ws.root)!r}), "web-flow")
        s.update_deployment_state()
        print(type(s).__name__, s.state, s.run('{{"data": [2]}}'))
    """)], capture_output=True, text=True, timeout=120, env=os.environ.copy())
    assert found.returncode == 0, found.stderr
    assert found.stdout.split() == ["AppServiceWebservice", "Healthy", "[6.0]"]

    with pytest.raises(InvalidConfig, match="No parameters provided to update."):
        service.update()
    service.delete()
    assert Webservice.list(ws) == []
    from azure.core.exceptions import ResourceNotFoundError

    with pytest.raises(ResourceNotFoundError):
        web.web_apps.get(emulator.resource_group, "web-flow")
    with pytest.raises(ResourceNotFoundError):  # the plan this service created went with it
        web.app_service_plans.get(emulator.resource_group, "docs-plan")


def test_keys_are_checked_in_the_container(ws, factor_model, inference, cleanup):
    service = Model.deploy(ws, "web-keys", [factor_model], inference,
                           AppServiceWebservice.deploy_configuration(auth_enabled=True))
    service.wait_for_deployment()
    primary, secondary = service.get_keys()
    ca = service._record.details["ca_bundle"]
    assert requests.post(service.scoring_uri, json={"data": [1]}, verify=ca, timeout=10).status_code == 401
    answer = requests.post(service.scoring_uri, json={"data": [1]}, verify=ca, timeout=10,
                           headers={"Authorization": f"Bearer {secondary}"})
    assert answer.json() == [3.0]
    service.regen_key("Primary")
    new_primary, _ = AppServiceWebservice(ws, "web-keys").get_keys()
    assert new_primary != primary
    assert requests.post(service.scoring_uri, json={"data": [1]}, verify=ca, timeout=10,
                         headers={"Authorization": f"Bearer {primary}"}).status_code == 401
    assert service.run(json.dumps({"data": [1]})) == [3.0]


def test_an_update_swaps_the_image_without_a_failed_request(ws, factor_model, inference, app, cleanup):
    service = Model.deploy(ws, "web-swap", [factor_model], inference,
                           AppServiceWebservice.deploy_configuration(auth_enabled=True))
    service.wait_for_deployment()
    primary, _ = service.get_keys()
    ca = service._record.details["ca_bundle"]
    failures, answers, stop = [], [], threading.Event()

    def keep_calling() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                try:
                    response = session.post(service.scoring_uri, json={"data": [1]}, verify=ca, timeout=30,
                                            headers={"Authorization": f"Bearer {primary}"})
                    if response.status_code == 200:
                        answers.append(response.json())
                    else:
                        failures.append((response.status_code, response.text[:200]))
                except requests.RequestException as exc:
                    failures.append(repr(exc))

    caller = threading.Thread(target=keep_calling)
    caller.start()
    try:
        (app / "score.py").write_text(SCORE.replace("x * factor", "x * factor + 1"))
        service.update(inference_config=InferenceConfig(entry_script="score.py", source_directory=str(app)))
        deadline = time.monotonic() + 10
        while [4.0] not in answers[-1:] and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        caller.join()
    assert failures == []
    assert answers[0] == [3.0] and answers[-1] == [4.0] and len(answers) > 10
    assert service.state == "Healthy" and service.run(json.dumps({"data": [1]})) == [4.0]
    # the keys came along: the same key works after the swap
    assert service.get_keys()[0] == primary


def test_a_wrong_registry_password_fails_with_the_pull_error(ws, factor_model, inference, cleanup, monkeypatch,
                                                            emulator):
    package = Model.package(ws, [factor_model], inference, image_name="factor-badpass")
    monkeypatch.setenv("AML_REGISTRY_USERNAME", emulator.registry.credentials.username)
    monkeypatch.setenv("AML_REGISTRY_PASSWORD", "not-the-password")
    started = time.monotonic()
    service = Webservice.deploy_from_image(ws, "web-badpass", package, AppServiceWebservice.deploy_configuration())
    with pytest.raises(ProvisioningFailed) as info:
        service.wait_for_deployment()
    assert time.monotonic() - started < 60
    assert "cannot start its container" in str(info.value) and "DOCKER_REGISTRY_SERVER_" in str(info.value)
    assert "not-the-password" not in str(info.value)
    failed = Webservice(ws, "web-badpass")
    assert failed.state == "Failed"
    assert "Pulling image" in failed.get_logs() and "not-the-password" not in failed.get_logs()


def test_a_missing_image_fails_the_deployment_with_its_name(ws, factor_model, inference, cleanup, emulator):
    from aml_core.oci.registry import RegistryClient

    package = Model.package(ws, [factor_model], inference, image_name="vanishing-web")
    creds = emulator.registry.credentials
    RegistryClient(emulator.registry.login_server, username=creds.username,
                   password=creds.passwords["password"]).delete_manifest("vanishing-web", package.digest)
    service = Webservice.deploy_from_image(ws, "web-noimage", package, AppServiceWebservice.deploy_configuration())
    with pytest.raises(ProvisioningFailed, match="vanishing-web:1 failed"):
        service.wait_for_deployment()


def test_a_windows_plan_is_refused_by_name(ws, factor_model, inference, cleanup, emulator):
    _web().app_service_plans.begin_create_or_update(emulator.resource_group, "winplan", {
        "location": "westus", "sku": {"name": "S1"}}).result()
    service = Model.deploy(ws, "web-win", [factor_model], inference,
                           AppServiceWebservice.deploy_configuration(plan_name="winplan"))
    with pytest.raises(InvalidConfig, match="App Service plan 'winplan' is a Windows plan"):
        service.wait_for_deployment()


def test_scale_and_tokens_are_not_supported_naming_target_and_operation(ws, factor_model, inference, cleanup):
    from aml_core.errors import NotSupported

    service = Model.deploy(ws, "web-nosupport", [factor_model], inference,
                           AppServiceWebservice.deploy_configuration(plan_name="nosupport-plan"))
    service.wait_for_deployment()
    with pytest.raises(NotSupported, match="The 'appservice' target does not support scale"):
        service.scale(num_replicas=2)
    with pytest.raises(NotSupported, match="The 'appservice' target does not support get_token"):
        service.get_token()


def test_the_cli_deploys_updates_and_deletes_a_web_app(ws, factor_model, app, cleanup):
    from click.testing import CliRunner

    from aml_core.cli import cli

    def aml(*args):
        return CliRunner().invoke(cli, ["--workspace", str(ws.root), *map(str, args)], catch_exceptions=False)

    deployed = aml("-o", "json", "service", "deploy", "web-cli", "--model", "factor:1", "--entry-script", "score.py",
                   "--source-dir", app, "--target", "appservice", "--option", "plan_name=cli-plan",
                   "--option", "auth_enabled=true")
    assert deployed.exit_code == 0, deployed.stderr
    record = json.loads(deployed.stdout)
    assert record["state"] == "Healthy" and record["kind"] == "appservice" and record["auth_mode"] == "key"
    assert record["scoring_uri"].startswith("https://")
    assert json.loads(aml("-o", "json", "service", "run", "web-cli", "--data", '{"data": [2]}').stdout) == [6.0]
    assert "init loaded factor" in aml("service", "logs", "web-cli").stdout
    listed = json.loads(aml("-o", "json", "service", "list", "--compute-type", "appservice").stdout)
    assert [s["name"] for s in listed] == ["web-cli"]
    (app / "score.py").write_text(SCORE.replace("x * factor", "x * factor + 1"))
    updated = aml("-o", "json", "service", "update", "web-cli", "--entry-script", "score.py", "--source-dir", app)
    assert updated.exit_code == 0, updated.stderr
    assert json.loads(aml("-o", "json", "service", "run", "web-cli", "--data", '{"data": [2]}').stdout) == [7.0]
    bad = aml("service", "deploy", "web-cli2", "--model", "factor:1", "--entry-script", "score.py",
              "--source-dir", app, "--target", "appservice", "--option", "sku=Z9")
    assert bad.exit_code == 6 and "sku 'Z9' is not a pricing tier" in bad.stderr
    assert json.loads(aml("-o", "json", "service", "delete", "web-cli").stdout) == {"name": "web-cli",
                                                                                  "deleted": True}


def test_a_stopped_web_app_is_unhealthy_and_healthy_again_once_started(ws, factor_model, inference, cleanup, emulator):
    service = Model.deploy(ws, "web-stop", [factor_model], inference,
                           AppServiceWebservice.deploy_configuration(plan_name="stop-plan"))
    service.wait_for_deployment()
    web = _web()
    web.web_apps.stop(emulator.resource_group, "web-stop")
    assert service.update_deployment_state() == "Unhealthy"
    assert "Stopped" in service.error and "az webapp start" in service.error
    web.web_apps.start(emulator.resource_group, "web-stop")
    assert service.update_deployment_state() == "Healthy" and service.error is None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            assert service.run(json.dumps({"data": [1]})) == [3.0]
            break
        except Exception:  # noqa: BLE001 - the restarted container is still loading the model
            time.sleep(0.1)
    assert service.run(json.dumps({"data": [1]})) == [3.0]


def test_a_failing_arm_operation_fails_the_deployment_with_its_message(ws, factor_model, inference, cleanup,
                                                                        emulator):
    from aml_emulator.arm import OperationScript

    emulator.script_arm_operations("Microsoft.Web/sites", OperationScript.failing(
        "InternalServerError", "The front end could not take the site.", polls=2), operation="create",
                                   name="web-scripted")
    service = Model.deploy(ws, "web-scripted", [factor_model], inference,
                           AppServiceWebservice.deploy_configuration(plan_name="scripted-plan"))
    with pytest.raises(ProvisioningFailed, match="The front end could not take the site"):
        service.wait_for_deployment()
    assert Webservice(ws, "web-scripted").state == "Failed"


def test_an_update_on_a_basic_plan_is_done_in_place_and_says_so(ws, factor_model, inference, app, cleanup, capsys):
    service = Model.deploy(ws, "web-basic", [factor_model], inference,
                           AppServiceWebservice.deploy_configuration(plan_name="basic-plan", sku="B1"))
    service.wait_for_deployment()
    (app / "score.py").write_text(SCORE.replace("x * factor", "x * factor + 2"))
    service.update(inference_config=InferenceConfig(entry_script="score.py", source_directory=str(app)),
                   show_output=True)
    shown = " ".join(capsys.readouterr().out.split())  # the printer wraps long lines
    assert "has no deployment slots: updating web app 'web-basic' in place, it restarts" in shown
    assert service.state == "Healthy" and service.run(json.dumps({"data": [1]})) == [5.0]


def test_web_apps_share_a_plan_which_goes_with_the_last_of_them(ws, factor_model, inference, cleanup, capsys,
                                                                 emulator):
    from azure.core.exceptions import ResourceNotFoundError

    config = AppServiceWebservice.deploy_configuration(plan_name="shared-plan", sku="B1")
    first = Model.deploy(ws, "web-shared1", [factor_model], inference, config)
    first.wait_for_deployment()
    second = Model.deploy(ws, "web-shared2", [factor_model], inference, config)
    second.wait_for_deployment(show_output=True)
    assert "Using App Service plan 'shared-plan' (B1)" in " ".join(capsys.readouterr().out.split())
    web = _web()
    assert web.app_service_plans.get(emulator.resource_group, "shared-plan").number_of_sites == 2
    first.delete()  # another web app still uses the plan: it stays
    assert web.app_service_plans.get(emulator.resource_group, "shared-plan").number_of_sites == 1
    assert second.run(json.dumps({"data": [1]})) == [3.0]
    second.delete()
    with pytest.raises(ResourceNotFoundError):
        web.app_service_plans.get(emulator.resource_group, "shared-plan")


def test_a_plan_the_user_made_is_left_alone(ws, factor_model, inference, cleanup, emulator):
    web = _web()
    web.app_service_plans.begin_create_or_update(emulator.resource_group, "users-plan", {
        "location": "westus", "kind": "linux", "sku": {"name": "B1"}, "properties": {"reserved": True}}).result()
    service = Model.deploy(ws, "web-users", [factor_model], inference,
                           AppServiceWebservice.deploy_configuration(plan_name="users-plan"))
    service.wait_for_deployment()
    service.delete()
    assert web.app_service_plans.get(emulator.resource_group, "users-plan").number_of_sites == 0
    web.app_service_plans.delete(emulator.resource_group, "users-plan")
