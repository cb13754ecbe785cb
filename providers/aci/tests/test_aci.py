"""AciWebservice: the deployment configuration's rules (no remote call), then services on the
emulator through azure-mgmt-containerinstance, the documents' flows and their bad inputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import requests

from aml_core.errors import Conflict, InvalidConfig, ProvisioningFailed, QuotaExceeded
from aml_core.inference import InferenceConfig
from aml_core.model import Model
from aml_core.webservice import Webservice
from aml_provider_aci import AciServiceDeploymentConfiguration, AciWebservice

GROUPS = "Microsoft.ContainerInstance/containerGroups"
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


def test_defaults_follow_the_reference():
    config = AciWebservice.deploy_configuration()
    assert (config.effective_cpu_cores, config.effective_memory_gb) == (0.1, 0.5)
    assert not config.effective_auth_enabled and not config.effective_ssl_enabled
    assert config.enable_app_insights is None and config.dns_name_label is None
    assert AciServiceDeploymentConfiguration.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"cpu_cores": 0}, "cpu_cores must be greater than zero"),
    ({"cpu_cores": 5}, "cpu_cores must be at most 4 cores, ACI's limit for one container group"),
    ({"memory_gb": -1}, "memory_gb must be greater than zero"),
    ({"memory_gb": 17}, "memory_gb must be at most 16 GB"),
    ({"dns_name_label": "My_Label"}, "dns_name_label 'My_Label': a DNS name label is 5-63 characters"),
    ({"dns_name_label": "abc"}, "5-63 characters"),
    ({"ssl_enabled": True}, "ssl_enabled=True needs ssl_cert_pem_file and ssl_key_pem_file"),
    ({"ssl_enabled": True, "ssl_cert_pem_file": "/no/cert.pem", "ssl_key_pem_file": "/no/key.pem"},
     "ssl_cert_pem_file '/no/cert.pem' is not a file"),
    ({"ssl_cname": "svc.example.com"}, "ssl_cname given without ssl_enabled=True"),
    ({"primary_key": "abc"}, "primary_key can only be set with auth_enabled=True"),
    ({"auth_enabled": True, "secondary_key": "a,b"}, "secondary_key must be a non-empty string without spaces"),
    ({"cmk_key_name": "k"}, "cmk_vault_base_url, cmk_key_name and cmk_key_version must be given together"),
    ({"vnet_name": "v"}, "vnet_name and subnet_name must be given together"),
    ({"tags": {"a": 1}}, "tags must be a dict of strings to strings"),
    ({"auth_enabled": "yes"}, "auth_enabled must be True or False"),
])
def test_bad_settings_name_the_parameter_and_the_rule(kwargs, message):
    with pytest.raises(InvalidConfig) as info:
        AciWebservice.deploy_configuration(**kwargs)
    assert message in str(info.value)
    assert info.value.code == "InvalidConfig"


def test_update_settings_replace_tags_and_add_properties():
    config = AciWebservice.deploy_configuration(tags={"a": "1"}, properties={"p": "1"})
    changed = config.evolve_settings(tags={"b": "2"}, properties={"q": "2"}, description="new")
    assert changed.tags == {"b": "2"} and changed.properties == {"p": "1", "q": "2"}
    with pytest.raises(InvalidConfig, match="does not take cpu_cores"):
        config.evolve_settings(cpu_cores=1)


# -- services on the emulator ---------------------------------------------------------------


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


def test_the_documents_flow_deploy_run_logs_update_delete(ws, factor_model, inference, cleanup, capsys, emulator):
    service = Model.deploy(ws, "aci-flow", [factor_model], inference,
                           AciWebservice.deploy_configuration(cpu_cores=0.5, memory_gb=1, tags={"area": "docs"}))
    service.wait_for_deployment(show_output=True)
    shown = capsys.readouterr().out
    assert "Creating or updating container group 'aci-flow'" in shown and "Succeeded" in shown
    assert isinstance(service, AciWebservice)
    assert service.state == "Healthy" and service.error is None
    assert service.scoring_uri.startswith("http://127.0.0.1:") and service.scoring_uri.endswith("/score")
    assert service.run(json.dumps({"data": [1, 2]})) == [3.0, 6.0]
    assert requests.get(service.swagger_uri, timeout=10).status_code in (200, 404)
    assert "init loaded factor 3.0" in service.get_logs()
    assert service.tags == {"area": "docs"}
    # keys are off by default on ACI
    assert not service.auth_enabled
    assert requests.post(service.scoring_uri, json={"data": [1]}, timeout=10).json() == [3.0]

    # the container group is a real ACI resource, seen by the SDK
    from azure.mgmt.containerinstance import ContainerInstanceManagementClient

    from aml_azure_common import management_client

    group = management_client(ContainerInstanceManagementClient).container_groups.get(emulator.resource_group,
                                                                                       "aci-flow")
    requests_ = group.containers[0].resources.requests
    assert (requests_.cpu, requests_.memory_in_gb) == (0.5, 1.0)

    # another process finds it again by name
    found = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        from aml_core.workspace import Workspace
        from aml_core.webservice import Webservice
        s = Webservice(Workspace.get({str(ws.root)!r}), "aci-flow")
        s.update_deployment_state()
        print(type(s).__name__, s.state, s.run('{{"data": [2]}}'))
    """)], capture_output=True, text=True, timeout=120, env=os.environ.copy())
    assert found.returncode == 0, found.stderr
    assert found.stdout.split() == ["AciWebservice", "Healthy", "[6.0]"]

    with pytest.raises(InvalidConfig, match="No parameters provided to update."):
        service.update()
    service.update(tags={"area": "ops"}, properties={"owner": "me"}, description="second")
    assert service.tags == {"area": "ops"} and service.properties == {"owner": "me"}
    assert service.run(json.dumps({"data": [1]})) == [3.0]

    service.delete()
    assert Webservice.list(ws) == []
    from azure.core.exceptions import ResourceNotFoundError

    with pytest.raises(ResourceNotFoundError):
        management_client(ContainerInstanceManagementClient).container_groups.get(emulator.resource_group, "aci-flow")


def test_ssl_serves_https_with_the_users_certificate(ws, factor_model, inference, cleanup, tmp_path, monkeypatch):
    from aml_emulator.arm.tls import CertificateAuthority

    ca = CertificateAuthority.load_or_create(tmp_path / "ca")
    cert, key = ca.issue_server_cert(tmp_path / "ca", "svc", ("127.0.0.1", "svc.example.com"))
    config = AciWebservice.deploy_configuration(auth_enabled=True, ssl_enabled=True, ssl_cert_pem_file=str(cert),
                                                ssl_key_pem_file=str(key), ssl_cname="svc.example.com")
    service = Model.deploy(ws, "aci-ssl", [factor_model], inference, config)
    service.wait_for_deployment()
    assert service.scoring_uri.startswith("https://127.0.0.1:")
    primary, _ = service.get_keys()
    answer = requests.post(service.scoring_uri, json={"data": [1]}, headers={"Authorization": f"Bearer {primary}"},
                           verify=str(ca.cert_path), timeout=10)
    assert answer.json() == [3.0]
    with pytest.raises(requests.exceptions.SSLError):  # not a certificate the system trusts
        requests.post(service.scoring_uri, json={"data": [1]}, timeout=10)
    assert requests.post(service.scoring_uri, json={"data": [1]}, verify=str(ca.cert_path), timeout=10).status_code == 401
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca.cert_path))
    assert AciWebservice(ws, "aci-ssl").run(json.dumps({"data": [2]})) == [6.0]


def test_deploy_from_image_and_update_with_an_image(ws, factor_model, inference, cleanup, app):
    package = Model.package(ws, [factor_model], inference, image_name="factor-image")
    service = Webservice.deploy_from_image(ws, "aci-image", package, AciWebservice.deploy_configuration())
    service.wait_for_deployment()
    assert service.state == "Healthy"
    assert service.run(json.dumps({"data": [1]})) == [3.0]
    assert service.models == [factor_model.id]

    (app / "score.py").write_text(SCORE.replace("x * factor", "x * factor + 1"))
    second = Model.package(ws, [factor_model], inference, image_name="factor-image")
    with pytest.raises(InvalidConfig, match="deployed from image factor-image:1, so it cannot be updated with an "
                                            "InferenceConfig"):
        service.update(inference_config=inference)
    with pytest.raises(InvalidConfig, match="either image= or models="):
        service.update(image=second, inference_config=inference)
    service.update(image=second)
    assert service.run(json.dumps({"data": [1]})) == [4.0]


def test_an_inference_config_service_cannot_take_an_image(ws, factor_model, inference, cleanup):
    service = Model.deploy(ws, "aci-env", [factor_model], inference, AciWebservice.deploy_configuration())
    service.wait_for_deployment()
    package = Model.package(ws, [factor_model], inference, image_name="other")
    with pytest.raises(InvalidConfig, match="deployed from an InferenceConfig, so it cannot be updated with an image"):
        service.update(image=package)


def test_a_wrong_registry_password_fails_with_the_pull_error(ws, factor_model, inference, cleanup, monkeypatch, emulator):
    package = Model.package(ws, [factor_model], inference, image_name="pull-me")
    monkeypatch.setenv("AML_REGISTRY_USERNAME", emulator.registry.credentials.username)
    monkeypatch.setenv("AML_REGISTRY_PASSWORD", "not-the-password")
    service = Webservice.deploy_from_image(ws, "aci-badpull", package, AciWebservice.deploy_configuration())
    with pytest.raises(ProvisioningFailed) as info:
        service.wait_for_deployment()
    assert "is not accessible" in str(info.value) and "InaccessibleImage" in str(info.value)
    assert "not-the-password" not in str(info.value)
    failed = Webservice(ws, "aci-badpull")
    assert failed.state == "Failed"
    assert "Failed to pull image" in failed.get_logs()


def test_a_missing_image_fails_the_deployment(ws, factor_model, inference, cleanup, emulator):
    from aml_core.oci.registry import RegistryClient

    package = Model.package(ws, [factor_model], inference, image_name="vanishing")
    creds = emulator.registry.credentials
    RegistryClient(emulator.registry.login_server, username=creds.username,
                   password=creds.passwords["password"]).delete_manifest("vanishing", package.digest)
    service = Webservice.deploy_from_image(ws, "aci-noimage", package, AciWebservice.deploy_configuration())
    with pytest.raises(ProvisioningFailed, match="vanishing:1' in container group 'aci-noimage' is not accessible"):
        service.wait_for_deployment()


def test_a_malformed_score_py_is_refused_before_anything_is_sent(ws, factor_model, tmp_path, cleanup):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "score.py").write_text("def init(:\n    pass\n")
    config = InferenceConfig(entry_script="score.py", source_directory=str(tmp_path / "bad"))
    with pytest.raises(InvalidConfig, match="syntax error at line 1"):
        Model.deploy(ws, "aci-malformed", [factor_model], config, AciWebservice.deploy_configuration())
    assert Webservice.list(ws) == []


def test_a_dns_label_already_taken_is_a_conflict_and_the_first_service_keeps_it(
        ws, factor_model, inference, cleanup):
    first = Model.deploy(ws, "aci-dns1", [factor_model], inference,
                         AciWebservice.deploy_configuration(dns_name_label="shared-label"))
    first.wait_for_deployment()
    assert first.fqdn == "shared-label.westus.azurecontainer.io"
    second = Model.deploy(ws, "aci-dns2", [factor_model], inference,
                          AciWebservice.deploy_configuration(dns_name_label="shared-label"))
    with pytest.raises(Conflict, match="The DNS name label 'shared-label' in container group 'aci-dns2' not "
                                       "available. Try using a different label."):
        second.wait_for_deployment()
    assert first.run(json.dumps({"data": [1]})) == [3.0]


def test_an_over_quota_group_is_quota_exceeded(ws, factor_model, inference, cleanup, emulator):
    from aml_emulator.arm import OperationScript

    emulator.script_arm_operations(GROUPS, OperationScript.failing(
        "ResourceQuotaExceeded", "Operation results in exceeding quota limits of StandardCores."), name="aci-quota")
    service = Model.deploy(ws, "aci-quota", [factor_model], inference, AciWebservice.deploy_configuration())
    with pytest.raises(QuotaExceeded, match="exceeding quota limits of StandardCores") as info:
        service.wait_for_deployment()
    assert info.value.code == "QuotaExceeded"
    assert Webservice(ws, "aci-quota").state == "Failed"


def test_slow_provisioning_is_waited_for_with_progress(ws, factor_model, inference, cleanup, emulator, capsys):
    from aml_emulator.arm import OperationScript

    emulator.script_arm_operations(GROUPS, OperationScript.after_polls(3), operation="create")
    service = Model.deploy(ws, "aci-slow", [factor_model], inference, AciWebservice.deploy_configuration())
    service.wait_for_deployment(show_output=True)
    out = capsys.readouterr().out
    assert "Creating or updating container group 'aci-slow' in resource group" in out
    assert "InProgress" in out and service.state == "Healthy"


def test_scale_and_traffic_are_not_supported_naming_target_and_operation(ws, factor_model, inference, cleanup):
    from aml_core.errors import NotSupported

    service = Model.deploy(ws, "aci-noscale", [factor_model], inference, AciWebservice.deploy_configuration())
    service.wait_for_deployment()
    with pytest.raises(NotSupported, match="The 'aci' target does not support scale"):
        service.scale(num_replicas=2)
    with pytest.raises(NotSupported, match="The 'aci' target does not support get_token"):
        service.get_token()


def test_the_cli_deploys_to_aci(ws, factor_model, app, cleanup):
    from click.testing import CliRunner

    from aml_core.cli import cli

    def aml(*args):
        return CliRunner().invoke(cli, ["--workspace", str(ws.root), *map(str, args)], catch_exceptions=False)

    deployed = aml("-o", "json", "service", "deploy", "aci-cli", "--model", "factor:1", "--entry-script", "score.py",
                   "--source-dir", app, "--target", "aci", "--option", "cpu_cores=0.5", "--option", "auth_enabled=true")
    assert deployed.exit_code == 0, deployed.stderr
    record = json.loads(deployed.stdout)
    assert record["state"] == "Healthy" and record["kind"] == "aci" and record["auth_mode"] == "key"
    assert json.loads(aml("-o", "json", "service", "run", "aci-cli", "--data", '{"data": [2]}').stdout) == [6.0]
    assert "init loaded factor" in aml("service", "logs", "aci-cli").stdout
    listed = json.loads(aml("-o", "json", "service", "list", "--compute-type", "aci").stdout)
    assert [s["name"] for s in listed] == ["aci-cli"]
    bad = aml("service", "deploy", "aci-cli2", "--model", "factor:1", "--entry-script", "score.py",
              "--source-dir", app, "--target", "aci", "--option", "cpu_cores=8")
    assert bad.exit_code == 6 and "cpu_cores must be at most 4 cores" in bad.stderr
    assert json.loads(aml("-o", "json", "service", "delete", "aci-cli").stdout) == {"name": "aci-cli",
                                                                                  "deleted": True}


def test_a_stopped_group_is_unhealthy_and_healthy_again_once_started(ws, factor_model, inference, cleanup, emulator):
    from azure.mgmt.containerinstance import ContainerInstanceManagementClient

    from aml_azure_common import management_client

    service = Model.deploy(ws, "aci-stop", [factor_model], inference, AciWebservice.deploy_configuration())
    service.wait_for_deployment()
    client = management_client(ContainerInstanceManagementClient)
    client.container_groups.stop(emulator.resource_group, "aci-stop")
    assert service.update_deployment_state() == "Unhealthy"
    assert "stopped" in service.error and "get_logs()" in service.error
    client.container_groups.begin_start(emulator.resource_group, "aci-stop").result(timeout=60)
    assert service.update_deployment_state() == "Healthy" and service.error is None
