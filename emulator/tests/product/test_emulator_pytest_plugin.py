"""The opt-in pytest plugin: one emulator per session, reset between tests, profile in place."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

USER_TESTS = '''
import hashlib
import requests
from aml_core.profiles import CloudProfile

pytest_plugins = ["aml_emulator.pytest_plugin"]
DATA = b"pushed by the first test"
DIGEST = "sha256:" + hashlib.sha256(DATA).hexdigest()

def _auth(emu):
    return (emu.registry.credentials.username, emu.registry.credentials.passwords["password"])

def test_1_push(aml_emulator):
    started = requests.post(f"{aml_emulator.registry.url}/v2/demo/blobs/uploads/", auth=_auth(aml_emulator), timeout=10)
    location = started.headers["Location"]
    location = aml_emulator.registry.url + location if location.startswith("/") else location
    sep = "&" if "?" in location else "?"
    assert requests.put(f"{location}{sep}digest={DIGEST}", data=DATA, auth=_auth(aml_emulator), timeout=10).status_code == 201

def test_2_state_did_not_leak(aml_emulator):
    url = f"{aml_emulator.registry.url}/v2/demo/blobs/{DIGEST}"
    assert requests.head(url, auth=_auth(aml_emulator), timeout=10).status_code == 404

def test_3_profile_is_where_code_looks(aml_cloud_profile, aml_emulator):
    assert CloudProfile.load() == aml_cloud_profile
    assert aml_cloud_profile.arm_endpoint == aml_emulator.arm.url
'''


def test_plugin_resets_between_tests_and_places_the_profile(tmp_path: Path) -> None:
    (tmp_path / "test_user.py").write_text(textwrap.dedent(USER_TESTS))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
         "-c", "/dev/null", str(tmp_path / "test_user.py")],
        capture_output=True, text=True, timeout=180, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout
