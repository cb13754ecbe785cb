"""Fixtures a provider author must override, and the scenario fixtures built on them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ASSETS = Path(__file__).parent / "assets"


@pytest.fixture
def aml_target_kind(request) -> str:
    """The target kind under test: override it in your conftest, or pass ``--aml-provider KIND``."""
    kind = request.config.getoption("--aml-provider", default=None)
    if kind:
        return kind
    raise NotImplementedError(
        "Override the 'aml_target_kind' fixture in your conftest.py to return your target kind "
        "(e.g. 'local'), or run pytest with --aml-provider KIND."
    )


@pytest.fixture
def aml_deployment_config(aml_target):
    """A factory ``name -> deployment configuration``.

    The default calls your Webservice class's ``deploy_configuration()`` with no arguments;
    override the fixture when your target needs settings.
    """
    factory = getattr(aml_target.webservice_class, "deploy_configuration", None)
    if factory is None:
        raise NotImplementedError(
            "Override the 'aml_deployment_config' fixture in your conftest.py to return a callable "
            "name -> deployment configuration (e.g. lambda name: LocalWebservice.deploy_configuration())."
        )
    return lambda name: factory()


@pytest.fixture
def aml_token_auth_deployment_config(aml_target):
    """A factory ``name -> deployment configuration`` with token auth on (and key auth off),
    for targets with the ``auth_token`` capability. The default passes
    ``auth_enabled=False, token_auth_enabled=True`` to ``deploy_configuration()``."""
    factory = aml_target.webservice_class.deploy_configuration
    return lambda name: factory(auth_enabled=False, token_auth_enabled=True)


@pytest.fixture
def aml_versioned_deploy(aml_target_kind):
    """For targets with ``traffic_split``: a factory ``(name, {version: inference_config})
    -> service`` that deploys one service with those versions, the first one the default and
    every version's traffic share unset. Override it; the suite deletes what it returns."""

    def deploy(name, versions):
        raise NotImplementedError(
            f"Target {aml_target_kind!r} declares traffic_split: override the 'aml_versioned_deploy' fixture "
            f"to deploy a service with several versions (see docs/contract-tests.md).")

    return deploy


@pytest.fixture
def aml_deployment_target():
    """The compute target to deploy onto (override it for targets that need provisioned compute)."""
    return None


@pytest.fixture
def aml_hooks():
    from aml_core.plugins import default_hooks

    return default_hooks()


@pytest.fixture
def aml_target(aml_hooks, aml_target_kind):
    """The TargetKind the provider announced."""
    return aml_hooks.target(aml_target_kind)


@pytest.fixture
def aml_workspace(tmp_path):
    """A fresh embedded workspace in a temporary directory (removed after the test)."""
    from aml_core.workspace import Workspace

    return Workspace.create(tmp_path / "workspace")


@pytest.fixture(scope="session")
def aml_model_file(tmp_path_factory):
    """A scikit-learn Ridge model fitted on the bundled diabetes data, saved with joblib."""
    import joblib
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge

    x, y = load_diabetes(return_X_y=True)
    path = tmp_path_factory.mktemp("model") / "sklearn_regression_model.pkl"
    joblib.dump(Ridge().fit(x, y), path)
    return path


@pytest.fixture
def aml_model(aml_workspace, aml_model_file):
    """The Ridge model registered in the test workspace."""
    from aml_core.model import Model

    return Model.register(aml_workspace, aml_model_file, "diabetes-ridge", tags={"contract": "true"})


def _app(tmp_path: Path, script: str, folder: str) -> Path:
    app = tmp_path / folder
    app.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ASSETS / script, app / "score.py")
    return app


@pytest.fixture
def aml_inference_config(tmp_path):
    """score.py version 1: returns the predictions as a list."""
    from aml_core.inference import InferenceConfig

    return InferenceConfig(entry_script="score.py", source_directory=str(_app(tmp_path, "score_v1.py", "app-v1")))


@pytest.fixture
def aml_inference_config_v2(tmp_path):
    """score.py version 2: returns ``{"version": 2, "predictions": [...]}``."""
    from aml_core.inference import InferenceConfig

    return InferenceConfig(entry_script="score.py", source_directory=str(_app(tmp_path, "score_v2.py", "app-v2")))


@pytest.fixture
def aml_broken_inference_config(tmp_path):
    """A score.py whose init() raises."""
    from aml_core.inference import InferenceConfig

    return InferenceConfig(entry_script="score.py", source_directory=str(_app(tmp_path, "score_init_fails.py", "app-broken")))


@pytest.fixture
def aml_deploy(aml_workspace, aml_model, aml_deployment_config, aml_deployment_target):
    """A factory that deploys and waits; every service it made is deleted after the test."""
    from aml_core.model import Model

    made = []

    def deploy(name, inference_config, config=None, **kwargs):
        service = Model.deploy(aml_workspace, name, [kwargs.pop("model", aml_model)], inference_config,
                               config or aml_deployment_config(name), aml_deployment_target, **kwargs)
        made.append(service)
        service.wait_for_deployment()
        return service

    yield deploy
    for service in made:
        try:
            service.delete()
        except Exception:  # best effort: the test itself may have deleted it
            pass


SAMPLE_INPUT = {"data": [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]]}
