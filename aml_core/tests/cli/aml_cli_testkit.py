"""Helpers for the CLI tests that run the installed ``aml`` console script as a real process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

AML_SCRIPT = Path(sys.executable).with_name("aml")


def run_script(*args, env=None, cwd=None, timeout=120) -> subprocess.CompletedProcess:
    """The installed ``aml`` console script, as a user's shell would run it."""
    assert AML_SCRIPT.is_file(), f"the aml console script is not installed at {AML_SCRIPT}"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("AML_") and k not in ("COLUMNS", "LINES")}
    full_env.update(env or {})
    return subprocess.run(
        [str(AML_SCRIPT), *map(str, args)], capture_output=True, text=True, env=full_env, cwd=cwd, timeout=timeout,
    )
