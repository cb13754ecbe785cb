"""A deployment that fails at any step leaves the workspace usable (issue 10, items 1 and 3):
list, show and delete work on the failed service, from the API and the CLI, and nothing of
it (process, staged files) is left once it is deleted."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from aml_core import Environment, InferenceConfig, Model, Workspace
from aml_core.cli import cli
from aml_core.webservice import FAILED_STATES, Webservice
from aml_provider_local import LocalWebservice
from aml_provider_local import deploy as local_deploy

QUICKSTART = Path(__file__).resolve().parents[3] / "examples" / "quickstart"
#: every step of a local deployment, by the function that runs it
STEPS = ("check_environment", "_stage", "_write_json", "_wait_started", "_read_json")


@pytest.fixture
def project(tmp_path, monkeypatch):
    """The README's layout: code in the current folder, the workspace inside it."""
    import joblib
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge

    root = tmp_path / "project"
    shutil.copytree(QUICKSTART, root)
    monkeypatch.chdir(root)
    ws = Workspace.create("my-workspace")
    x, y = load_diabetes(return_X_y=True)
    joblib.dump(Ridge().fit(x, y), root / "sklearn_regression_model.pkl")
    model = Model.register(ws, model_path="sklearn_regression_model.pkl", model_name="sklearn_regression_model")
    env = Environment.from_pip_requirements("env", "requirements.txt")
    config = InferenceConfig(entry_script="score.py", source_directory=".", environment=env)
    return ws, model, config


def _cli(ws: Workspace, *args: str):
    return CliRunner().invoke(cli, ["-w", str(ws.root), *args], catch_exceptions=False)


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if text in cmdline:
                found.append(int(entry.name))
    return found


def test_the_readme_layout_deploys_without_copying_the_workspace(project):
    ws, model, config = project
    service = Model.deploy(ws, "my-service", [model], config, LocalWebservice.deploy_configuration())
    try:
        service.wait_for_deployment()
        assert service.run({"data": [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]]})
        app = Path(service.record.details["service_dir"]) / "gen-1" / "app"
        assert (app / "score.py").is_file()
        assert not (app / "my-workspace").exists()
    finally:
        service.delete()


@pytest.mark.parametrize("step", STEPS)
def test_a_deployment_failing_at_any_step_can_be_listed_shown_and_deleted(project, monkeypatch, step):
    ws, model, config = project
    original = getattr(local_deploy, step)

    def failing(*args, **kwargs):
        monkeypatch.setattr(local_deploy, step, original)  # fail once, at this step
        raise RuntimeError(f"injected failure in {step}")

    monkeypatch.setattr(local_deploy, step, failing)
    service = Model.deploy(ws, "broken", [model], config, LocalWebservice.deploy_configuration())
    with pytest.raises(RuntimeError, match="injected"):
        service.wait_for_deployment()

    [listed] = Webservice.list(ws)
    assert listed.state in FAILED_STATES
    found = Webservice(ws, "broken")
    assert found.update_deployment_state() in FAILED_STATES
    assert f"injected failure in {step}" in found.error
    listing = _cli(ws, "service", "list")
    assert listing.exit_code == 0, listing.output
    assert "broken" in listing.stdout
    shown = _cli(ws, "service", "show", "broken")
    assert shown.exit_code == 0, shown.output
    assert "injected failure" in shown.stdout

    deleted = _cli(ws, "service", "delete", "broken")
    assert deleted.exit_code == 0, deleted.output
    assert Webservice.list(ws) == []
    assert not (ws.root / "services" / "local" / "broken").exists()
    assert _processes_mentioning(str(ws.root / "services" / "local" / "broken")) == []


def test_overwrite_replaces_a_failed_deployment(project, monkeypatch):
    ws, model, config = project

    def failing(*args, **kwargs):
        raise RuntimeError("injected failure while starting")

    with monkeypatch.context() as patch:
        patch.setattr(local_deploy, "_wait_started", failing)
        first = Model.deploy(ws, "again", [model], config, LocalWebservice.deploy_configuration())
        with pytest.raises(RuntimeError):
            first.wait_for_deployment()
    service = Model.deploy(ws, "again", [model], config, LocalWebservice.deploy_configuration(), overwrite=True)
    try:
        service.wait_for_deployment()
        assert service.state == "running"
    finally:
        service.delete()


def test_an_overwrite_that_fails_too_records_its_own_failure(project, monkeypatch):
    ws, model, config = project
    messages = iter(["first failure", "second failure"])

    def failing(*args, **kwargs):
        raise RuntimeError(next(messages))

    monkeypatch.setattr(local_deploy, "_stage", failing)
    first = Model.deploy(ws, "twice", [model], config, LocalWebservice.deploy_configuration())
    with pytest.raises(RuntimeError, match="first failure"):
        first.wait_for_deployment()
    second = Model.deploy(ws, "twice", [model], config, LocalWebservice.deploy_configuration(), overwrite=True)
    with pytest.raises(RuntimeError, match="second failure"):
        second.wait_for_deployment()
    found = Webservice(ws, "twice")
    assert found.update_deployment_state() in FAILED_STATES
    assert "second failure" in found.error
    found.delete()
    assert Webservice.list(ws) == []
