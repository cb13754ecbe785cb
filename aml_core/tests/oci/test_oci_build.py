"""The pure-Python image builder: deterministic layers, config, layout and archives."""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

import attrs
import pytest
from aml_core.errors import InvalidConfig, NotFound
from aml_core.oci import (
    AppSpec,
    EnvironmentSpec,
    ModelFiles,
    PackageSpec,
    build_image,
    parse_layout_location,
    read_layout,
    rebase,
    remove_from_layout,
    write_docker_archive,
    write_layout,
)
from aml_core.oci.image import DEFAULT_PYTHON_VERSION
from aml_core.oci.media import OCI_MANIFEST, sha256_digest


def make_app(root: Path) -> Path:
    src = root / "src"
    (src / "pkg").mkdir(parents=True)
    (src / "score.py").write_text("def init():\n    pass\n\ndef run(raw):\n    return raw\n")
    (src / "pkg" / "helper.py").write_text("X = 1\n")
    (src / "tool.sh").write_text("#!/bin/sh\necho hi\n")
    (src / "tool.sh").chmod(0o775)
    (src / "__pycache__").mkdir()
    (src / "__pycache__" / "score.cpython-311.pyc").write_bytes(b"junk")
    return src


def make_spec(root: Path, *, models=None, **kw) -> PackageSpec:
    src = make_app(root) if not (root / "src").exists() else root / "src"
    if models is None:
        (root / "model.txt").write_text("weights")
        models = [ModelFiles.from_path("mymodel", 1, root / "model.txt")]
    return PackageSpec(
        app=AppSpec(entry_script="score.py", source_directory=src),
        environment=EnvironmentSpec(
            name="env",
            python_version="3.11",
            pip_requirements=["numpy>=1.20"],
            environment_variables={"GREETING": "hello"},
        ),
        models=models,
        runtime_source=root / "fake_runtime",
        **kw,
    )


@pytest.fixture
def spec(tmp_path: Path) -> PackageSpec:
    (tmp_path / "fake_runtime" / "runtime").mkdir(parents=True)
    (tmp_path / "fake_runtime" / "__init__.py").write_text("")
    (tmp_path / "fake_runtime" / "runtime" / "__main__.py").write_text("print('runtime')\n")
    return make_spec(tmp_path)


def layer_members(blob) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob.read()))) as tar:
        return tar.getmembers()


def test_same_inputs_give_the_same_digest_regardless_of_mtime_and_mode(spec, tmp_path):
    first = build_image(spec)
    # touch every file, loosen permissions: content is unchanged, so the digest must be too
    for path in (tmp_path / "src").rglob("*"):
        os.utime(path, (time.time() + 1000, time.time() + 1000))
    (tmp_path / "src" / "score.py").chmod(0o664)
    second = build_image(spec)
    assert first.digest == second.digest
    assert [b.digest for b in first.layers] == [b.digest for b in second.layers]


def test_changed_content_changes_only_its_layer(spec, tmp_path):
    before = build_image(spec)
    (tmp_path / "src" / "score.py").write_text(
        "def init():\n    pass\n\ndef run(raw):\n    return 1\n"
    )
    after = build_image(spec)
    assert before.digest != after.digest
    assert before.layers[:-1] == after.layers[:-1]  # runtime and model layers reused
    assert before.layers[-1].digest != after.layers[-1].digest


def test_layers_are_normalised_tars(spec):
    image = build_image(spec)
    for blob in image.layers:
        raw = blob.read()
        assert raw[4:8] == b"\x00\x00\x00\x00", "gzip header mtime must be 0"
        members = layer_members(blob)
        names = [m.name for m in members]
        assert names == sorted(names)
        for m in members:
            assert (m.mtime, m.uid, m.gid, m.uname, m.gname) == (0, 0, 0, "", "")
            assert m.mode in (0o755, 0o644, 0o777)
            assert not m.name.startswith("/") and ".." not in m.name.split("/")
    app = {m.name: m for m in layer_members(image.layers[-1])}
    assert app["var/azureml-app/src/tool.sh"].mode == 0o755
    assert app["var/azureml-app/src/score.py"].mode == 0o644
    assert not any("__pycache__" in n for n in app)
    # parent folders are explicit entries
    assert app["var/azureml-app"].isdir() and app["var/azureml-app/src/pkg"].isdir()


def test_diff_ids_match_uncompressed_layers(spec):
    image = build_image(spec)
    diff_ids = image.config_json()["rootfs"]["diff_ids"]
    assert diff_ids == [sha256_digest(gzip.decompress(b.read())) for b in image.layers]
    manifest = image.manifest_json()
    assert manifest["mediaType"] == OCI_MANIFEST
    assert manifest["config"]["digest"] == image.config.digest == sha256_digest(image.config.read())


def test_config_runs_the_scoring_runtime_with_azureml_variables(spec):
    cfg = build_image(spec).config_json()["config"]
    env = dict(item.split("=", 1) for item in cfg["Env"])
    assert env["AZUREML_MODEL_DIR"] == "/var/azureml-app/azureml-models/mymodel/1"
    assert env["AZUREML_SOURCE_DIRECTORY"] == "/var/azureml-app/src"
    assert env["AZUREML_ENTRY_SCRIPT"] == "score.py"
    assert env["AML_APP_ROOT"] == "/var/azureml-app"
    assert env["GREETING"] == "hello"
    assert "aml_core.runtime serve" in cfg["Entrypoint"][-1]
    assert "${WORKER_COUNT:-1}" in cfg["Entrypoint"][-1]
    assert cfg["ExposedPorts"] == {"5001/tcp": {}}
    assert cfg["WorkingDir"] == "/var/azureml-app"
    label = json.loads(cfg["Labels"]["org.aml.environment"])
    assert label["pip"] == ["numpy>=1.20"]
    assert "uvicorn>=0.30" in [r.split(";")[0] for r in label["requirements"]]
    assert "hello" not in cfg["Labels"]["org.aml.environment"], "env var values stay out of labels"


def test_several_models_share_the_models_root(tmp_path, spec):
    (tmp_path / "a.bin").write_bytes(b"a")
    (tmp_path / "bdir").mkdir()
    (tmp_path / "bdir" / "w.bin").write_bytes(b"b")
    models = [
        ModelFiles.from_path("a", 1, tmp_path / "a.bin"),
        ModelFiles.from_path("b", 3, tmp_path / "bdir"),
    ]
    image = build_image(make_spec(tmp_path, models=models))
    env = dict(i.split("=", 1) for i in image.config_json()["config"]["Env"])
    assert env["AZUREML_MODEL_DIR"] == "/var/azureml-app/azureml-models"
    names = {m.name for blob in image.layers for m in layer_members(blob)}
    assert "var/azureml-app/azureml-models/a/1/a.bin" in names
    assert "var/azureml-app/azureml-models/b/3/bdir/w.bin" in names


def test_a_link_leaving_the_source_folder_is_refused(spec, tmp_path):
    os.symlink("/etc/passwd", tmp_path / "src" / "passwd")
    with pytest.raises(InvalidConfig, match="passwd.*outside the folder"):
        build_image(spec)


def test_a_link_inside_the_source_folder_is_kept_as_a_link(spec, tmp_path):
    os.symlink("pkg/helper.py", tmp_path / "src" / "alias.py")
    members = {m.name: m for m in layer_members(build_image(spec).layers[-1])}
    assert members["var/azureml-app/src/alias.py"].issym()
    assert members["var/azureml-app/src/alias.py"].linkname == "pkg/helper.py"


def test_entry_script_must_exist(tmp_path, spec):
    bad = PackageSpec(
        app=AppSpec(entry_script="missing.py", source_directory=tmp_path / "src"),
        environment=spec.environment,
    )
    with pytest.raises(InvalidConfig, match="missing.py"):
        build_image(bad)


def test_layout_round_trip_and_umoci_reads_it(spec, tmp_path):
    image = build_image(spec)
    layout = write_layout(image, tmp_path / "layout", tag="1")
    again = read_layout(layout, tag="1")
    assert again.digest == image.digest
    assert [b.digest for b in again.layers] == [b.digest for b in image.layers]
    if shutil.which("umoci") is None:
        pytest.skip(
            "umoci is not installed (apt-get install umoci); layout round trip checked only"
        )
    bundle = tmp_path / "bundle"
    subprocess.run(
        ["umoci", "unpack", "--rootless", "--image", f"{layout}:1", str(bundle)],
        check=True,
        capture_output=True,
    )
    assert (
        bundle / "rootfs/var/azureml-app/azureml-models/mymodel/1/model.txt"
    ).read_text() == "weights"


def test_layout_tags_can_be_removed_one_at_a_time(spec, tmp_path):
    image = build_image(spec)
    layout = write_layout(image, tmp_path / "layout", tag="1")
    write_layout(image, layout, tag="2")
    assert remove_from_layout(layout, "1") is True
    assert remove_from_layout(layout, "1") is False
    assert read_layout(layout, tag="2").digest == image.digest
    with pytest.raises(NotFound, match="0 images matching tag '1'"):
        read_layout(layout, tag="1")
    assert parse_layout_location(f"oci:{layout}:2") == (layout, "2")
    assert parse_layout_location(f"oci:{layout}") == (layout, None)


def test_environment_without_python_version_gets_this_interpreters():
    assert EnvironmentSpec(name="e", python_version=None).python_version == DEFAULT_PYTHON_VERSION
    assert EnvironmentSpec(name="e", python_version="3.10").python_version == "3.10"


def test_docker_archive_lists_config_and_layers(spec, tmp_path):
    image = build_image(spec)
    path = write_docker_archive(image, tmp_path / "img.tar", repo_tags=["localhost/x:1"])
    with tarfile.open(path) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
        assert manifest[0]["RepoTags"] == ["localhost/x:1"]
        assert sha256_digest(tar.extractfile(manifest[0]["Config"]).read()) == image.config.digest
        assert [sha256_digest(tar.extractfile(n).read()) for n in manifest[0]["Layers"]] == [
            b.digest for b in image.layers
        ]


def test_base_image_layers_come_first(spec, tmp_path):
    base = build_image(make_spec(tmp_path))
    image = build_image(
        PackageSpec(
            app=spec.app,
            environment=spec.environment,
            models=spec.models,
            runtime_source=spec.runtime_source,
            base=base,
        )
    )
    assert image.layers[: len(base.layers)] == base.layers
    cfg = image.config_json()
    assert len(cfg["rootfs"]["diff_ids"]) == len(image.layers)
    assert cfg["config"]["Labels"]["org.aml.app-layers"] == "3"


def test_rebase_equals_building_on_the_base(spec, tmp_path):
    base_a = build_image(make_spec(tmp_path))
    (tmp_path / "other.txt").write_text("other base")
    base_b = build_image(
        PackageSpec(
            app=spec.app,
            environment=EnvironmentSpec(name="b", environment_variables={"PATH": "/base/bin"}),
            models=[ModelFiles.from_path("other", 1, tmp_path / "other.txt")],
            runtime_source=spec.runtime_source,
        )
    )
    app_only = build_image(spec)
    on_a = build_image(attrs.evolve(spec, base=base_a))
    assert rebase(app_only, base_a).digest == on_a.digest
    # rebasing again swaps the base and keeps the app's layers
    on_b = rebase(on_a, base_b)
    assert on_b.layers == base_b.layers + app_only.layers
    env = dict(i.split("=", 1) for i in on_b.config_json()["config"]["Env"])
    assert env["PATH"] == "/base/bin"  # the base's PATH wins
    assert env["GREETING"] == "hello"


def test_rebase_needs_the_app_layers_label(tmp_path):
    from aml_core.oci import Image

    plain = Image.assemble({"config": {}, "rootfs": {"type": "layers", "diff_ids": []}}, [])
    with pytest.raises(InvalidConfig, match="org.aml.app-layers"):
        rebase(plain, plain)


def test_conda_only_packages_are_recorded_but_never_installed():
    env = EnvironmentSpec(
        name="e", pip_requirements=["numpy"], conda_dependencies=["cudatoolkit=11"]
    )
    assert "numpy" in env.requirements()
    assert not any("cudatoolkit" in r for r in env.requirements())
    assert json.loads(env.to_label())["conda"] == ["cudatoolkit=11"]
    assert EnvironmentSpec.from_label(env.to_label()).content_hash() == env.content_hash()


def test_concurrent_writers_keep_every_tag(spec, tmp_path):
    import threading

    image = build_image(spec)
    layout = tmp_path / "layout"
    threads = [
        threading.Thread(target=write_layout, args=(image, layout), kwargs={"tag": str(i)})
        for i in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    index = json.loads((layout / "index.json").read_text())
    tags = sorted(m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"])
    assert tags == [str(i) for i in range(8)]
    assert not list((layout / "blobs" / "sha256").glob("*.tmp"))
