"""``python -m aml_core.frontdoor`` serves the front door (how it runs as a pod)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import requests


def test_the_module_serves_with_the_token_from_the_file(tmp_path):
    token_file = tmp_path / "admin"
    token_file.write_text("s3cret-admin\n")
    proc = subprocess.Popen([sys.executable, "-m", "aml_core.frontdoor", "--host", "127.0.0.1",
                             "--port", "0", "--admin-token-file", str(token_file)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
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
        assert requests.get(url + "/-/services", headers={"Authorization": "Bearer s3cret-admin"},
                            timeout=5).json() == {"services": []}
        assert requests.get(url + "/-/services", headers={"Authorization": "Bearer other"},
                            timeout=5).status_code == 401
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
    assert proc.returncode in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after a clean shutdown


def test_a_missing_token_file_is_a_usage_error(tmp_path):
    result = subprocess.run([sys.executable, "-m", "aml_core.frontdoor", "--admin-token-file",
                             str(tmp_path / "nope")], capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 2 and "cannot read --admin-token-file" in result.stderr
