"""Fixtures for the engine tests: a quickstart-like app, a base image, a podman service."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

import aml_core
from aml_core.oci import AppSpec, EnvironmentSpec, ModelFiles, PackageSpec, cached_image_from_rootfs

REPO_ROOT = Path(__file__).resolve().parents[3]
BUILD_SCRIPT = REPO_ROOT / "scripts" / "build-base-image.sh"

SCORE_PY = """\
import json
import os

import joblib
import numpy as np


def init():
    global model
    path = os.path.join(os.getenv("AZUREML_MODEL_DIR"), "sklearn_regression_model.pkl")
    model = joblib.load(path)


def run(raw_data):
    data = np.array(json.loads(raw_data)["data"])
    return model.predict(data).tolist()
"""


@pytest.fixture(scope="session")
def quickstart(tmp_path_factory) -> dict:
    """score.py + a Ridge regression trained on load_diabetes, and what it predicts."""
    joblib = pytest.importorskip("joblib")
    datasets = pytest.importorskip("sklearn.datasets")
    from sklearn.linear_model import Ridge

    root = tmp_path_factory.mktemp("quickstart")
    (root / "src").mkdir()
    (root / "src" / "score.py").write_text(SCORE_PY)
    x, y = datasets.load_diabetes(return_X_y=True)
    model = Ridge().fit(x, y)
    joblib.dump(model, root / "sklearn_regression_model.pkl")
    sample = x[:2].tolist()
    # a snapshot of the runtime's source, so every image built in this session carries the
    # same runtime layer even while aml_core's files are being edited
    runtime = root / "runtime-snapshot" / "aml_core"
    shutil.copytree(
        Path(aml_core.__file__).parent,
        runtime,
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    return {
        "root": root,
        "sample": sample,
        "expected": model.predict(x[:2]).tolist(),
        "runtime": runtime,
    }


@pytest.fixture(scope="session")
def quickstart_spec(quickstart):
    """``quickstart_spec(base=None)`` → the PackageSpec of the quickstart image."""
    return lambda base=None: _spec(quickstart, base)


def _spec(quickstart: dict, base) -> PackageSpec:
    root = quickstart["root"]
    return PackageSpec(
        app=AppSpec(entry_script="score.py", source_directory=root / "src"),
        environment=EnvironmentSpec(
            name="quickstart-env",
            python_version="3.11",
            pip_requirements=["numpy", "scikit-learn", "joblib"],
        ),
        models=[
            ModelFiles.from_path(
                "sklearn_regression_model", 1, root / "sklearn_regression_model.pkl"
            )
        ],
        base=base,
        runtime_source=quickstart["runtime"],
    )


@pytest.fixture(scope="session")
def base_image():
    """The Debian + Python base image, built once by scripts/build-base-image.sh and cached."""
    if os.geteuid() != 0:
        pytest.skip("building the base image needs root (debootstrap); CI runs as root")
    if shutil.which("debootstrap") is None and not Path("/usr/sbin/debootstrap").exists():
        pytest.skip("debootstrap is not installed (scripts/install-system-deps.sh)")
    started = time.monotonic()
    done = subprocess.run(["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        pytest.fail(f"scripts/build-base-image.sh failed:\n{done.stderr[-3000:]}")
    image = cached_image_from_rootfs(Path(done.stdout.strip().splitlines()[-1]))
    print(f"base image ready in {time.monotonic() - started:.1f} s")
    return image


@pytest.fixture(scope="session")
def podman(tmp_path_factory):
    """A private podman API service (Docker-compatible) on a temporary unix socket."""
    from aml_core.engines.podman import podman_service
    from aml_core.errors import NotFound

    if os.geteuid() != 0:
        pytest.skip("the podman tests run rootful (CI runs as root)")
    try:
        with podman_service(tmp_path_factory.mktemp("podman")) as service:
            yield service
    except NotFound as exc:
        pytest.skip(str(exc))
