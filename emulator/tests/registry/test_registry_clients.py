"""Real clients nobody in this project wrote: skopeo, podman and buildah against the emulator."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import pytest
import requests

from aml_emulator.registry import RegistryService
from aml_emulator.registry.auth import NULL_GUID
from conftest import need_binary
from registry_images import write_oci_layout


def run(cmd: list[str], env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd[:4])} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def creds(reg: RegistryService, which: str = "password") -> str:
    return f"{reg.credentials.username}:{reg.credentials.passwords[which]}"


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    digests = write_oci_layout(tmp_path / "layout", {"hello": b"#!/bin/sh\necho hello\n",
                                                     "data/model.txt": b"weights" * 100}, "v1")
    return tmp_path / "layout", digests


@pytest.fixture
def engine_env(tmp_path: Path) -> Iterator[tuple[list[str], list[str], dict[str, str]]]:
    """podman and buildah argv prefixes with private storage, plus their environment."""
    # podman refuses a runroot path longer than 50 characters: keep it short.
    runroot = Path(tempfile.mkdtemp(prefix="regrun-", dir="/tmp"))
    conf = tmp_path / "containers.conf"
    conf.write_text('[engine]\nruntime="runc"\ncgroup_manager="cgroupfs"\nevents_logger="file"\n')
    registries = tmp_path / "registries.conf"
    registries.write_text("unqualified-search-registries = []\n")
    auth = tmp_path / "auth.json"
    auth.write_text("{}")
    env = dict(os.environ, CONTAINERS_CONF=str(conf), CONTAINERS_REGISTRIES_CONF=str(registries),
               REGISTRY_AUTH_FILE=str(auth))
    storage = ["--root", str(tmp_path / "root"), "--runroot", str(runroot), "--storage-driver", "vfs"]
    try:
        yield ["podman", *storage], ["buildah", *storage], env
    finally:
        shutil.rmtree(runroot, ignore_errors=True)


def test_skopeo_push_inspect_list_pull_delete(reg, layout, tmp_path, caplog):
    need_binary("skopeo", "skopeo")
    caplog.set_level(logging.DEBUG, logger="aml_emulator.registry")
    src, digests = layout
    ref = f"docker://{reg.login_server}/team/hello"
    run(["skopeo", "copy", "--dest-tls-verify=false", "--dest-creds", creds(reg),
         f"oci:{src}:v1", f"{ref}:v1"])
    # skopeo followed the bearer challenge to the token endpoint with the admin credentials.
    assert "issued access token to amlemulator for repository:team/hello:pull,push" in caplog.text
    inspect = json.loads(run(["skopeo", "inspect", "--tls-verify=false", "--creds", creds(reg, "password2"),
                              f"{ref}:v1"]).stdout)
    assert inspect["Digest"] == digests["manifest"]
    assert inspect["Layers"] == [digests["layer"]]
    raw = run(["skopeo", "inspect", "--raw", "--tls-verify=false", "--creds", creds(reg), f"{ref}:v1"]).stdout
    assert raw.encode() == (src / "blobs" / "sha256" / digests["manifest"][7:]).read_bytes()
    run(["skopeo", "copy", "--dest-tls-verify=false", "--dest-creds", creds(reg),
         f"{ref}:v1", f"{ref}:v2", "--src-tls-verify=false", "--src-creds", creds(reg)])
    tags = json.loads(run(["skopeo", "list-tags", "--tls-verify=false", "--creds", creds(reg), ref]).stdout)
    assert tags["Tags"] == ["v1", "v2"]
    out = tmp_path / "pulled"
    run(["skopeo", "copy", "--src-tls-verify=false", "--src-creds", creds(reg), f"{ref}:v1", f"dir:{out}"])
    assert (out / "manifest.json").read_bytes() == raw.encode()
    assert (out / digests["layer"][7:]).read_bytes() == (src / "blobs" / "sha256" / digests["layer"][7:]).read_bytes()
    run(["skopeo", "delete", "--tls-verify=false", "--creds", creds(reg), f"{ref}:v1"])
    gone = run(["skopeo", "inspect", "--tls-verify=false", "--creds", creds(reg), f"{ref}:v2"], check=False)
    assert gone.returncode != 0  # deleting by digest removed both tags


def test_skopeo_refused_without_or_with_wrong_credentials(reg, layout):
    need_binary("skopeo", "skopeo")
    src, _ = layout
    ref = f"docker://{reg.login_server}/team/hello:v1"
    r = run(["skopeo", "copy", "--dest-tls-verify=false", f"oci:{src}:v1", ref], check=False)
    assert r.returncode != 0 and ("unauthorized" in r.stderr.lower() or "authentication" in r.stderr.lower())
    r = run(["skopeo", "copy", "--dest-tls-verify=false", "--dest-creds",
             f"{reg.credentials.username}:wrong", f"oci:{src}:v1", ref], check=False)
    assert r.returncode != 0
    assert requests.get(f"{reg.url}/v2/_catalog", auth=tuple(creds(reg).split(":", 1)),
                        timeout=10).json() == {"repositories": []}


def test_skopeo_anonymous_pull(layout, tmp_path):
    need_binary("skopeo", "skopeo")
    src, digests = layout
    with RegistryService(anonymous_pull=True) as reg:
        ref = f"docker://{reg.login_server}/pub/hello:v1"
        run(["skopeo", "copy", "--dest-tls-verify=false", "--dest-creds", creds(reg), f"oci:{src}:v1", ref])
        inspect = json.loads(run(["skopeo", "inspect", "--tls-verify=false", "--no-creds", ref]).stdout)
        assert inspect["Digest"] == digests["manifest"]
        r = run(["skopeo", "copy", "--dest-tls-verify=false", f"oci:{src}:v1",
                 f"docker://{reg.login_server}/pub/other:v1"], check=False)
        assert r.returncode != 0  # anonymous push is always refused


def test_podman_login_pull_push_streamed(reg, layout, engine_env):
    need_binary("podman", "podman")
    need_binary("skopeo", "skopeo")
    podman, _, env = engine_env
    src, digests = layout
    run(["skopeo", "copy", "--dest-tls-verify=false", "--dest-creds", creds(reg),
         f"oci:{src}:v1", f"docker://{reg.login_server}/team/hello:v1"])
    run([*podman, "login", "--tls-verify=false", "-u", reg.credentials.username,
         "-p", reg.credentials.passwords["password2"], reg.login_server], env=env)
    image = f"{reg.login_server}/team/hello:v1"
    run([*podman, "pull", "--tls-verify=false", image], env=env)
    run([*podman, "tag", image, f"{reg.login_server}/team/copy:v2"], env=env)
    run([*podman, "push", "--tls-verify=false", f"{reg.login_server}/team/copy:v2"], env=env)
    auth = tuple(creds(reg).split(":", 1))
    assert requests.get(f"{reg.url}/v2/team/copy/tags/list", auth=auth, timeout=10).json()["tags"] == ["v2"]
    run([*podman, "rmi", "-a", "-f"], env=env)
    run([*podman, "pull", "--tls-verify=false", f"{reg.login_server}/team/copy:v2"], env=env)
    images = json.loads(run([*podman, "images", "--format", "json"], env=env).stdout)
    assert any(f"{reg.login_server}/team/copy:v2" in (i.get("Names") or []) for i in images)


def test_podman_login_with_exchanged_refresh_token(reg, layout, engine_env):
    need_binary("podman", "podman")
    podman, _, env = engine_env
    refresh = requests.post(f"{reg.url}/oauth2/exchange", timeout=10, data={
        "grant_type": "access_token", "service": reg.login_server, "tenant": "t",
        "access_token": reg.issue_aad_token(tenant="t")}).json()["refresh_token"]
    run([*podman, "login", "--tls-verify=false", "-u", NULL_GUID, "-p", refresh, reg.login_server], env=env)
    bad = run([*podman, "login", "--tls-verify=false", "-u", NULL_GUID, "-p", refresh[:-4] + "AAAA",
               reg.login_server], env=env, check=False)
    assert bad.returncode != 0


def test_buildah_from_scratch_push(reg, engine_env, tmp_path, caplog):
    need_binary("buildah", "buildah")
    caplog.set_level(logging.DEBUG, logger="aml_emulator.registry")
    _, buildah, env = engine_env
    (tmp_path / "model.txt").write_text("tiny model\n")
    container = run([*buildah, "from", "scratch"], env=env).stdout.strip()
    run([*buildah, "copy", container, str(tmp_path / "model.txt"), "/model.txt"], env=env)
    run([*buildah, "commit", container, "localhost/tiny:1"], env=env)
    # buildah streams the layer in one PATCH without Content-Range (O7).
    run([*buildah, "push", "--tls-verify=false", "--creds", creds(reg), "localhost/tiny:1",
         f"docker://{reg.login_server}/built/tiny:1"], env=env)
    assert "to built/tiny: PATCH of" in caplog.text
    assert "streamed, no Content-Range" in caplog.text
    auth = tuple(creds(reg).split(":", 1))
    r = requests.get(f"{reg.url}/v2/built/tiny/manifests/1", auth=auth, timeout=10,
                     headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status_code == 200
    manifest = r.json()
    for desc in [manifest["config"], *manifest["layers"]]:
        blob = requests.get(f"{reg.url}/v2/built/tiny/blobs/{desc['digest']}", auth=auth, timeout=10)
        assert blob.status_code == 200 and len(blob.content) == desc["size"]


def test_docker_sdk_pull_and_push_through_podman_socket(reg, layout, engine_env):
    """The docker SDK, talking to podman's Docker-compatible API, pulls and pushes."""
    need_binary("podman", "podman")
    need_binary("skopeo", "skopeo")
    docker = pytest.importorskip("docker", reason="the docker SDK is missing: pip install docker")
    import time

    podman, _, env = engine_env
    src, digests = layout
    run(["skopeo", "copy", "--dest-tls-verify=false", "--dest-creds", creds(reg),
         f"oci:{src}:v1", f"docker://{reg.login_server}/team/hello:v1"])
    # The compat API has no tls-verify switch: mark the loopback registry insecure instead.
    Path(env["CONTAINERS_REGISTRIES_CONF"]).write_text(
        f'unqualified-search-registries = []\n[[registry]]\nlocation = "{reg.login_server}"\ninsecure = true\n')
    sockdir = Path(tempfile.mkdtemp(prefix="regdk-", dir="/tmp"))
    sock = sockdir / "podman.sock"
    proc = subprocess.Popen([*podman, "system", "service", "--time=0", f"unix://{sock}"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not sock.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "podman system service did not start"
            time.sleep(0.05)
        client = docker.DockerClient(base_url=f"unix://{sock}", timeout=60)
        auth = {"username": reg.credentials.username, "password": reg.credentials.passwords["password"]}
        image = client.images.pull(f"{reg.login_server}/team/hello", tag="v1", auth_config=auth)
        assert image.id == digests["config"]
        image.tag(f"{reg.login_server}/team/sdk", "v2")
        out = client.images.push(f"{reg.login_server}/team/sdk", tag="v2", auth_config=auth)
        assert "digest: sha256:" in out
        tags = requests.get(f"{reg.url}/v2/team/sdk/tags/list", auth=tuple(creds(reg).split(":", 1)),
                            timeout=10).json()
        assert tags["tags"] == ["v2"]
        wrong = {"username": reg.credentials.username, "password": "wrong"}
        image.tag(f"{reg.login_server}/team/denied", "v1")
        try:
            out = client.images.push(f"{reg.login_server}/team/denied", tag="v1", auth_config=wrong)
        except docker.errors.APIError as exc:  # some engine versions raise, others report in the stream
            out = str(exc)
        assert "invalid username or password" in out
        assert requests.get(f"{reg.url}/v2/team/denied/tags/list", auth=tuple(creds(reg).split(":", 1)),
                            timeout=10).status_code == 404
        client.close()
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        shutil.rmtree(sockdir, ignore_errors=True)
