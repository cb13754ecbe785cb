"""Runs the App Service example as a user would: an emulator process, then the script."""

import ast
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def test_appservice_example_packages_deploys_updates_and_cleans_up(tmp_path, emulator_process):
    env = emulator_process("registry", "arm")
    result = subprocess.run([sys.executable, str(HERE / "deploy.py"), "--workdir", str(tmp_path / "work")],
                            capture_output=True, text=True, env=env, timeout=420)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "Image: 127.0.0.1:" in out and "/diabetes:1" in out
    assert "State: Healthy" in out
    line = next(l for l in out.splitlines() if l.startswith("Predictions: "))
    predictions = ast.literal_eval(line.removeprefix("Predictions: "))
    assert len(predictions) == 2 and all(isinstance(p, float) for p in predictions)
    updated = next(l for l in out.splitlines() if l.startswith("Updated: "))
    assert updated.startswith("Updated: Healthy, predictions ") and str(predictions) in updated
    assert "Log stream: reachable" in out
    assert "Service deleted" in out
