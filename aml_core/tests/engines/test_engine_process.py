"""The process engine: unpack, materialise, run the entrypoint, score, stop."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import attrs
import pytest
import requests
from aml_core.engines import ProcessEngine, get_engine
from aml_core.engines.environments import materialise
from aml_core.engines.process import group_members
from aml_core.errors import InvalidConfig, ProvisioningFailed
from aml_core.oci import (
    AppSpec,
    EnvironmentSpec,
    Image,
    PackageSpec,
    RegistryClient,
    build_image,
    write_layout,
)
from aml_core.oci.layers import Blob, gzip_bytes
from aml_core.oci.media import OCI_LAYER_GZIP
from aml_core.oci.testing import reference_registry


def tiny_spec(tmp_path: Path, script: str, **env_kw) -> PackageSpec:
    """An image of one score.py and no model (nothing slow to import)."""
    src = tmp_path / "tiny-src"
    src.mkdir(exist_ok=True)
    (src / "score.py").write_text(script)
    return PackageSpec(
        app=AppSpec(entry_script="score.py", source_directory=src),
        environment=EnvironmentSpec(name="tiny", **env_kw),
    )


ECHO = "def init():\n    pass\n\ndef run(raw):\n    return raw\n"


def score(container, sample) -> list:
    resp = requests.post(container.url + "/score", json={"data": sample}, timeout=30)
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_runs_and_scores_the_quickstart_image(quickstart, quickstart_spec, tmp_path):
    image = build_image(quickstart_spec())
    engine = ProcessEngine(cache_dir=tmp_path / "cache")
    with engine.run(image, name="quickstart") as container:
        container.wait_ready(timeout=90)
        assert score(container, quickstart["sample"]) == pytest.approx(quickstart["expected"])
        assert container.url.startswith("http://127.0.0.1:")
        logs = container.logs()
        # the script ran from the unpacked tree, under the digest-keyed cache
        assert str(tmp_path / "cache" / "images" / image.digest.split(":")[1]) in logs
    assert container.wait(timeout=0) is not None


def test_stop_ends_the_whole_process_group(tmp_path):
    image = build_image(tiny_spec(tmp_path, ECHO))
    container = ProcessEngine(cache_dir=tmp_path / "cache").run(
        image, name="group", env={"WORKER_COUNT": "2"}
    )
    try:
        container.wait_ready(timeout=90)
        pgid = os.getpgid(container.pid)
        assert pgid == container.pid  # its own group
        assert len(group_members(pgid)) >= 3  # supervisor and two workers
    finally:
        container.stop()
    assert group_members(pgid) == []  # no worker left behind (zombies awaiting reaping aside)


def test_runs_from_an_oci_layout_and_from_a_registry(quickstart, quickstart_spec, tmp_path):
    if shutil.which("docker-registry") is None:
        pytest.skip("docker-registry is not installed (apt-get install docker-registry)")
    image = build_image(quickstart_spec())
    layout = write_layout(image, tmp_path / "layout", tag="1")
    engine = ProcessEngine(cache_dir=tmp_path / "cache")
    with engine.run(f"oci:{layout}:1", name="from-layout") as container:
        container.wait_ready(timeout=90)
        assert score(container, quickstart["sample"]) == pytest.approx(quickstart["expected"])
    with reference_registry(tmp_path / "registry") as url:
        RegistryClient(url).push_image("aml/quickstart", image, tags=["1"])
        ref = url.replace("http://", "") + "/aml/quickstart:1"
        fresh = ProcessEngine(cache_dir=tmp_path / "cache2")
        with fresh.run(ref, name="from-registry") as container:
            container.wait_ready(timeout=90)
            assert container.image_digest == image.digest
            assert score(container, quickstart["sample"]) == pytest.approx(quickstart["expected"])


def test_image_paths_are_remapped_into_the_unpacked_root(quickstart, quickstart_spec, tmp_path):
    script = (
        "import json, os\n"
        "def init():\n    pass\n"
        "def run(raw):\n"
        "    keys = ['AZUREML_MODEL_DIR', 'AML_APP_ROOT', 'AZUREML_SOURCE_DIRECTORY', 'GREETING']\n"
        "    return {k: os.environ.get(k) for k in keys}\n"
    )
    spec = attrs.evolve(
        tiny_spec(tmp_path, script, environment_variables={"GREETING": "hi"}),
        models=quickstart_spec().models,
    )
    image = build_image(spec)
    with ProcessEngine(cache_dir=tmp_path / "cache").run(image, name="env") as container:
        container.wait_ready(timeout=90)
        got = requests.post(container.url + "/score", data="{}", timeout=30).json()
    root = str(tmp_path / "cache" / "images")
    assert got["AZUREML_MODEL_DIR"].startswith(root)
    assert got["AZUREML_MODEL_DIR"].endswith(
        "/rootfs/var/azureml-app/azureml-models/sklearn_regression_model/1"
    )
    assert got["AML_APP_ROOT"].startswith(root) and got["AZUREML_SOURCE_DIRECTORY"].startswith(root)
    assert got["GREETING"] == "hi"


def test_a_failing_init_is_reported_with_the_logs(tmp_path):
    image = build_image(
        tiny_spec(
            tmp_path,
            "def init():\n    raise RuntimeError('boom at init')\ndef run(raw):\n    return raw\n",
        )
    )
    container = ProcessEngine(cache_dir=tmp_path / "cache").run(image, name="broken")
    try:
        with pytest.raises(ProvisioningFailed, match="boom at init"):
            container.wait_ready(timeout=60)
    finally:
        container.stop()


def test_a_hostile_image_is_refused_before_anything_runs(tmp_path):
    import io
    import tarfile

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("../../escape.sh")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    blob = Blob.from_bytes(gzip_bytes(raw.getvalue()), OCI_LAYER_GZIP)
    image = Image.assemble(
        {
            "config": {
                "Entrypoint": ["/bin/true"],
                "Labels": {"org.aml.environment": EnvironmentSpec(name="e").to_label()},
            }
        },
        [blob],
    )
    with pytest.raises(InvalidConfig, match=r"\.\./\.\./escape\.sh"):
        ProcessEngine(cache_dir=tmp_path / "cache").run(image, name="evil")
    assert not (tmp_path / "escape.sh").exists()


def test_environment_is_built_once_and_shared(tmp_path):
    if shutil.which("uv") is None and not Path(os.sys.executable).with_name("uv").exists():
        pytest.skip(
            "uv is not available; the venv+pip path is slower and covered by uv's absence in CI only"
        )
    env = EnvironmentSpec(
        name="venv-test", python_version=f"{os.sys.version_info[0]}.{os.sys.version_info[1]}"
    )
    results, errors = [], []

    def build():
        try:
            results.append(materialise(env, tmp_path, allow_current=False))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=build) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not errors, errors
    assert len(set(results)) == 1
    python = Path(results[0])
    assert python.parent.parent == tmp_path / "envs" / env.content_hash()
    assert (python.parent.parent / ".complete").exists()
    import subprocess

    subprocess.run(
        [str(python), "-c", "import uvicorn, pluggy, attrs, yaml"], check=True, timeout=60
    )


def test_get_engine_names_the_choices():
    assert isinstance(get_engine("process"), ProcessEngine)
    with pytest.raises(InvalidConfig, match="'process' or 'docker'"):
        get_engine("kubelet")


def test_runs_in_a_cached_venv_when_told_not_to_use_this_interpreter(tmp_path):
    if shutil.which("uv") is None and not Path(os.sys.executable).with_name("uv").exists():
        pytest.skip("uv is not available to build the venv quickly (pip install uv)")
    image = build_image(
        tiny_spec(
            tmp_path,
            "import sys\ndef init():\n    pass\ndef run(raw):\n    return sys.executable\n",
        )
    )
    engine = ProcessEngine(cache_dir=tmp_path / "cache", allow_current_interpreter=False)
    with engine.run(image, name="venv") as container:
        container.wait_ready(timeout=120)
        python = requests.post(container.url + "/score", data="{}", timeout=30).json()
    envs = tmp_path / "cache" / "envs"
    assert python.startswith(str(envs)) and python != os.sys.executable
    assert len([p for p in envs.iterdir() if p.is_dir()]) == 1


@pytest.mark.slow
def test_without_uv_the_environment_is_built_with_venv_and_pip(tmp_path, monkeypatch):
    import aml_core.engines.environments as environments

    monkeypatch.setattr(environments, "find_uv", lambda: None)
    env = EnvironmentSpec(name="pip-path")
    python = Path(materialise(env, tmp_path, allow_current=False))
    assert python.parent.parent == tmp_path / "envs" / env.content_hash()
    import subprocess

    subprocess.run([str(python), "-c", "import uvicorn, yaml, rich"], check=True, timeout=60)
    pip_list = subprocess.run(
        [str(python), "-m", "pip", "list"], capture_output=True, text=True, check=True
    ).stdout
    assert "uvicorn" in pip_list  # installed by pip into the venv
