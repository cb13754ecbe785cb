"""An AKS deployment that fails at any step leaves the workspace usable (issue 10, item 3):
``aml service list``, ``show`` and ``delete`` work on it, and delete removes what the failed
deployment made on the cluster. Each test fails one step of ``aml_provider_aks.deploy``."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from aml_core.cli import cli
from aml_core.compute import ComputeTarget
from aml_core.inference import InferenceConfig
from aml_core.model import Model
from aml_core.webservice import FAILED_STATES, Webservice
from aml_core.workspace import Workspace
from aml_provider_aks import AksCompute, AksWebservice
from aml_provider_aks import deploy as aks_deploy
from aml_provider_aks import frontdoor as aks_frontdoor

SCORE = "def init():\n    pass\n\n\ndef run(raw_data):\n    return 'ok'\n"
#: every step of an AKS deployment: (object holding it, function name); after write_entry
#: the service is routed, so a failure in the last wait leaves a service that serves
STEPS = [
    (aks_deploy, "kubeconfig_for"),
    (aks_deploy, "locate"),
    (aks_deploy, "package"),
    (aks_deploy, "apply_version"),
    (aks_deploy, "wait_rollout"),
    (aks_deploy, "write_entry"),
    (aks_frontdoor.FrontDoorClient, "wait_applied"),
]


@pytest.fixture(scope="module")
def cluster_ws(aks_module_emulator, tmp_path_factory):
    """One workspace with one cluster and one model, shared by this module's tests."""
    root = tmp_path_factory.mktemp("aks-failures")
    ws = Workspace.create(root / "ws", container_registry="profile:emulator")
    (root / "model.txt").write_text("no weights needed")
    model = Model.register(ws, str(root / "model.txt"), "m")
    (root / "app").mkdir()
    (root / "app" / "score.py").write_text(SCORE)
    config = InferenceConfig(entry_script="score.py", source_directory=str(root / "app"))
    target = ComputeTarget.create(ws, "aks-fail", AksCompute.provisioning_configuration(cluster_purpose="DevTest",
                                                                                        agent_count=1))
    target.wait_for_completion()
    return ws, model, config, target


def _cli(ws: Workspace, *args: str):
    return CliRunner().invoke(cli, ["-w", str(ws.root), *args], catch_exceptions=False)


def _cluster_objects(target, service: str) -> list[str]:
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=target.record.details["kubeconfig"])
    try:
        selector = f"{aks_deploy.SERVICE_LABEL}={service}"
        apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
        found = [f"deployment/{d.metadata.name}" for d in
                 apps.list_namespaced_deployment("default", label_selector=selector).items]
        found += [f"service/{s.metadata.name}" for s in
                  core.list_namespaced_service("default", label_selector=selector).items]
        found += [f"secret/{s.metadata.name}" for s in core.list_namespaced_secret("default").items
                  if s.metadata.name.startswith(f"{service}-")]
        return found
    finally:
        api.close()


def _assert_usable_then_delete(ws: Workspace, target, name: str, expected_error: str | None) -> None:
    """list and show work and report the failure; delete removes it, here and on the cluster.
    ``expected_error=None``: the failed step came after the service was complete on the
    cluster (it serves), so the live state may rightly be Healthy."""
    listing = _cli(ws, "-o", "json", "service", "list")
    assert listing.exit_code == 0, listing.output
    assert name in [entry["name"] for entry in json.loads(listing.stdout)]
    state = Webservice(ws, name).update_deployment_state()
    shown = _cli(ws, "service", "show", name)
    assert shown.exit_code == 0, shown.output
    if expected_error is not None:
        assert state in FAILED_STATES
        assert expected_error in " ".join(shown.stdout.split())
    deleted = _cli(ws, "service", "delete", name)
    assert deleted.exit_code == 0, deleted.output
    assert name not in [s.name for s in Webservice.list(ws)]
    if target is not None:
        assert _cluster_objects(target, name) == []


@pytest.mark.parametrize(("holder", "step"), STEPS, ids=[step for _, step in STEPS])
def test_a_deployment_failing_at_any_step_can_be_listed_shown_and_deleted(cluster_ws, monkeypatch, holder, step):
    ws, model, config, target = cluster_ws
    name = f"broken-{step.strip('_').replace('_', '-')}"

    def failing(*args, **kwargs):
        raise RuntimeError(f"injected failure in {step}")

    monkeypatch.setattr(holder, step, failing)
    service = Model.deploy(ws, name, [model], config, AksWebservice.deploy_configuration(), target)
    with pytest.raises(RuntimeError, match="injected"):
        service.wait_for_deployment()
    monkeypatch.undo()
    complete = step == "wait_applied"
    _assert_usable_then_delete(ws, target, name, None if complete else f"injected failure in {step}")


def test_deploying_to_aks_without_a_compute_target_from_the_cli_leaves_nothing_wedged(cluster_ws, tmp_path):
    ws, _model, config, _target = cluster_ws
    result = _cli(ws, "service", "deploy", "abc", "--model", "m", "--entry-script", "score.py",
                  "--source-dir", config.source_directory, "--target", "aks")
    assert result.exit_code != 0
    assert "--compute-target" in result.stderr
    _assert_usable_then_delete(ws, None, "abc", "--compute-target")
