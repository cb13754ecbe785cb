"""``aml emulator start|status``: in-process with CliRunner, and as a real long-running process."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from aml_core.credentials import StaticTokenCredential
from aml_core.profiles import CloudProfile
from aml_emulator.cli import emulator
from aml_emulator.cluster.kubelet import HOST_PROCESS_IMAGE

POD_MARKER = "aml-emulator-cli-test-pod"


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
def profile_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "profiles"
    monkeypatch.setenv("AML_PROFILE_DIR", str(directory))
    monkeypatch.delenv("AML_PROFILE", raising=False)
    return directory


def test_the_group_is_registered_for_the_core_cli() -> None:
    found = [ep for ep in entry_points(group="aml.cli") if ep.name == "emulator"]
    assert len(found) == 1
    assert found[0].load() is emulator


def test_status_without_an_emulator_exits_1_naming_the_fix(tmp_path: Path) -> None:
    result = CliRunner().invoke(emulator, ["status", "--state", str(tmp_path)])
    assert result.exit_code == 1
    assert "aml emulator start" in result.output


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_start_prints_endpoints_writes_the_profile_and_stops_on_a_signal(
        tmp_path: Path, profile_dir: Path, signum: int) -> None:
    state = tmp_path / "state"
    profile_file = profile_dir / "ci.json"

    def stop_when_ready() -> None:
        _wait_for(lambda: (state / "run.json").exists(), 30, "the emulator to write run.json")
        os.kill(os.getpid(), signum)  # the command's handler turns this into a clean stop

    stopper = threading.Thread(target=stop_when_ready, daemon=True)
    stopper.start()
    result = CliRunner().invoke(
        emulator, ["start", "--state", str(state), "--profile-name", "ci", "--service", "registry", "--service", "arm"],
    )
    stopper.join(5)
    assert result.exit_code == 0, result.output
    profile = CloudProfile.load("ci")
    assert profile.arm_endpoint in result.output
    assert profile.registry_login_server in result.output
    assert profile.arm_token in result.output  # credentials are printed for the user, on purpose
    assert "Emulator ready" in result.output and "Stopped" in result.output
    assert stat.S_IMODE(profile_file.stat().st_mode) == 0o600
    assert not (state / "run.json").exists()
    assert (state / "secrets.json").exists() and (state / "ca.pem").exists()


def test_long_running_process_serves_until_sigterm_and_leaves_no_child(tmp_path: Path, profile_dir: Path) -> None:
    state = tmp_path / "state"
    env = os.environ | {"AML_PROFILE_DIR": str(profile_dir), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "aml_emulator", "start", "--state", str(state)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        _wait_for(lambda: any("Emulator ready" in line for line in output), 60, "'Emulator ready'")
        profile = CloudProfile.load("emulator")
        assert profile.arm_endpoint in "".join(output)

        # ARM through the real SDK, the registry through plain HTTP, both from the profile
        from azure.mgmt.containerregistry import ContainerRegistryManagementClient

        arm = ContainerRegistryManagementClient(
            StaticTokenCredential(profile.arm_token), profile.subscription_id,
            base_url=profile.arm_endpoint, credential_scopes=profile.credential_scopes,
            connection_verify=profile.connection_verify, retry_total=0,
        )
        creds = arm.registries.list_credentials(profile.resource_group, profile.registry_name)
        registry_url = profile.extra["registry_url"]
        assert requests.get(f"{registry_url}/v2/", auth=(creds.username, creds.passwords[1].value),
                            timeout=10).status_code == 200

        status = subprocess.run([sys.executable, "-m", "aml_emulator", "status", "--state", str(state), "--json"],
                                capture_output=True, text=True, env=env, timeout=30)
        assert status.returncode == 0, status.stderr
        info = json.loads(status.stdout)
        assert info["running"] is True and info["pid"] == proc.pid
        assert all(info["reachable"].values())
        assert profile.arm_token not in status.stdout

        # a pod runs as a child process of the emulator; stopping must take it down too
        from kubernetes import client as k8s, config as k8s_config

        api = k8s.CoreV1Api(k8s_config.new_client_from_config(config_file=profile.kubeconfig))
        api.create_namespaced_pod("default", {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sleeper"},
            "spec": {"containers": [{"name": "main", "image": HOST_PROCESS_IMAGE,
                                     "command": [sys.executable, "-c", f"import time; time.sleep(120)  # {POD_MARKER}"]}]},
        })

        def pod_process() -> int | None:
            for pid in _children(proc.pid):
                try:
                    if POD_MARKER in Path(f"/proc/{pid}/cmdline").read_text():
                        return pid
                except OSError:
                    continue
            return None

        pod_pid = _wait_for(pod_process, 30, "the pod's process")
        api.api_client.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            returncode = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            raise
    reader.join(5)
    assert returncode == 0, proc.stderr.read()
    assert not _alive(pod_pid)
    assert not _children(proc.pid)
    assert (state / "secrets.json").exists() and (state / "registry").is_dir()
    assert (profile_dir / "emulator.json").exists()  # nothing durable removed
    after = subprocess.run([sys.executable, "-m", "aml_emulator", "status", "--state", str(state)],
                           capture_output=True, text=True, env=env, timeout=30)
    assert after.returncode == 1


def test_a_second_start_on_a_running_state_fails_with_conflict_via_the_core_cli(
        tmp_path: Path, profile_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from aml_core.cli import main as aml_main
    from aml_emulator import Emulator

    with Emulator(tmp_path, services=("registry",)):
        status = aml_main(["emulator", "start", "--state", str(tmp_path), "--service", "registry"])
    assert status == 4  # Conflict's exit status
    assert "Another emulator" in capsys.readouterr().err


def test_python_m_reports_errors_with_their_exit_status(tmp_path: Path, profile_dir: Path) -> None:
    from aml_emulator import Emulator

    with Emulator(tmp_path, services=("registry",)):
        result = subprocess.run([sys.executable, "-m", "aml_emulator", "start", "--state", str(tmp_path)],
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 4
    assert "Error (Conflict)" in result.stderr and "Another emulator" in result.stderr


def test_status_through_the_core_cli(tmp_path: Path) -> None:
    from aml_core.cli import main as aml_main

    with pytest.raises(SystemExit) as info:
        aml_main(["emulator", "status", "--state", str(tmp_path)])
    assert info.value.code == 1
