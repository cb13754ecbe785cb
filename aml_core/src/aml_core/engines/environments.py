"""Materialise an image's environment on this machine, once per environment hash.

The current interpreter is used when it has the image's Python version and already
satisfies every requirement. Otherwise a virtual environment is created under
``<cache>/envs/<hash>`` with ``uv`` (when found) or ``python -m venv`` + pip, under a file
lock so concurrent engines build it once; a ``.complete`` marker is written last, so an
interrupted build is thrown away and redone rather than used half-made.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from aml_core.errors import ProvisioningFailed
from aml_core.oci.image import EnvironmentSpec
from aml_core.oci.requirements import unmet
from aml_core.oci.unpack import file_lock

COMPLETE = ".complete"


def current_python_satisfies(env: EnvironmentSpec) -> bool:
    """True when this interpreter has the right version and every requirement installed."""
    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if env.python_version and env.python_version.split(".")[:2] != here.split("."):
        return False
    return not unmet(env.requirements())


def find_uv() -> str | None:
    found = shutil.which("uv")
    if found:
        return found
    beside = Path(sys.executable).with_name("uv")  # the dev venv ships uv next to python
    return str(beside) if beside.exists() else None


def materialise(env: EnvironmentSpec, cache_dir: Path, *, allow_current: bool = True) -> str:
    """The path of a Python interpreter that satisfies ``env``.

    :raises ProvisioningFailed: installing the requirements failed (the message has the
        installer's output).
    """
    if allow_current and current_python_satisfies(env):
        return sys.executable
    root = Path(cache_dir) / "envs"
    venv = root / env.content_hash()
    python = venv / "bin" / "python"
    if (venv / COMPLETE).exists():
        return str(python)
    with file_lock(root / f"{env.content_hash()}.lock"):
        if (venv / COMPLETE).exists():
            return str(python)
        shutil.rmtree(venv, ignore_errors=True)  # leftovers of an interrupted build
        uv = find_uv()
        requirements = list(env.requirements())
        if uv:
            steps = [
                [
                    uv,
                    "venv",
                    "--quiet",
                    "--python",
                    env.python_version or sys.executable,
                    str(venv),
                ],
                [uv, "pip", "install", "--quiet", "--python", str(python), *requirements],
            ]
        else:
            steps = [
                [sys.executable, "-m", "venv", str(venv)],
                [str(python), "-m", "pip", "install", "--quiet", *requirements],
            ]
        for step in steps:
            done = subprocess.run(
                step, capture_output=True, text=True, env={**os.environ, "VIRTUAL_ENV": ""}
            )
            if done.returncode != 0:
                shutil.rmtree(venv, ignore_errors=True)
                raise ProvisioningFailed(
                    f"could not build the environment {env.name!r} ({' '.join(step[:3])} ... failed):\n"
                    f"{(done.stderr or done.stdout)[-3000:]}\nCheck the requirements "
                    f"{requirements} and that the package index is reachable."
                )
        (venv / COMPLETE).write_text(env.to_label())
    return str(python)
