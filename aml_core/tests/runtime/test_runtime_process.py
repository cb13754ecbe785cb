"""The process contract: supervisor, workers, state file, exit codes, signals, reloads."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time

import pytest
import requests
from aml_runtime_testkit import write_script, write_spec

pytestmark = pytest.mark.timeout(120)

LIGHT_SCORE = """
import json
import os
import time

VERSION = "{version}"


def init():
    global model_files
    model_files = sorted(os.listdir(os.environ["AZUREML_MODEL_DIR"]))


def run(raw_data):
    payload = json.loads(raw_data) if raw_data else {{}}
    if "sleep" in payload:
        time.sleep(payload["sleep"])
    return {{"version": VERSION, "pid": os.getpid(), "files": model_files}}
"""

INIT_RAISES = """
def init():
    raise RuntimeError("model file is corrupt")


def run(data):
    return data
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purposes
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _wait_dead(pids, timeout=10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [pid for pid in pids if _alive(pid)]
        if not alive:
            return []
        time.sleep(0.05)
    return [pid for pid in pids if _alive(pid)]


@pytest.fixture
def light_model(tmp_path):
    directory = tmp_path / "azureml-models" / "light" / "1"
    directory.mkdir(parents=True)
    (directory / "weights.bin").write_bytes(b"\x00" * 10)
    return directory


def _light_spec(tmp_path, model_dir, version="1", name="app", **extra):
    entry = write_script(tmp_path / name, LIGHT_SCORE.format(version=version))
    return write_spec(tmp_path / name, entry, model_dir, **extra), entry


# --- start-up and failures ------------------------------------------------------------------------


def test_state_file_reports_ready_workers_and_port(start_server, tmp_path, light_model):
    spec, _ = _light_spec(tmp_path, light_model)
    server = start_server(["--workers", "2", "--spec", str(spec)]).wait_ready()
    state = server.state()
    assert state["pid"] == server.proc.pid
    assert state["generation"] == 1 and state["error"] is None and state["reload"] is None
    assert len(state["workers"]) == 2 and all(_alive(pid) for pid in state["workers"])
    assert state["port"] > 0
    pids = set()
    for _ in range(40):
        reply = requests.post(f"{server.url}/score", data="{}", timeout=10).json()
        assert reply["files"] == ["weights.bin"]
        pids.add(reply["pid"])
    assert pids <= set(state["workers"])


def test_init_failure_exits_3_with_traceback_and_model_tree(start_server, tmp_path):
    model_dir = tmp_path / "azureml-models" / "big" / "1"
    model_dir.mkdir(parents=True)
    for index in range(250):
        (model_dir / f"part-{index:03d}.bin").write_bytes(b"")
    entry = write_script(tmp_path / "app", INIT_RAISES)
    spec = write_spec(tmp_path / "app", entry, model_dir)
    server = start_server(["--spec", str(spec)])
    assert server.wait_exit() == 3
    state = server.state()
    assert state["status"] == "failed"
    assert "RuntimeError: model file is corrupt" in state["error"]
    log = server.log()
    assert "Traceback (most recent call last)" in log
    assert "model file is corrupt" in log
    assert "part-000.bin" in log and "part-198.bin" in log
    assert "part-199.bin" not in log  # the directory line plus 199 files = 200 lines
    assert "Output truncated. First 200 lines shown." in log


def test_script_without_init_exits_3(start_server, tmp_path, light_model):
    # the other load errors (no run(), bad signature, import error) are unit-tested in-process
    entry = write_script(tmp_path / "app", "def run(data):\n    return data\n")
    spec = write_spec(tmp_path / "app", entry, light_model)
    server = start_server(["--spec", str(spec)])
    assert server.wait_exit() == 3
    assert "does not have a init() function" in server.state()["error"]
    assert "does not have a init() function" in server.log()


def test_port_in_use_exits_4(start_server, tmp_path, light_model):
    spec, _ = _light_spec(tmp_path, light_model)
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(1)
        port = blocker.getsockname()[1]
        # the fixture passes --port 0 first; argparse lets the later --port win
        server = start_server(["--port", str(port), "--spec", str(spec)])
        assert server.wait_exit() == 4
    assert f"port {port} is already in use" in server.log()
    assert server.state()["status"] == "failed"


# --- signals ------------------------------------------------------------------------------------


def test_sigterm_finishes_in_flight_request_then_exits_0(start_server, tmp_path, light_model):
    spec, _ = _light_spec(tmp_path, light_model)
    server = start_server(["--spec", str(spec)]).wait_ready()
    workers = server.state()["workers"]
    result = {}

    def slow_call():
        result["response"] = requests.post(f"{server.url}/score", json={"sleep": 1.0}, timeout=20)

    caller = threading.Thread(target=slow_call)
    caller.start()
    time.sleep(0.3)
    server.proc.send_signal(signal.SIGTERM)
    caller.join(timeout=20)
    assert result["response"].status_code == 200
    assert server.wait_exit() == 0
    assert server.state()["status"] == "stopped"
    assert _wait_dead(workers) == []


def test_workers_do_not_outlive_a_killed_supervisor(start_server, tmp_path, light_model):
    spec, _ = _light_spec(tmp_path, light_model)
    server = start_server(["--workers", "2", "--spec", str(spec)]).wait_ready()
    workers = server.state()["workers"]
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(timeout=10)
    assert _wait_dead(workers, timeout=10) == []


def test_a_dead_worker_is_replaced(start_server, tmp_path, light_model):
    spec, _ = _light_spec(tmp_path, light_model)
    server = start_server(["--workers", "2", "--spec", str(spec)]).wait_ready()
    victim, survivor = server.state()["workers"]
    os.kill(victim, signal.SIGKILL)
    state = server.wait_for(
        lambda s: s["restarts"] == 1 and len(s["workers"]) == 2 and victim not in s["workers"],
        timeout=30,
    )
    assert survivor in state["workers"]
    # the replacement serves once it is up
    replacement = next(pid for pid in state["workers"] if pid != survivor)
    deadline = time.monotonic() + 30
    seen = set()
    while replacement not in seen and time.monotonic() < deadline:
        seen.add(requests.post(f"{server.url}/score", data="{}", timeout=10).json()["pid"])
    assert replacement in seen


# --- reload ----------------------------------------------------------------------------------------


def test_sighup_reload_under_load_loses_no_request(start_server, tmp_path, light_model):
    spec, entry = _light_spec(tmp_path, light_model, version="old")
    server = start_server(["--workers", "2", "--spec", str(spec)]).wait_ready()
    old_workers = server.state()["workers"]
    answers: list[tuple[float, str]] = []  # (time the request was sent, version)
    errors: list[str] = []
    stop = threading.Event()

    def load():
        deadline = time.monotonic() + 8  # bounded even if the test body fails
        while not stop.is_set() and time.monotonic() < deadline:
            sent = time.monotonic()
            try:
                response = requests.post(f"{server.url}/score", data="{}", timeout=10)
                if response.status_code != 200:
                    errors.append(f"{response.status_code} {response.text}")
                else:
                    answers.append((sent, response.json()["version"]))
            except requests.RequestException as exc:
                errors.append(repr(exc))

    thread = threading.Thread(target=load)
    started = time.monotonic()
    thread.start()
    try:
        time.sleep(0.7)
        entry.write_text(LIGHT_SCORE.format(version="new"))
        server.proc.send_signal(signal.SIGHUP)
        state = server.wait_for(lambda s: (s["reload"] or {}).get("status") == "ready", timeout=20)
        assert _wait_dead(old_workers) == []
        old_gone = time.monotonic()
        time.sleep(max(0.5, 4.0 - (old_gone - started)))
    finally:
        stop.set()
        thread.join(timeout=20)
    assert errors == []
    assert state["generation"] == 2
    assert set(state["workers"]).isdisjoint(old_workers)
    versions = [version for _, version in answers]
    assert versions[0] == "old" and versions[-1] == "new"
    assert {version for sent, version in answers if sent > old_gone} == {"new"}
    assert len(answers) > 50


def test_failed_reload_keeps_the_old_generation(start_server, tmp_path, light_model):
    spec, entry = _light_spec(tmp_path, light_model, version="good")
    server = start_server(["--spec", str(spec)]).wait_ready()
    workers = server.state()["workers"]
    entry.write_text(INIT_RAISES)
    server.proc.send_signal(signal.SIGHUP)
    state = server.wait_for(lambda s: (s["reload"] or {}).get("status") == "failed", timeout=30)
    assert "model file is corrupt" in state["reload"]["error"]
    assert state["generation"] == 1 and state["status"] == "ready"
    assert state["workers"] == workers
    assert requests.post(f"{server.url}/score", data="{}", timeout=10).json()["version"] == "good"
    assert "Reload to generation 2 failed" in server.log()


def test_reload_rereads_the_spec(start_server, tmp_path, light_model):
    spec, _ = _light_spec(tmp_path, light_model, version="a")
    server = start_server(["--spec", str(spec)]).wait_ready()
    other_model = tmp_path / "azureml-models" / "light" / "2"
    other_model.mkdir(parents=True)
    (other_model / "v2.bin").write_bytes(b"")
    _, entry_b = _light_spec(tmp_path, other_model, version="b", name="app_b")
    spec.write_text(
        json.dumps({"entry_script": str(entry_b), "model_dir": str(other_model), "env": {}})
    )
    server.proc.send_signal(signal.SIGHUP)
    server.wait_for(lambda s: (s["reload"] or {}).get("status") == "ready", timeout=30)
    reply = requests.post(f"{server.url}/score", data="{}", timeout=10).json()
    assert reply["version"] == "b" and reply["files"] == ["v2.bin"]


# --- in-image mode (no spec) ----------------------------------------------------------------------


def test_in_image_mode_reads_the_azure_environment(start_server, tmp_path, light_model):
    app_root = tmp_path / "var" / "azureml-app"
    source = app_root / "project"
    write_script(source, "def greet():\n    return 'from a sibling module'\n", name="helpers.py")
    write_script(
        source,
        """
        import os
        import helpers

        def init():
            global greeting
            greeting = helpers.greet()

        def run(data, request_headers=None):
            return {"greeting": greeting, "model_dir": os.environ["AZUREML_MODEL_DIR"],
                    "extra": os.environ.get("EXTRA_SETTING")}
        """,
    )
    env = {
        "AML_APP_ROOT": str(app_root),
        "AZUREML_SOURCE_DIRECTORY": "project",
        "AZUREML_ENTRY_SCRIPT": "score.py",
        "AZUREML_MODEL_DIR": str(light_model),
        "WORKER_COUNT": "2",
        "EXTRA_SETTING": "on",
    }
    server = start_server([], env=env).wait_ready()
    assert len(server.state()["workers"]) == 2
    reply = requests.post(f"{server.url}/score", data="x", timeout=10).json()
    assert reply == {
        "greeting": "from a sibling module",
        "model_dir": str(light_model),
        "extra": "on",
    }


def test_cli_entry_script_and_model_dir(start_server, tmp_path, light_model):
    entry = write_script(tmp_path / "cli", LIGHT_SCORE.format(version="cli"))
    server = start_server(
        ["--entry_script", str(entry), "--model_dir", str(light_model)]
    ).wait_ready()
    reply = requests.post(f"{server.url}/score", data="{}", timeout=10).json()
    assert reply["version"] == "cli" and reply["files"] == ["weights.bin"]


def test_spec_env_and_limits_reach_the_workers(start_server, tmp_path, light_model):
    entry = write_script(
        tmp_path / "envapp",
        """
        import os

        def init():
            pass

        def run(data):
            return os.environ.get("GREETING")
        """,
    )
    spec = write_spec(
        tmp_path / "envapp", entry, light_model, env={"GREETING": "hallo"}, max_body_bytes=10
    )
    server = start_server(["--spec", str(spec)]).wait_ready()
    assert requests.post(f"{server.url}/score", data="{}", timeout=10).json() == "hallo"
    assert requests.post(f"{server.url}/score", data="x" * 11, timeout=10).status_code == 413


def test_bad_spec_is_a_usage_error(start_server, tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"entry_script": "relative/score.py", "model_dir": "/m"}))
    server = start_server(["--spec", str(spec)])
    assert server.wait_exit() == 2
    assert "absolute path" in server.log()
