"""Runs the ACI quickstart as a user would: an emulator process, then the script, in fresh processes."""

import ast
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def test_aci_quickstart_deploys_scores_and_cleans_up(tmp_path):
    env = os.environ | {"AML_PROFILE_DIR": str(tmp_path / "profiles"), "PYTHONUNBUFFERED": "1"}
    env.pop("AML_PROFILE", None)
    emulator = subprocess.Popen(
        [sys.executable, "-m", "aml_emulator", "start", "--state", str(tmp_path / "state"),
         "--service", "registry", "--service", "arm"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(emulator.stdout), daemon=True).start()
    try:
        deadline = time.monotonic() + 60
        while not any("Emulator ready" in line for line in lines):
            assert emulator.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, "the emulator did not start in 60 s"
            time.sleep(0.1)
        result = subprocess.run([sys.executable, str(HERE / "deploy.py"), "--workdir", str(tmp_path / "work")],
                                capture_output=True, text=True, env=env, timeout=300)
    finally:
        emulator.send_signal(signal.SIGTERM)
        assert emulator.wait(timeout=60) == 0
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "State: Healthy" in out
    assert "Scoring URI: http://127.0.0.1:" in out
    line = next(l for l in out.splitlines() if l.startswith("Predictions: "))
    predictions = ast.literal_eval(line.removeprefix("Predictions: "))
    assert len(predictions) == 2 and all(isinstance(p, float) for p in predictions)
    assert "Keys: 2 (primary is 32 characters)" in out
    assert "Service deleted" in out
