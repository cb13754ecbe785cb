"""Runs the example as a user would: an emulator process, then the script, in fresh processes."""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def test_rotation_example_against_a_running_emulator(emulator_process):
    env = emulator_process("registry", "arm")
    result = subprocess.run([sys.executable, str(HERE / "rotate.py")], capture_output=True,
                            text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[1:] == [
        "Login with password2: HTTP 200",
        "Rotated password",
        "Old password: HTTP 401",
        "New password: HTTP 200",
        "password2 still: HTTP 200",
    ]
