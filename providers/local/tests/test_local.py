"""What the local target promises beyond the shared contract."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import requests

from aml_contract_tests.fixtures import SAMPLE_INPUT
from aml_core.errors import Conflict, InvalidConfig
from aml_core.inference import InferenceConfig
from aml_core.environment import Environment
from aml_core.model import Model
from aml_core.webservice import Webservice
from aml_provider_local import LocalWebservice


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


def test_update_under_load_fails_no_request(aml_deploy, aml_inference_config, aml_inference_config_v2):
    service = aml_deploy("local-rolling", aml_inference_config)
    uri = service.scoring_uri
    results: list[object] = []
    errors: list[str] = []
    stop = threading.Event()

    def client():
        deadline = time.monotonic() + 120
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                response = requests.post(uri, json=SAMPLE_INPUT, timeout=30)
            except requests.RequestException as exc:
                errors.append(repr(exc))
                continue
            if response.status_code != 200:
                errors.append(f"{response.status_code}: {response.text[:200]}")
            else:
                results.append(response.json())

    threads = [threading.Thread(target=client) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    service.update(inference_config=aml_inference_config_v2)
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join()
    assert errors == []
    assert isinstance(results[0], list), "the first responses come from version 1"
    assert isinstance(results[-1], dict) and results[-1]["version"] == 2
    switched = [i for i, r in enumerate(results) if isinstance(r, dict)]
    assert all(isinstance(r, dict) for r in results[switched[0]:]) or len(threads) > 1
    # Once update() has returned, only the new code answers.
    assert all(isinstance(service.run(SAMPLE_INPUT), dict) for _ in range(20))


def test_a_port_in_use_is_a_clear_conflict(aml_workspace, aml_model, aml_inference_config):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        service = Model.deploy(aml_workspace, "local-busy", [aml_model], aml_inference_config,
                               LocalWebservice.deploy_configuration(port=port))
        with pytest.raises(Conflict, match=f"Port {port}"):
            service.wait_for_deployment()
    Webservice(aml_workspace, "local-busy").delete()


def test_a_fixed_port_is_used(aml_workspace, aml_model, aml_inference_config):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    service = Model.deploy(aml_workspace, "local-port", [aml_model], aml_inference_config,
                           LocalWebservice.deploy_configuration(port=port))
    try:
        service.wait_for_deployment()
        assert service.scoring_uri == f"http://127.0.0.1:{port}/score"
        assert requests.get(f"http://127.0.0.1:{port}/", timeout=10).text.strip() == "Healthy"
    finally:
        service.delete()


def test_missing_packages_are_named_with_the_install_command(aml_workspace, aml_model, aml_inference_config, tmp_path):
    req = tmp_path / "requirements.txt"
    req.write_text("surely-not-installed-package-xyz\n")
    config = InferenceConfig(entry_script="score.py", source_directory=aml_inference_config.source_directory,
                             environment=Environment.from_pip_requirements("env", req))
    service = Model.deploy(aml_workspace, "local-missing", [aml_model], config, LocalWebservice.deploy_configuration())
    with pytest.raises(InvalidConfig, match="surely-not-installed-package-xyz.*pip install"):
        service.wait_for_deployment()
    Webservice(aml_workspace, "local-missing").delete()


def test_invalid_deploy_configuration_is_refused():
    with pytest.raises(InvalidConfig, match="port"):
        LocalWebservice.deploy_configuration(port=70000)
    with pytest.raises(InvalidConfig, match="engine"):
        LocalWebservice.deploy_configuration(engine="kvm")
    with pytest.raises(InvalidConfig, match="workers"):
        LocalWebservice.deploy_configuration(workers=0)


DEPLOY_AND_EXIT = textwrap.dedent(
    """
    import sys
    from aml_core import InferenceConfig, Model, Workspace
    from aml_provider_local import LocalWebservice
    ws = Workspace.get(sys.argv[1])
    config = InferenceConfig(entry_script="score.py", source_directory=sys.argv[2])
    service = Model.deploy(ws, "local-lifetime", [Model(ws, "diabetes-ridge")], config,
                           LocalWebservice.deploy_configuration(workers=2))
    service.wait_for_deployment()
    print(service.scoring_uri)
    """
)


def test_a_service_outlives_its_deployer_and_delete_from_another_process_leaves_nothing(
    aml_workspace, aml_model, aml_inference_config
):
    out = subprocess.run(
        [sys.executable, "-c", DEPLOY_AND_EXIT, str(aml_workspace.root), aml_inference_config.source_directory],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr
    uri = out.stdout.strip().splitlines()[-1]
    service = Webservice(aml_workspace, "local-lifetime")
    assert isinstance(service, LocalWebservice)
    assert service.scoring_uri == uri
    assert len(service.run(SAMPLE_INPUT)) == 2
    service_dir = service.record.details["service_dir"]
    assert len(_processes_mentioning(service_dir)) >= 1
    pid = service.record.details["pid"]
    service.delete()
    assert _processes_mentioning(service_dir) == []
    assert [p for p in _live_pids() if os.getpgid(p) == pid] == []
    with pytest.raises(requests.ConnectionError):
        requests.post(uri, json=SAMPLE_INPUT, timeout=5)


def _live_pids() -> list[int]:
    """Running processes (an exited process whose parent has not reaped it yet is not running)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                os.getpgid(int(entry.name))
            except (OSError, ProcessLookupError):
                continue
            if state != "Z":
                pids.append(int(entry.name))
    return pids


def test_a_killed_service_reports_failed_with_the_fix(aml_deploy, aml_inference_config):
    import signal

    service = aml_deploy("local-killed", aml_inference_config)
    os.killpg(service.record.details["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while service.update_deployment_state() != "failed" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert service.state == "failed"
    assert "Redeploy it with overwrite=True" in service.error


def test_reload_picks_up_an_edited_entry_script(aml_deploy, aml_inference_config):
    service = aml_deploy("local-reload", aml_inference_config)
    script = Path(aml_inference_config.entry_script)
    script.write_text(script.read_text().replace("return model.predict(data).tolist()", "return {'edited': True}"))
    service.reload()
    assert service.run(SAMPLE_INPUT) == {"edited": True}


def test_deploy_from_image_is_not_supported_on_the_local_target(tmp_path):
    """The local target stages script and models itself; a packaged image is refused by name."""
    import pytest

    from aml_core.errors import NotSupported
    from aml_core.inference import InferenceConfig
    from aml_core.model import Model
    from aml_core.webservice import Webservice
    from aml_core.workspace import Workspace
    from aml_provider_local import LocalWebservice

    ws = Workspace.create(tmp_path / "ws")
    (tmp_path / "model.txt").write_text("1")
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "score.py").write_text("def init():\n    pass\n\ndef run(raw_data):\n    return 1\n")
    model = Model.register(ws, str(tmp_path / "model.txt"), "m")
    package = Model.package(ws, [model], InferenceConfig(entry_script="score.py", source_directory=str(tmp_path / "app")))
    service = Webservice.deploy_from_image(ws, "local-image", package, LocalWebservice.deploy_configuration())
    with pytest.raises(NotSupported, match="The 'local' target does not support deploy_from_image"):
        service.wait_for_deployment()
