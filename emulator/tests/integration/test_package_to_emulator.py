"""Model.package pushes to the emulator's registry through a cloud profile, with ACR-style
credentials read over ARM; real clients (skopeo, the process engine) pull it back."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import requests

from aml_core import Environment, Image, InferenceConfig, Model, Workspace
from aml_emulator import Emulator

QUICKSTART = Path(__file__).resolve().parents[3] / "examples" / "quickstart"


@pytest.fixture
def emulator(tmp_path, monkeypatch):
    monkeypatch.setenv("AML_PROFILE_DIR", str(tmp_path / "profiles"))
    with Emulator(services=("registry", "arm")) as emu:
        emu.profile().save()
        yield emu


def test_package_pushes_to_the_profile_registry_and_skopeo_pulls_it(emulator, tmp_path):
    import joblib
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge

    ws = Workspace.create(tmp_path / "ws", container_registry="profile:emulator")
    x, y = load_diabetes(return_X_y=True)
    joblib.dump(Ridge().fit(x, y), tmp_path / "sklearn_regression_model.pkl")
    model = Model.register(ws, tmp_path / "sklearn_regression_model.pkl", "sklearn_regression_model")
    env = Environment.from_pip_requirements("qs", QUICKSTART / "requirements.txt")
    config = InferenceConfig(entry_script="score.py", source_directory=str(QUICKSTART), environment=env)

    first = Model.package(ws, [model], config, image_name="myimage")
    second = Model.package(ws, [model], config, image_name="myimage")
    login = emulator.registry.login_server
    assert first.image_location == f"{login}/myimage:1" and second.image_location == f"{login}/myimage:2"
    user = emulator.registry.credentials.username
    password = emulator.registry.credentials.passwords["password"]
    tags = requests.get(f"{emulator.registry.url}/v2/myimage/tags/list", auth=(user, password), timeout=10).json()
    assert sorted(tags["tags"]) == ["1", "2"]
    assert first.get_container_registry().address == login
    assert password not in repr(first.get_container_registry())

    skopeo = shutil.which("skopeo")
    if skopeo is None:
        pytest.skip("skopeo is not installed (apt-get install skopeo; make test installs it)")
    out = subprocess.run(
        [skopeo, "inspect", "--tls-verify=false", "--creds", f"{user}:{password}", f"docker://{second.image_location}"],
        capture_output=True, text=True, check=True,
    )
    assert json.loads(out.stdout)["Digest"] == second.digest

    second.delete()
    assert [i.id for i in Image.list(ws)] == ["myimage:1"]


def test_without_a_running_emulator_the_error_says_how_to_start_it(tmp_path, monkeypatch):
    from aml_core.errors import AmlError

    monkeypatch.setenv("AML_PROFILE_DIR", str(tmp_path / "profiles"))
    ws = Workspace.create(tmp_path / "ws", container_registry="profile:emulator")
    (tmp_path / "m.pkl").write_bytes(b"x")
    model = Model.register(ws, tmp_path / "m.pkl", "m")
    (tmp_path / "score.py").write_text("def init():\n    pass\ndef run(d):\n    return d\n")
    config = InferenceConfig(entry_script="score.py", source_directory=str(tmp_path))
    with pytest.raises(AmlError, match="aml emulator start"):
        Model.package(ws, [model], config, image_name="img")
