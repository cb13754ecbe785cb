"""Build a scoring image in pure Python: no container engine, no network.

The input is plain data (paths, names, requirement strings), so any caller can use it:
:class:`AppSpec` (entry script and source folder), :class:`ModelFiles` (one registered
model version), :class:`EnvironmentSpec` (python version, pip and conda dependencies,
environment variables) and optionally a base :class:`Image` whose layers go first.

The image's file system::

    /opt/aml/lib/aml_core/...                     runtime layer (the scoring runtime's source)
    /opt/aml/requirements.txt                     what the environment needs (runtime included)
    /var/azureml-app/azureml-models/<name>/<ver>/ model layer (one per model)
    /var/azureml-app/<source folder>/score.py     app layer

Its entrypoint starts ``python3 -m aml_core.runtime serve`` on port 5001; the environment
description travels in the config's labels (``org.aml.environment``) so any engine can
materialise it. Same inputs give the same manifest digest.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import posixpath
import re
import sys
import tarfile
import tempfile
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path

import attrs

from aml_core.errors import InvalidConfig, NotFound
from aml_core.oci.layers import Blob, Layer, LayerBuilder, layer_from_tar_file
from aml_core.oci.media import (
    DOCKER_CONFIG,
    DOCKER_MANIFEST,
    OCI_CONFIG,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    check_digest,
    digest_hex,
    sha256_digest,
)
from aml_core.oci.unpack import file_lock

APP_ROOT = "/var/azureml-app"
MODELS_ROOT = f"{APP_ROOT}/azureml-models"
RUNTIME_LIB = "/opt/aml/lib"
REQUIREMENTS_FILE = "/opt/aml/requirements.txt"
PORT = 5001
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: the shell form lets WORKER_COUNT, AML_HOST and AML_PORT be set when the container starts
ENTRYPOINT = [
    "/bin/sh",
    "-c",
    (
        'exec python3 -m aml_core.runtime serve --host "${AML_HOST:-0.0.0.0}" '
        f'--port "${{AML_PORT:-{PORT}}}" --workers "${{WORKER_COUNT:-1}}"'
    ),
]
EPOCH = "1970-01-01T00:00:00Z"
#: the Python an environment gets when it names none: this interpreter's major.minor
DEFAULT_PYTHON_VERSION = f"{sys.version_info[0]}.{sys.version_info[1]}"

# Labels every engine reads (values are strings; JSON where structured).
LABEL_ENVIRONMENT = "org.aml.environment"
LABEL_MODELS = "org.aml.models"
LABEL_ENTRY_SCRIPT = "org.aml.entry-script"
LABEL_APP_LAYERS = "org.aml.app-layers"
LABEL_PATH_ENV = "org.aml.path-env"
LABEL_PORT = "org.aml.port"
#: variables whose values are paths inside the image (the process engine remaps them)
PATH_ENV = ("AML_APP_ROOT", "AZUREML_MODEL_DIR", "AZUREML_SOURCE_DIRECTORY", "PYTHONPATH")

# Kept in step with aml_core's own dependencies; used when aml-core is not installed as a
# distribution (e.g. running from a source checkout).
_RUNTIME_FALLBACK = (
    "pluggy>=1.5",
    "attrs>=23.1",
    "click>=8.1",
    "rich>=13",
    "requests>=2.31",
    "packaging>=23",
    "pyyaml>=6",
    "uvicorn>=0.30",
    "uvloop>=0.19; sys_platform != 'win32'",
    "httptools>=0.6",
    "pathspec>=0.12",
)


def runtime_requirements() -> tuple[str, ...]:
    """What the in-image scoring runtime needs importable (aml-core's own dependencies)."""
    try:
        reqs = metadata.requires("aml-core") or []
    except metadata.PackageNotFoundError:
        return _RUNTIME_FALLBACK
    return tuple(r for r in reqs if "extra ==" not in r)


def _tuple(value: Iterable[str] | None) -> tuple[str, ...]:
    return tuple(value or ())


@attrs.frozen(kw_only=True)
class EnvironmentSpec:
    """The environment an image needs, as plain data (the core's Environment maps onto it)."""

    name: str
    python_version: str = attrs.field(
        default=DEFAULT_PYTHON_VERSION, converter=lambda v: v or DEFAULT_PYTHON_VERSION
    )
    #: what pip installs (conda packages with a pip twin belong here, already mapped)
    pip_requirements: tuple[str, ...] = attrs.field(default=(), converter=_tuple)
    #: conda-only packages: recorded in the image's labels, never installed by the engines
    conda_dependencies: tuple[str, ...] = attrs.field(default=(), converter=_tuple)
    environment_variables: Mapping[str, str] = attrs.field(factory=dict, converter=dict)
    #: a stable hash of what the environment installs; computed when not given
    hash: str = attrs.field(default="")

    def requirements(self) -> tuple[str, ...]:
        """Every pip requirement: the scoring runtime's, then the environment's own."""
        return tuple(dict.fromkeys((*runtime_requirements(), *self.pip_requirements)))

    def content_hash(self) -> str:
        """``hash`` if given, else sha256 of the python version and the requirement list."""
        if self.hash:
            return self.hash
        payload = json.dumps(
            {"python": self.python_version, "requirements": self.requirements()}, sort_keys=True
        ).encode()
        return hashlib.sha256(payload).hexdigest()

    def to_label(self) -> str:
        # environment variable values stay in the config's Env only (they may be secrets)
        return json.dumps(
            {
                "name": self.name,
                "python": self.python_version,
                "pip": list(self.pip_requirements),
                "conda": list(self.conda_dependencies),
                "requirements": list(self.requirements()),
                "hash": self.content_hash(),
            },
            sort_keys=True,
        )

    @classmethod
    def from_label(cls, text: str) -> EnvironmentSpec:
        data = json.loads(text)
        return cls(
            name=data["name"],
            python_version=data["python"],
            pip_requirements=data["pip"],
            conda_dependencies=data["conda"],
            hash=data["hash"],
        )


@attrs.frozen(kw_only=True)
class ModelFiles:
    """One model version's files, keyed by path relative to its version folder."""

    name: str
    version: str = attrs.field(converter=str)
    files: Mapping[str, Path | bytes] = attrs.field(converter=dict)

    @classmethod
    def from_path(cls, name: str, version: int | str, path: Path) -> ModelFiles:
        """A registered file or folder; its basename is kept (``<dir>/<basename>``)."""
        path = Path(path)
        if (path.is_file() or path.is_dir()) and not path.is_symlink():
            return cls(name=name, version=version, files={path.name: path})
        raise NotFound(
            f"model path {path} does not exist (or is a link); register a file or folder"
        )

    def image_dir(self) -> str:
        return f"{MODELS_ROOT}/{self.name}/{self.version}"


@attrs.frozen(kw_only=True)
class AppSpec:
    """The entry script, relative to ``source_directory`` when one is given."""

    entry_script: str
    source_directory: Path | None = attrs.field(default=None)

    def resolve(self) -> tuple[Path, str, Path | None]:
        """(script path on disk, script path relative to the source folder, source folder)."""
        if self.source_directory is not None:
            src = Path(self.source_directory)
            script = src / self.entry_script
            rel = Path(self.entry_script).as_posix()
        else:
            script, rel, src = Path(self.entry_script), Path(self.entry_script).name, None
        if script.suffix != ".py" or not script.is_file():
            raise InvalidConfig(
                f"entry script {self.entry_script!r} must be an existing .py file"
                + (f" relative to source_directory {src}" if src else "")
            )
        if ".." in Path(rel).parts or Path(rel).is_absolute():
            raise InvalidConfig(
                f"entry script {self.entry_script!r} must be inside source_directory"
            )
        return script, rel, src


@attrs.frozen(kw_only=True)
class PackageSpec:
    """Everything one image is made of."""

    app: AppSpec
    environment: EnvironmentSpec
    models: tuple[ModelFiles, ...] = attrs.field(default=(), converter=tuple)
    base: Image | None = None
    #: the aml_core package folder copied into the runtime layer; default: this one
    runtime_source: Path | None = None
    labels: Mapping[str, str] = attrs.field(factory=dict, converter=dict)
    #: OCI (default) or Docker v2 media types for manifest, config and layers
    docker_media_types: bool = False


@attrs.frozen(kw_only=True)
class Image:
    """An image in memory (or with blobs on disk): manifest, config and layer blobs."""

    manifest: Blob
    config: Blob
    layers: tuple[Blob, ...]

    @property
    def digest(self) -> str:
        return self.manifest.digest

    def config_json(self) -> dict:
        return json.loads(self.config.read())

    def manifest_json(self) -> dict:
        return json.loads(self.manifest.read())

    def labels(self) -> dict[str, str]:
        return dict(self.config_json().get("config", {}).get("Labels") or {})

    def blobs(self) -> tuple[Blob, ...]:
        return (self.config, *self.layers)

    @classmethod
    def assemble(
        cls,
        config: dict,
        layers: Iterable[Blob],
        *,
        docker: bool = False,
        annotations: Mapping[str, str] | None = None,
    ) -> Image:
        layers = tuple(layers)
        config_blob = Blob.from_bytes(_canonical(config), DOCKER_CONFIG if docker else OCI_CONFIG)
        manifest = {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST if docker else OCI_MANIFEST,
            "config": config_blob.descriptor(),
            "layers": [b.descriptor() for b in layers],
        }
        if annotations and not docker:
            manifest["annotations"] = dict(sorted(annotations.items()))
        manifest_blob = Blob.from_bytes(_canonical(manifest), manifest["mediaType"])
        return cls(manifest=manifest_blob, config=config_blob, layers=layers)


def _canonical(obj: dict) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _default_runtime_source() -> Path:
    import aml_core

    return Path(aml_core.__file__).parent


def _model_dir_env(models: tuple[ModelFiles, ...]) -> str:
    return models[0].image_dir() if len(models) == 1 else MODELS_ROOT


def _source_dir_name(app: AppSpec) -> str:
    if app.source_directory is None:
        return "app"
    name = re.sub(r"[^A-Za-z0-9._-]", "_", Path(app.source_directory).resolve().name) or "app"
    return "app" if name in {"azureml-models", ".", ".."} else name


def _content_builders(spec: PackageSpec) -> list[tuple[str, LayerBuilder]]:
    """The app's layers, least to most frequently changing: runtime, models, app."""
    out: list[tuple[str, LayerBuilder]] = []
    runtime = LayerBuilder()
    runtime.add_tree(f"{RUNTIME_LIB}/aml_core", spec.runtime_source or _default_runtime_source())
    runtime.add_bytes(REQUIREMENTS_FILE, _requirements_file(spec.environment))
    out.append(("aml runtime", runtime))
    seen = set()
    for model in spec.models:
        key = (model.name, model.version)
        if key in seen:
            raise InvalidConfig(f"model {model.name}:{model.version} is listed twice")
        seen.add(key)
        builder = LayerBuilder()
        builder.add_dir(model.image_dir())
        for rel, source in sorted(model.files.items()):
            dest = posixpath.join(model.image_dir(), rel)
            if isinstance(source, bytes):
                builder.add_bytes(dest, source)
            else:
                builder.add_path(dest, Path(source))
        out.append((f"model {model.name}:{model.version}", builder))
    script, rel, src = spec.app.resolve()
    app = LayerBuilder()
    app_dir = f"{APP_ROOT}/{_source_dir_name(spec.app)}"
    if src is not None:
        app.add_tree(app_dir, src)
    else:
        app.add_file(f"{app_dir}/{rel}", script)
    out.append(("app", app))
    return out


def _requirements_file(environment: EnvironmentSpec) -> bytes:
    return ("\n".join(environment.requirements()) + "\n").encode()


#: what every image built here sets for Python: its packages under /opt/aml/lib importable
_PYTHON_ENV = {
    "PATH": DEFAULT_PATH,
    "PYTHONPATH": RUNTIME_LIB,
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONUNBUFFERED": "1",
}


def _image_env(spec: PackageSpec) -> dict[str, str]:
    _, rel, _ = spec.app.resolve()
    return {
        **_PYTHON_ENV,
        "AML_APP_ROOT": APP_ROOT,
        "AZUREML_SOURCE_DIRECTORY": f"{APP_ROOT}/{_source_dir_name(spec.app)}",
        "AZUREML_ENTRY_SCRIPT": rel,
        "AZUREML_MODEL_DIR": _model_dir_env(spec.models),
        **spec.environment.environment_variables,
    }


def _assemble(layers: list[Layer], *, env: Mapping[str, str], entrypoint: Iterable[str],
              cmd: Iterable[str], workdir: str, port: int, labels: Mapping[str, str],
              docker: bool = False) -> Image:
    """The app-only image of ``layers`` with its run configuration."""
    config = {
        "created": EPOCH,
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": [f"{k}={v}" for k, v in env.items()],
            "Entrypoint": list(entrypoint),
            "Cmd": list(cmd),
            "WorkingDir": workdir,
            "ExposedPorts": {f"{port}/tcp": {}},
            "Labels": dict(sorted(labels.items())),
        },
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        "history": [
            {"created": EPOCH, "created_by": "aml_core.oci", "comment": layer.comment}
            for layer in layers
        ],
    }
    return Image.assemble(config, [layer.blob for layer in layers], docker=docker)


def _labels(spec: PackageSpec, app_layers: int) -> dict[str, str]:
    _, rel, _ = spec.app.resolve()
    return {
        **spec.labels,
        LABEL_ENVIRONMENT: spec.environment.to_label(),
        LABEL_MODELS: json.dumps([{"name": m.name, "version": m.version} for m in spec.models]),
        LABEL_ENTRY_SCRIPT: rel,
        LABEL_APP_LAYERS: str(app_layers),
        LABEL_PATH_ENV: ",".join(PATH_ENV),
        LABEL_PORT: str(PORT),
    }


def build_image(spec: PackageSpec) -> Image:
    """Build the image in memory. Deterministic: same spec, same :attr:`Image.digest`.

    With ``spec.base`` the result is :func:`rebase` of the app-only image onto that base.
    """
    media = (
        OCI_LAYER_GZIP
        if not spec.docker_media_types
        else "application/vnd.docker.image.rootfs.diff.tar.gzip"
    )
    layers: list[Layer] = [b.build(comment=c, media_type=media) for c, b in _content_builders(spec)]
    image = _assemble(layers, env=_image_env(spec), entrypoint=ENTRYPOINT, cmd=(), workdir=APP_ROOT,
                      port=PORT, labels=_labels(spec, len(layers)), docker=spec.docker_media_types)
    return rebase(image, spec.base) if spec.base is not None else image


@attrs.frozen(kw_only=True)
class ProgramSpec:
    """An image that runs a Python program shipped as package sources (no model, no
    ``score.py``): e.g. the AKS front door. It has the same conventions as a scoring image
    (packages under ``/opt/aml/lib`` on ``PYTHONPATH``, the environment in the labels, the app
    layers counted), so every engine runs it and :func:`rebase` puts it on an OS base.
    """

    title: str
    #: package folders, each copied to ``/opt/aml/lib/<folder name>``
    packages: tuple[Path, ...] = attrs.field(converter=lambda v: tuple(Path(p) for p in v))
    environment: EnvironmentSpec
    #: the entrypoint; the shell form lets the engine's ``AML_HOST``/``AML_PORT`` apply
    entrypoint: tuple[str, ...] = attrs.field(converter=tuple)
    cmd: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    port: int
    base: Image | None = None
    labels: Mapping[str, str] = attrs.field(factory=dict, converter=dict)
    #: data files the program reads (e.g. the models it serves), image path -> source file
    files: Mapping[str, Path] = attrs.field(factory=dict, converter=lambda v: {k: Path(p) for k, p in v.items()})
    #: environment variables (besides PYTHONPATH) whose values are ':'-separated image
    #: paths, which engines that unpack the image remap into its root
    path_env: tuple[str, ...] = attrs.field(default=(), converter=tuple)


def build_program_image(spec: ProgramSpec) -> Image:
    """Build a :class:`ProgramSpec` image in memory: one layer of package sources plus the
    requirements file. Deterministic: same sources, same digest."""
    if not spec.packages:
        raise InvalidConfig(f"image {spec.title!r} needs at least one package folder")
    names = [p.name for p in spec.packages]
    if len(set(names)) != len(names):
        raise InvalidConfig(f"image {spec.title!r} lists a package folder name twice: {names}")
    builder = LayerBuilder()
    for package in spec.packages:
        if not (package / "__init__.py").is_file():
            raise InvalidConfig(f"{package} is not a Python package folder (no __init__.py)")
        builder.add_tree(f"{RUNTIME_LIB}/{package.name}", package)
    for image_path, source in sorted(spec.files.items()):
        builder.add_file(image_path, source)
    builder.add_bytes(REQUIREMENTS_FILE, _requirements_file(spec.environment))
    layer = builder.build(comment=f"{spec.title}: {', '.join(names)}")
    labels = {
        "org.opencontainers.image.title": spec.title,
        **spec.labels,
        LABEL_ENVIRONMENT: spec.environment.to_label(),
        LABEL_APP_LAYERS: "1",
        LABEL_PATH_ENV: ",".join(("PYTHONPATH", *spec.path_env)),
        LABEL_PORT: str(spec.port),
    }
    image = _assemble([layer], env={**_PYTHON_ENV, **spec.environment.environment_variables},
                      entrypoint=spec.entrypoint, cmd=spec.cmd, workdir="/", port=spec.port, labels=labels)
    return rebase(image, spec.base) if spec.base is not None else image


def app_layer_count(image: Image) -> int:
    """How many of the image's last layers are the app's own (label ``org.aml.app-layers``)."""
    labels = image.labels()
    try:
        count = int(labels[LABEL_APP_LAYERS])
    except (KeyError, ValueError) as exc:
        raise InvalidConfig(
            f"image {image.digest} has no valid {LABEL_APP_LAYERS} label; "
            "only images built by aml_core.oci.build_image can be rebased"
        ) from exc
    if not 0 < count <= len(image.layers):
        raise InvalidConfig(
            f"image {image.digest} claims {count} app layers of {len(image.layers)}"
        )
    return count


def rebase(image: Image, base: Image) -> Image:
    """Put ``image``'s app layers on top of ``base`` (replacing any base it had).

    Only manifests and configs are rewritten; no layer is recompressed, so this is cheap.
    The base's environment variables come first, the image's override them, except that the
    base's ``PATH`` is kept. Labels merge the same way.
    """
    count = app_layer_count(image)
    cfg = image.config_json()
    inner = cfg.get("config") or {}
    base_cfg = base.config_json()
    base_inner = base_cfg.get("config") or {}
    base_diff_ids = list((base_cfg.get("rootfs") or {}).get("diff_ids") or [])
    if len(base_diff_ids) != len(base.layers):
        raise InvalidConfig(
            f"base image {base.digest} lists {len(base_diff_ids)} diff_ids for "
            f"{len(base.layers)} layers; it is malformed"
        )
    env: dict[str, str] = {}
    for item in base_inner.get("Env") or []:
        key, _, value = item.partition("=")
        env[key] = value
    for item in inner.get("Env") or []:
        key, _, value = item.partition("=")
        if not (key == "PATH" and "PATH" in env):
            env[key] = value
    labels = {**(base_inner.get("Labels") or {}), **(inner.get("Labels") or {})}
    history = [h for h in cfg.get("history") or [] if not h.get("empty_layer")]
    config = {
        **cfg,
        "architecture": base_cfg.get("architecture", cfg.get("architecture", "amd64")),
        "os": base_cfg.get("os", cfg.get("os", "linux")),
        "config": {
            **inner,
            "Env": [f"{k}={v}" for k, v in env.items()],
            "Labels": dict(sorted(labels.items())),
        },
        "rootfs": {
            "type": "layers",
            "diff_ids": base_diff_ids + cfg["rootfs"]["diff_ids"][-count:],
        },
        "history": list(base_cfg.get("history") or []) + history[-count:],
    }
    return Image.assemble(
        config,
        [*base.layers, *image.layers[-count:]],
        docker=image.manifest.media_type == DOCKER_MANIFEST,
    )


def image_from_rootfs(
    tar_path: Path,
    blob_dir: Path,
    *,
    env: Iterable[str] = (),
    labels: Mapping[str, str] | None = None,
) -> Image:
    """A one-layer base image from a root file system tarball (what ``podman import`` does)."""
    blob_dir = Path(blob_dir)
    blob_dir.mkdir(parents=True, exist_ok=True)
    tmp = blob_dir / f".layer-{Path(tar_path).name}.tmp"
    layer = layer_from_tar_file(Path(tar_path), tmp, comment="rootfs")
    final = blob_dir / digest_hex(layer.blob.digest)
    tmp.replace(final)
    blob = attrs.evolve(layer.blob, path=final)
    config = {
        "created": EPOCH,
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": [f"PATH={DEFAULT_PATH}", *env], "Labels": dict(labels or {})},
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
        "history": [{"created": EPOCH, "created_by": "aml_core.oci.image_from_rootfs"}],
    }
    return Image.assemble(config, [blob])


def cached_image_from_rootfs(tar_path: Path) -> Image:
    """:func:`image_from_rootfs`, written once as an OCI layout beside the tarball (``.oci``).

    Compressing a few hundred MB takes a while; later calls read the layout back.
    """
    tar_path = Path(tar_path)
    layout = tar_path.with_name(tar_path.name + ".oci")
    if (layout / "index.json").exists():
        return read_layout(layout)
    with file_lock(tar_path.with_name(tar_path.name + ".lock")):
        if (layout / "index.json").exists():
            return read_layout(layout)
        image = image_from_rootfs(tar_path, layout / "blobs" / "sha256")
        write_layout(image, layout)  # index.json last: its presence means complete
    return read_layout(layout)


# -- OCI image layout -------------------------------------------------------------------------


_REF_NAME = "org.opencontainers.image.ref.name"


def _tagged(descriptor: dict, tag: str) -> bool:
    return (descriptor.get("annotations") or {}).get(_REF_NAME) == tag


@contextlib.contextmanager
def _editing_index(directory: Path):
    """Yield a layout's index for editing; it is written back atomically, under a lock."""
    index_path = directory / "index.json"
    with file_lock(directory / ".index.lock"):
        index = (
            json.loads(index_path.read_text())
            if index_path.exists()
            else {"schemaVersion": 2, "manifests": []}
        )
        yield index
        tmp = index_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(index, indent=1, sort_keys=True))
        tmp.replace(index_path)


def write_layout(image: Image, directory: Path, *, tag: str = "latest") -> Path:
    """Write (or add to) an OCI image layout directory; blobs already present are kept.

    Safe for concurrent writers: blobs are renamed into place, the index is edited under a
    lock, and ``tag`` moves to this image.
    """
    directory = Path(directory)
    blobs = directory / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    (directory / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    for blob in (image.manifest, *image.blobs()):
        target = blobs / digest_hex(blob.digest)
        if not target.exists():
            fd, tmp = tempfile.mkstemp(dir=blobs, prefix=f".{target.name}.", suffix=".tmp")
            with blob.open() as src, os.fdopen(fd, "wb") as dst:
                dst.writelines(iter(lambda: src.read(1 << 20), b""))
            os.chmod(tmp, 0o644)  # mkstemp makes it private; blobs are content, not secrets
            os.replace(tmp, target)
    with _editing_index(directory) as index:
        index["manifests"] = [m for m in index["manifests"] if not _tagged(m, tag)] + [
            {**image.manifest.descriptor(), "annotations": {_REF_NAME: tag}}
        ]
    return directory


def remove_from_layout(directory: Path, tag: str) -> bool:
    """Drop ``tag`` from a layout's index (blobs stay; other tags are untouched).

    :returns: whether the tag was there.
    """
    directory = Path(directory)
    if not (directory / "index.json").exists():
        return False
    with _editing_index(directory) as index:
        before = index.get("manifests") or []
        index["manifests"] = [m for m in before if not _tagged(m, tag)]
    return len(index["manifests"]) != len(before)


def parse_layout_location(location: str) -> tuple[Path, str | None]:
    """``oci:<dir>[:<tag>]`` (skopeo's transport syntax) → (dir, tag or None)."""
    if not location.startswith("oci:"):
        raise InvalidConfig(f"{location!r} is not an OCI layout location (oci:<dir>:<tag>)")
    rest = location[4:]
    directory, sep, tag = rest.rpartition(":")
    if not sep or "/" in tag:
        return Path(rest), None
    return Path(directory), tag


def read_layout(directory: Path, *, tag: str | None = None) -> Image:
    """Read an image from an OCI layout (the only one, or the one tagged ``tag``).

    Blobs stay on disk; their digests are verified when they are read by
    :func:`aml_core.oci.unpack.unpack_image` or pushed.
    """
    directory = Path(directory)
    try:
        index = json.loads((directory / "index.json").read_text())
    except FileNotFoundError as exc:
        raise NotFound(f"{directory} is not an OCI image layout (no index.json)") from exc
    manifests = index.get("manifests") or []
    if tag is not None:
        manifests = [m for m in manifests if _tagged(m, tag)]
    if len(manifests) != 1:
        raise NotFound(
            f"{directory} holds {len(manifests)} images matching tag {tag!r}; name one tag"
        )
    blobs = directory / "blobs" / "sha256"

    def blob(desc: dict) -> Blob:
        path = blobs / digest_hex(check_digest(desc["digest"]))
        if not path.exists():
            raise NotFound(f"blob {desc['digest']} is missing from {directory}")
        return Blob(
            digest=desc["digest"], size=int(desc["size"]), media_type=desc["mediaType"], path=path
        )

    manifest = blob(manifests[0])
    data = manifest.read()
    if sha256_digest(data) != manifest.digest:
        raise InvalidConfig(f"manifest {manifest.digest} in {directory} does not match its digest")
    body = json.loads(data)
    return Image(
        manifest=attrs.evolve(manifest, data=data),
        config=blob(body["config"]),
        layers=tuple(blob(d) for d in body["layers"]),
    )


# -- docker-archive (what `docker load` / `podman load` read) -----------------------------------


def write_docker_archive(image: Image, path: Path, *, repo_tags: Iterable[str] = ()) -> Path:
    """Write ``image`` as a ``docker save`` style tarball, loadable by docker and podman."""
    path = Path(path)
    manifest = [
        {
            "Config": digest_hex(image.config.digest) + ".json",
            "RepoTags": list(repo_tags),
            "Layers": [digest_hex(b.digest) + "/layer.tar" for b in image.layers],
        }
    ]
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:

        def add(name: str, blob_or_bytes: Blob | bytes) -> None:
            info = tarfile.TarInfo(name)
            info.mode, info.mtime = 0o644, 0
            if isinstance(blob_or_bytes, bytes):
                info.size = len(blob_or_bytes)
                tar.addfile(info, io.BytesIO(blob_or_bytes))
            else:
                info.size = blob_or_bytes.size
                with blob_or_bytes.open() as fh:
                    tar.addfile(info, fh)

        add(manifest[0]["Config"], image.config)
        for name, blob in zip(manifest[0]["Layers"], image.layers):
            add(name, blob)  # gzip-compressed; docker and podman detect the compression
        add("manifest.json", json.dumps(manifest).encode())
    return path


# -- Dockerfile build context (generate_dockerfile=True) --------------------------------------


def _quote(value: str) -> str:
    return json.dumps(value).replace("$", "\\$")


def write_build_context(spec: PackageSpec, directory: Path, *, base_image: str) -> Path:
    """Write a Dockerfile and the files it copies; ``docker build``/``podman build`` accept it.

    The base image must provide ``python3``. Requirements it lacks are pip-installed at build
    time (which needs network access); those it already has are left alone.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    steps = [
        f"# Generated by aml_core.oci.write_build_context; build with: docker build {directory.name}",
        f"FROM {base_image}",
    ]
    for index, (comment, builder) in enumerate(_content_builders(spec)):
        part = f"layer{index}"
        builder.write_tree(directory / part)
        steps.append(f"# {comment}")
        steps.append(f"COPY {part}/ /")
    steps.append(
        f"RUN PYTHONPATH={RUNTIME_LIB} python3 -m aml_core.oci.requirements --install "
        f"{REQUIREMENTS_FILE} || python3 -m pip install -r {REQUIREMENTS_FILE}"
    )
    for key, value in _image_env(spec).items():
        if key != "PATH":
            steps.append(f"ENV {key}={_quote(value)}")
    for key, value in sorted(_labels(spec, 0).items()):
        if key != LABEL_APP_LAYERS:
            steps.append(f"LABEL {_quote(key)}={_quote(value)}")
    steps += [
        f"WORKDIR {APP_ROOT}",
        f"EXPOSE {PORT}",
        f"ENTRYPOINT {json.dumps(ENTRYPOINT)}",
        "CMD []",
    ]
    (directory / "Dockerfile").write_text("\n".join(steps) + "\n")
    return directory
