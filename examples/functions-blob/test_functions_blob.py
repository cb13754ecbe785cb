"""Runs the blob-trigger example as a user would: an emulator process with storage, then the script."""

import ast
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def test_functions_blob_example_scores_an_uploaded_blob(tmp_path, emulator_process):
    env = emulator_process("registry", "arm", "storage", ready_within=90)  # Azurite starts too
    result = subprocess.run([sys.executable, str(HERE / "deploy.py"), "--workdir", str(tmp_path / "work")],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "State: Healthy" in out and "Package location: 127.0.0.1:" in out
    line = next(l for l in out.splitlines() if l.startswith("Predictions: "))
    assert ast.literal_eval(line.removeprefix("Predictions: ")) == [5.5, 13.0]  # 0.5*x1 - x2 + 2*x3 + 1 per row
    assert "Service deleted" in out
