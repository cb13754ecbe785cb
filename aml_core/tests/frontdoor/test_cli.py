"""``python -m aml_core.frontdoor`` serves the front door (how it runs as a pod)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import requests


def _serve_and_check(args: list[str], token: str, env: dict | None = None) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "aml_core.frontdoor", "--host", "127.0.0.1", "--port", "0", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env=env)
    try:
        line = proc.stdout.readline()
        match = re.search(r":(\d+)$", line.strip())
        assert match, (line, proc.stderr.read() if proc.poll() is not None else "")
        url = f"http://127.0.0.1:{match.group(1)}"
        deadline = time.monotonic() + 10
        while True:
            try:
                assert requests.get(url + "/", timeout=2).status_code == 200
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert requests.get(url + "/-/services", headers={"Authorization": f"Bearer {token}"},
                            timeout=5).json() == {"services": []}
        assert requests.get(url + "/-/services", headers={"Authorization": "Bearer other"},
                            timeout=5).status_code == 401
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
    assert proc.returncode == 0  # a clean shutdown on SIGTERM, as a pod's stop asks for


def test_the_module_serves_with_the_token_from_the_file(tmp_path):
    token_file = tmp_path / "admin"
    token_file.write_text("s3cret-admin\n")
    _serve_and_check(["--admin-token-file", str(token_file)], "s3cret-admin")


def test_the_token_can_come_from_the_environment():
    _serve_and_check([], "env-admin", env={**os.environ, "AML_FRONTDOOR_ADMIN_TOKEN": "env-admin"})


def test_a_missing_token_file_is_a_usage_error(tmp_path):
    result = subprocess.run([sys.executable, "-m", "aml_core.frontdoor", "--admin-token-file",
                             str(tmp_path / "nope")], capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 2 and "cannot read --admin-token-file" in result.stderr
    env = {k: v for k, v in os.environ.items() if k != "AML_FRONTDOOR_ADMIN_TOKEN"}
    result = subprocess.run([sys.executable, "-m", "aml_core.frontdoor"], capture_output=True, text=True,
                            timeout=30, check=False, env=env)
    assert result.returncode == 2 and "AML_FRONTDOOR_ADMIN_TOKEN" in result.stderr
