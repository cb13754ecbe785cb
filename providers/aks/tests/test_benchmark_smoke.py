"""The AKS lifecycle benchmark runs end to end in one round (its times are not checked)."""

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "aks_lifecycle.py"


def test_aks_lifecycle_benchmark_one_round(tmp_path):
    env = os.environ | {"AML_PROFILE_DIR": str(tmp_path / "profiles")}
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--rounds", "1", "--json", str(tmp_path / "out.json")],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for row in (
        "compute create -> Succeeded",
        "compute attach -> Succeeded",
        "deploy call returned",
        "wait_for_deployment done",
        "first 200 score",
    ):
        assert row in result.stdout, result.stdout
    data = json.loads((tmp_path / "out.json").read_text())
    assert len(data["rounds"]) == 1
    assert sorted(data["rounds"][0]["order"]) == ["aks", "local"]
    assert data["summary"]["ratio_first_score"] is not None
    assert "cleanup" not in result.stderr, result.stderr
