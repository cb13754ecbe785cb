"""Fixtures for the scoring runtime's tests: a trained model, score.py files, live servers.

Every server is a real ``python -m aml_core.runtime serve`` process on 127.0.0.1 with an
ephemeral port, waited for through its state file and stopped by the fixture that made it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from aml_runtime_testkit import SAMPLE, Server, write_script, write_spec


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    """``azureml-models/diabetes/1`` holding a Ridge fitted on ``load_diabetes`` (joblib)."""
    import joblib
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge

    root = tmp_path_factory.mktemp("models")
    version_dir = root / "azureml-models" / "diabetes" / "1"
    version_dir.mkdir(parents=True)
    X, y = load_diabetes(return_X_y=True)
    joblib.dump(Ridge().fit(X, y), version_dir / "model.pkl")
    return version_dir


@pytest.fixture(scope="session")
def expected_predictions(model_dir) -> list[float]:
    import joblib
    import numpy as np

    return joblib.load(model_dir / "model.pkl").predict(np.array(SAMPLE)).tolist()


@pytest.fixture
def start_server(tmp_path):
    """Factory: ``start_server(args, env=None, name="srv")`` → a :class:`Server` (not waited)."""
    servers: list[Server] = []

    def start(args: list[str], env: dict | None = None, name: str = "srv") -> Server:
        workdir = tmp_path / f"{name}{len(servers)}"
        workdir.mkdir(parents=True, exist_ok=True)
        server = Server(workdir, args, env)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def module_server(tmp_path_factory):
    """Factory for servers shared by a module's tests (one start per module)."""
    servers: list[Server] = []

    def start(script: str, model_dir: Path | str, workers: int = 1, **spec_extra) -> Server:
        workdir = tmp_path_factory.mktemp("server")
        entry = write_script(workdir / "src", script)
        spec = write_spec(workdir, entry, model_dir, **spec_extra)
        server = Server(workdir, ["--workers", str(workers), "--spec", str(spec)])
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
