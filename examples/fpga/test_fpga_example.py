"""Runs the FPGA example as a user would: an emulator process, then the script, in fresh
processes."""

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def test_fpga_example_converts_deploys_to_an_fpga_pool_and_scores_digits(tmp_path):
    env = os.environ | {"AML_PROFILE_DIR": str(tmp_path / "profiles"), "PYTHONUNBUFFERED": "1"}
    env.pop("AML_PROFILE", None)
    emulator = subprocess.Popen(
        [sys.executable, "-m", "aml_emulator", "start", "--state", str(tmp_path / "state")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(emulator.stdout), daemon=True).start()
    try:
        deadline = time.monotonic() + 60
        while not any("Emulator ready" in line for line in lines):
            assert emulator.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, "the emulator did not start in 60 s"
            time.sleep(0.1)
        result = subprocess.run(
            [sys.executable, str(HERE / "deploy.py"), "--workdir", str(tmp_path / "work")],
            capture_output=True, text=True, env=env, timeout=600)
    finally:
        emulator.send_signal(signal.SIGTERM)
        assert emulator.wait(timeout=60) == 0, "".join(lines)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    match = re.search(r"Accuracy: ([\d.]+) on the accelerator \(MSFP16\), ([\d.]+) in float", out)
    assert match, out
    accelerated, reference = float(match.group(1)), float(match.group(2))
    assert reference > 0.9
    assert abs(accelerated - reference) <= 0.005 + 1e-9  # the MSFP16 target: within 0.5 points
    # the PNG, decoded and preprocessed by the service, scores as the tensor did
    assert re.search(r"Image of a \d scored as (\d) \(as a tensor: \1\)", out), out
    assert "Converted model: digits-cnn.accel:1 (MSFP16)" in out
    assert re.search(r"Service digits-fpga: Healthy at http://", out), out
    assert "Service deleted" in out
