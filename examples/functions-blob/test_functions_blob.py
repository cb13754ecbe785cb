"""Runs the blob-trigger example as a user would: an emulator process with storage, then the script."""

import ast
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def test_functions_blob_example_scores_an_uploaded_blob(tmp_path):
    env = os.environ | {"AML_PROFILE_DIR": str(tmp_path / "profiles"), "PYTHONUNBUFFERED": "1"}
    env.pop("AML_PROFILE", None)
    emulator = subprocess.Popen(
        [sys.executable, "-m", "aml_emulator", "start", "--state", str(tmp_path / "state"),
         "--service", "registry", "--service", "arm", "--service", "storage"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(emulator.stdout), daemon=True).start()
    try:
        deadline = time.monotonic() + 90
        while not any("Emulator ready" in line for line in lines):
            assert emulator.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, "the emulator did not start in 90 s"
            time.sleep(0.1)
        result = subprocess.run([sys.executable, str(HERE / "deploy.py"), "--workdir", str(tmp_path / "work")],
                                capture_output=True, text=True, env=env, timeout=300)
    finally:
        emulator.send_signal(signal.SIGTERM)
        assert emulator.wait(timeout=60) == 0
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "State: Healthy" in out and "Package location: 127.0.0.1:" in out
    line = next(l for l in out.splitlines() if l.startswith("Predictions: "))
    assert ast.literal_eval(line.removeprefix("Predictions: ")) == [5.5, 13.0]  # 0.5*x1 - x2 + 2*x3 + 1 per row
    assert "Service deleted" in out
