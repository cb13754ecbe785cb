"""Runs the FPGA example as a user would: an emulator process, then the script, in fresh
processes."""

import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def test_fpga_example_converts_deploys_to_an_fpga_pool_and_scores_digits(tmp_path, emulator_process):
    env = emulator_process()
    result = subprocess.run(
        [sys.executable, str(HERE / "deploy.py"), "--workdir", str(tmp_path / "work")],
        capture_output=True, text=True, env=env, timeout=600)
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
