"""Runs the example as a user would: an emulator process, the hub created through ARM, the
emulated edge device started with `aml iot add-edge-device`, the deployment, and the
predictions read back with `aml iot monitor-events`, each in a fresh process."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
AML = str(Path(sys.executable).parent / "aml")


def test_iotedge_example_end_to_end(tmp_path):
    env = os.environ | {"AML_PROFILE_DIR": str(tmp_path / "profiles"), "PYTHONUNBUFFERED": "1",
                        "REQUESTS_CA_BUNDLE": str(tmp_path / "state" / "ca.pem")}
    env.pop("AML_PROFILE", None)
    env.pop("AML_IOTHUB_CONNECTION_STRING", None)
    emulator = subprocess.Popen(
        [sys.executable, "-m", "aml_emulator", "start", "--state", str(tmp_path / "state"),
         "--service", "registry", "--service", "arm", "--service", "iothub"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(emulator.stdout), daemon=True).start()
    try:
        deadline = time.monotonic() + 60
        while not any("Emulator ready" in line for line in lines):
            assert emulator.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, "the emulator did not start in 60 s"
            time.sleep(0.1)
        hub = subprocess.run([sys.executable, str(HERE / "create_hub.py"), "examplehub"], capture_output=True,
                             text=True, env=env, timeout=120)
        assert hub.returncode == 0, hub.stdout + hub.stderr
        env["AML_IOTHUB_CONNECTION_STRING"] = hub.stdout.strip()
        added = subprocess.run([AML, "iot", "add-edge-device", "edge-device-1"], capture_output=True, text=True,
                               env=env, timeout=120)
        assert added.returncode == 0, added.stdout + added.stderr
        deployed = subprocess.run([sys.executable, str(HERE / "deploy.py"), "--hub", "examplehub",
                                   "--device", "edge-device-1", "--readings", "5"],
                                  capture_output=True, text=True, env={k: v for k, v in env.items()
                                                                        if k != "AML_IOTHUB_CONNECTION_STRING"},
                                  timeout=600)
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        assert "State: Healthy" in deployed.stdout
        assert "'anomaly': True" in deployed.stdout
        deadline = time.monotonic() + 120
        while True:
            monitored = subprocess.run([AML, "iot", "monitor-events", "--module", "machinelearningmodule"],
                                       capture_output=True, text=True, env=env, timeout=120)
            assert monitored.returncode == 0, monitored.stdout + monitored.stderr
            predictions = [json.loads(json.loads(line)["body"]) for line in monitored.stdout.splitlines()]
            if len([p for p in predictions if p["n"] != -1]) >= 5 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert [p["n"] for p in predictions if p["n"] != -1] == [0, 1, 2, 3, 4]
    finally:
        emulator.send_signal(signal.SIGTERM)
        assert emulator.wait(timeout=60) == 0
