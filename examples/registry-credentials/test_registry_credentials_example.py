"""Runs the example as a user would: an emulator process, then the script, in fresh processes."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def test_rotation_example_against_a_running_emulator(tmp_path):
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
        result = subprocess.run([sys.executable, str(HERE / "rotate.py")], capture_output=True,
                                text=True, env=env, timeout=120)
    finally:
        emulator.send_signal(signal.SIGTERM)
        assert emulator.wait(timeout=60) == 0
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[1:] == [
        "Login with password2: HTTP 200",
        "Rotated password",
        "Old password: HTTP 401",
        "New password: HTTP 200",
        "password2 still: HTTP 200",
    ]
