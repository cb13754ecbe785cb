"""What ``make test`` does around the suite (issue 10, item 8): the system-package script
says what it installs and why and keeps apt's output in a log; environment skips fail
under ``AML_FAIL_ON_ENV_SKIP=1`` while capability skips stay skips."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "install-system-deps.sh"

#: stand-ins for dpkg, id and apt-get, so the script's own logic runs without touching the system
SHIMS = {
    "dpkg": """#!/bin/sh
        for p in $FAKE_MISSING; do [ "$p" = "$2" ] && exit 1; done
        exit 0
        """,
    "id": """#!/bin/sh
        echo "${FAKE_UID:-0}"
        """,
    "apt-get": """#!/bin/sh
        echo "apt-get $*" >> "$FAKE_CALLS"
        case "$*" in
          *update*) echo "Get:1 http://deb.debian.org bookworm InRelease" ;;
          *" -s "*) echo "Inst login [1:4.13] (1:4.14 Debian)"; echo "Inst uidmap (1:4.14 Debian)"
                    for p in $FAKE_MISSING; do echo "Inst $p (1.0 Debian)"; done ;;
          *) echo "Unpacking podman ..."; echo "Setting up podman ..."
             [ -n "$FAKE_APT_FAIL" ] && { echo "E: Sub-process /usr/bin/dpkg returned an error code (1)"; exit 100; }
             exit 0 ;;
        esac
        """,
}


@pytest.fixture
def run_script(tmp_path):
    shims = tmp_path / "bin"
    shims.mkdir()
    for name, body in SHIMS.items():
        (shims / name).write_text(textwrap.dedent(body))
        (shims / name).chmod(0o755)
    calls = tmp_path / "apt-calls"
    calls.touch()

    def run(missing: str, **env: str) -> subprocess.CompletedProcess:
        environment = {**os.environ, "PATH": f"{shims}:{os.environ['PATH']}", "FAKE_MISSING": missing,
                       "FAKE_CALLS": str(calls), "AML_SYSTEM_DEPS_LOG": str(tmp_path / "deps.log"), **env}
        return subprocess.run(["bash", str(SCRIPT)], env=environment, capture_output=True, text=True, timeout=60)

    run.calls = calls
    run.log = tmp_path / "deps.log"
    return run


def test_the_script_says_which_packages_and_why_before_installing_only_those(run_script):
    done = run_script("podman umoci")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "install-system-deps: 2 Debian package(s) the tests need are missing:"
    assert lines[1].split()[0] == "podman" and "container engine" in lines[1]
    assert lines[2].split()[0] == "umoci" and "OCI image layouts" in lines[2]
    assert "upgrades login" in done.stdout and "adds 1 package(s)" in done.stdout
    assert "Unpacking" not in done.stdout + done.stderr and "Get:1" not in done.stdout + done.stderr
    assert "Unpacking podman" in run_script.log.read_text()
    installs = [c for c in run_script.calls.read_text().splitlines() if " -y " in c]
    assert installs == ["apt-get install -y -q --no-install-recommends podman umoci"]


def test_an_apt_failure_names_the_log_and_shows_its_end(run_script):
    done = run_script("umoci", FAKE_APT_FAIL="1")
    assert done.returncode == 1
    assert f"apt's output is in {run_script.log}" in done.stderr
    assert "returned an error code" in done.stderr


def test_nothing_missing_installs_nothing(run_script):
    done = run_script("")
    assert done.returncode == 0 and "are installed" in done.stdout
    assert run_script.calls.read_text() == ""


def test_not_root_prints_the_command_and_installs_nothing(run_script):
    done = run_script("skopeo", FAKE_UID="1000")
    assert done.returncode == 0
    assert "sudo apt-get install --no-install-recommends skopeo" in done.stderr
    assert run_script.calls.read_text() == ""


def test_every_tool_a_test_skips_for_is_one_the_script_installs():
    """The skip reasons that name a Debian package name one of the script's packages."""
    script = SCRIPT.read_text()
    for tool in ("podman", "skopeo", "buildah", "docker-registry", "debootstrap", "umoci", "runc"):
        assert f'"{tool}|' in script, tool


SKIPPING_TESTS = '''
import pytest

def test_env():
    pytest.skip("skopeo is not installed (apt-get install skopeo)")

def test_capability():
    pytest.skip("unsupported: target 'x' does not declare capability 'scale'")

def test_not_applicable():
    pytest.skip("not applicable: target 'x' declares 'scale'; its own contract covers it")

@pytest.mark.xfail(reason="known")
def test_xfail():
    assert False
'''


@pytest.mark.parametrize(("flag", "expected"), [("1", "1 failed, 2 skipped, 1 xfailed"), ("", "3 skipped, 1 xfailed")])
def test_environment_skips_fail_under_the_flag_and_capability_skips_do_not(tmp_path, flag, expected):
    (tmp_path / "test_skips.py").write_text(SKIPPING_TESTS)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env["AML_FAIL_ON_ENV_SKIP"] = flag
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "aml_contract_tests.skips", "-p", "no:cacheprovider",
                           "-p", "no:randomly", "-q", "-n", "0", "--rootdir", str(tmp_path), str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert expected in done.stdout, done.stdout
    if flag:
        assert "AML_FAIL_ON_ENV_SKIP=1: an environment skip fails this run" in done.stdout
        assert "skopeo is not installed" in done.stdout


def _documentation_pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def test_every_block_left_unrun_says_why():
    """A ``python notest`` fence needs ``<!-- notest: reason -->`` right above it."""
    from markdown_it import MarkdownIt

    unexplained = []
    for page in _documentation_pages():
        tokens = MarkdownIt("commonmark").parse(page.read_text())
        for index, token in enumerate(tokens):
            if token.type == "fence" and "notest" in token.info.split():
                before = tokens[index - 1] if index else None
                if not (before is not None and before.type == "html_block"
                        and before.content.strip().startswith("<!-- notest:")):
                    unexplained.append(f"{page.relative_to(ROOT)}:{token.map[0] + 1}")
    assert unexplained == [], "python notest blocks without a <!-- notest: reason --> comment above them"


def test_the_readme_shows_the_quickstart_files_as_they_are():
    """The README's score.py and requirements.txt blocks are the files its snippets run with."""
    from markdown_it import MarkdownIt

    fences = [t.content for t in MarkdownIt("commonmark").parse((ROOT / "README.md").read_text()) if t.type == "fence"]
    quickstart = ROOT / "examples" / "quickstart"
    score = next(f for f in fences if f.startswith("# examples/quickstart/score.py\n"))
    assert score.split("\n", 1)[1] == (quickstart / "score.py").read_text()
    assert (quickstart / "requirements.txt").read_text() in fences
