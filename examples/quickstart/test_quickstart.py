"""Runs the quickstart as a user would, in a fresh process."""

import ast
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def test_quickstart_deploys_scores_and_cleans_up(tmp_path):
    result = subprocess.run(
        [sys.executable, str(HERE / "deploy.py"), "--workdir", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    line = next(l for l in result.stdout.splitlines() if l.startswith("Predictions: "))
    predictions = ast.literal_eval(line.removeprefix("Predictions: "))
    assert len(predictions) == 2 and all(isinstance(p, float) for p in predictions)
    assert "Service deleted" in result.stdout
    # Nothing of the service is left running: its folder is gone.
    assert not any((tmp_path / "workspace" / "services" / "local").glob("*"))
