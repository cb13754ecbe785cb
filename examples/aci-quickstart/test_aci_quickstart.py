"""Runs the ACI quickstart as a user would: an emulator process, then the script, in fresh processes."""

import ast
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def test_aci_quickstart_deploys_scores_and_cleans_up(tmp_path, emulator_process):
    env = emulator_process("registry", "arm")
    result = subprocess.run([sys.executable, str(HERE / "deploy.py"), "--workdir", str(tmp_path / "work")],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "State: Healthy" in out
    assert "Scoring URI: http://127.0.0.1:" in out
    line = next(l for l in out.splitlines() if l.startswith("Predictions: "))
    predictions = ast.literal_eval(line.removeprefix("Predictions: "))
    assert len(predictions) == 2 and all(isinstance(p, float) for p in predictions)
    assert "Keys: 2 (primary is 32 characters)" in out
    assert "Service deleted" in out
