"""Runs the az ml CLI example as a user would: the shell script, with `aml` on PATH."""

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def test_the_az_ml_flow_deploys_scores_and_cleans_up(tmp_path):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("AML_WORKSPACE", None)
    result = subprocess.run(["bash", str(HERE / "run.sh"), str(tmp_path)], capture_output=True, text=True,
                            timeout=300, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Result: [2.0,4.0,6.0]" in result.stdout
    assert "Downloaded: 2" in result.stdout
    # the trap deleted the service: nothing of it is left
    assert not any((tmp_path / "workspace" / "services" / "local").glob("*"))
