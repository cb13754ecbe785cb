"""Environments: what an entry script needs installed, from pip requirements or a conda YAML.

The runtime of every image already provides the scoring server, so ``azureml-defaults`` and
``azureml-inference-server-http`` in a requirements list are recognised and dropped. Conda
packages with a pip equivalent become pip requirements; the rest are kept as conda-only and
reported, since the process engine installs with pip.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import warnings
from pathlib import Path
from typing import Any

import attrs
import yaml
from packaging.requirements import InvalidRequirement, Requirement

from aml_core.errors import InvalidConfig, NotFound, NotSupported

#: Requirements the scoring runtime itself satisfies.
PROVIDED_BY_RUNTIME = frozenset({"azureml-defaults", "azureml-inference-server-http", "azureml-core"})

#: conda package name -> pip distribution name, for packages that exist on both sides.
CONDA_TO_PIP = {
    "numpy": "numpy",
    "scipy": "scipy",
    "pandas": "pandas",
    "scikit-learn": "scikit-learn",
    "joblib": "joblib",
    "requests": "requests",
    "pyyaml": "pyyaml",
    "matplotlib": "matplotlib",
    "pillow": "pillow",
    "pytorch": "torch",
    "torchvision": "torchvision",
    "tensorflow": "tensorflow",
    "py-xgboost": "xgboost",
    "xgboost": "xgboost",
    "lightgbm": "lightgbm",
    "onnxruntime": "onnxruntime",
    "statsmodels": "statsmodels",
    "inference-schema": "inference-schema",
}
#: conda entries that describe the interpreter or installer, not a package to install
_CONDA_TOOLING = {"python", "pip", "setuptools", "wheel"}
#: the files save_to_directory writes, named as azureml-core names them
ENVIRONMENT_FILE, CONDA_FILE = "azureml_environment.json", "conda_dependencies.yml"
_ENV_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")


def _conda_to_pip(spec: str) -> str | None:
    """``numpy=1.26`` -> ``numpy==1.26.*``; ``scikit-learn>=1.3`` unchanged; None if unknown."""
    match = re.match(r"^\s*([A-Za-z0-9_.-]+)\s*(.*)$", spec)
    if not match:
        return None
    name, constraint = match.group(1).lower(), match.group(2).strip()
    pip_name = CONDA_TO_PIP.get(name)
    if pip_name is None:
        return None
    if constraint.startswith("=") and not constraint.startswith("=="):
        version = constraint[1:].split("=")[0]
        constraint = f"=={version}" if version.count(".") >= 2 else f"=={version}.*"
    return f"{pip_name}{constraint}"


@attrs.define
class CondaDependencies:
    """The dependency part of an environment (``env.python.conda_dependencies``)."""

    pip_packages: list[str] = attrs.field(factory=list)
    conda_packages: list[str] = attrs.field(factory=list)
    channels: list[str] = attrs.field(factory=list)
    python_version: str | None = None

    @classmethod
    def create(cls, pip_packages=None, conda_packages=None, python_version=None) -> "CondaDependencies":
        deps = cls(python_version=python_version)
        for p in pip_packages or ():
            deps.add_pip_package(p)
        for c in conda_packages or ():
            deps.add_conda_package(c)
        return deps

    def add_pip_package(self, requirement: str) -> None:
        try:
            Requirement(requirement)
        except InvalidRequirement as exc:
            raise InvalidConfig(f"Invalid pip requirement {requirement!r}: {exc}") from None
        if requirement not in self.pip_packages:
            self.pip_packages.append(requirement)

    def add_conda_package(self, spec: str) -> None:
        if spec not in self.conda_packages:
            self.conda_packages.append(spec)

    def pip_requirements(self) -> list[str]:
        """Everything to pip-install: pip packages plus conda packages with a pip twin."""
        reqs: list[str] = []
        for spec in self.pip_packages:
            if Requirement(spec).name.lower() not in PROVIDED_BY_RUNTIME:
                reqs.append(spec)
        for spec in self.conda_packages:
            converted = _conda_to_pip(spec)
            if converted and converted not in reqs:
                reqs.append(converted)
        return sorted(set(reqs), key=str.lower)

    def conda_only(self) -> list[str]:
        """Conda packages with no pip equivalent (they cannot be installed by the process engine)."""
        left = []
        for spec in self.conda_packages:
            name = re.split(r"[<>=!\s]", spec.strip(), maxsplit=1)[0].lower()
            if name not in _CONDA_TOOLING and _conda_to_pip(spec) is None:
                left.append(spec)
        return left


@attrs.define
class PythonSection:
    conda_dependencies: CondaDependencies = attrs.field(factory=CondaDependencies)
    #: True means "use the interpreter as it is" (no installs)
    user_managed_dependencies: bool = False


@attrs.define
class DockerSection:
    #: azureml-core's switch for running training in Docker; a deployed service always runs
    #: in an image, so for deployment it is recorded and has no other effect
    enabled: bool = False
    base_image: str | None = None
    base_dockerfile: str | None = None


@attrs.define
class Environment:
    """What the entry script needs: Python packages, environment variables, a base image."""

    name: str = attrs.field()
    python: PythonSection = attrs.field(factory=PythonSection)
    docker: DockerSection = attrs.field(factory=DockerSection)
    environment_variables: dict[str, str] = attrs.field(factory=dict)
    inferencing_stack_version: str | None = None
    version: str | None = None

    @name.validator
    def _check_name(self, attribute, value):
        if not isinstance(value, str) or not _ENV_NAME.match(value):
            raise InvalidConfig(
                f"Invalid environment name {value!r}: 1-255 letters, digits, '-', '_' or '.', starting with a letter or digit."
            )

    # -- constructors (the names azureml-core uses) ---------------------------------------

    @classmethod
    def from_pip_requirements(cls, name: str, file_path: str | Path) -> "Environment":
        path = Path(file_path)
        if not path.is_file():
            raise InvalidConfig(f"Requirements file {str(path)!r} does not exist.")
        env = cls(name)
        for lineno, raw in enumerate(path.read_text().splitlines(), 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            if line.startswith("-"):
                raise InvalidConfig(
                    f"{path}:{lineno}: pip options such as {line.split()[0]!r} are not supported in an environment; "
                    f"list requirements only."
                )
            try:
                env.python.conda_dependencies.add_pip_package(line)
            except InvalidConfig as exc:
                raise InvalidConfig(f"{path}:{lineno}: {exc}") from None
        return env

    @classmethod
    def from_conda_specification(cls, name: str, file_path: str | Path) -> "Environment":
        path = Path(file_path)
        if not path.is_file():
            raise InvalidConfig(f"Conda file {str(path)!r} does not exist.")
        try:
            spec = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise InvalidConfig(f"{path} is not valid YAML: {exc}") from None
        if not isinstance(spec, dict):
            raise InvalidConfig(f"{path} must be a mapping with a 'dependencies' list (a conda environment file).")
        deps = spec.get("dependencies") or []
        if not isinstance(deps, list):
            raise InvalidConfig(f"{path}: 'dependencies' must be a list.")
        env = cls(name)
        conda = env.python.conda_dependencies
        conda.channels = [str(c) for c in spec.get("channels") or []]
        for item in deps:
            if isinstance(item, dict):
                pip_list = item.get("pip")
                if pip_list is None or not isinstance(pip_list, list):
                    raise InvalidConfig(f"{path}: a mapping in 'dependencies' must be a 'pip:' list, got {item!r}.")
                for req in pip_list:
                    conda.add_pip_package(str(req))
            elif isinstance(item, str):
                if re.match(r"^python\s*[=<>]", item) or item.strip() == "python":
                    conda.python_version = re.sub(r"^python\s*=*\s*", "", item).strip() or None
                else:
                    conda.add_conda_package(item)
            else:
                raise InvalidConfig(f"{path}: unexpected dependency entry {item!r}.")
        left = conda.conda_only()
        if left:
            warnings.warn(
                f"Environment {name!r}: conda packages without a pip equivalent will not be installed by the "
                f"process engine: {', '.join(left)}",
                stacklevel=2,
            )
        return env

    # -- the workspace's environment registry (azureml-core's names) ----------------------

    @staticmethod
    def get(workspace, name: str, version: str | int | None = None, label: str | None = None) -> "Environment":
        """A registered (or curated) environment: its latest version, or ``version``."""
        return get_environment(workspace, name, version)

    def register(self, workspace) -> "Environment":
        """Store this environment in the workspace. The first registration of a name is
        version ``"1"``; registering it again with a changed definition makes the next
        version, and with the same definition returns the stored version (as Azure ML does).
        Names starting with ``AzureML`` are reserved for the curated environments."""
        return register_environment(workspace, self)

    @staticmethod
    def list(workspace) -> dict[str, "Environment"]:
        """The latest version of every registered environment, and the curated ones, by name."""
        return list_environments(workspace)

    @staticmethod
    def get_curated_environments() -> dict[str, "Environment"]:
        return {name: build() for name, build in CURATED.items()}

    def build_local(self, workspace, platform: str | None = None, **kwargs: Any) -> str:
        """Make this environment on this machine: a cached virtual environment (keyed by the
        environment's hash) in the workspace, or this interpreter when it already satisfies
        the requirements. Returns the path of its Python.

        ``useDocker=True`` (a Docker image of the environment) is refused: the image of a
        service is built by ``Model.package`` / ``ContainerImage.create``."""
        use_docker = kwargs.pop("useDocker", False)
        kwargs.pop("pushImageToWorkspaceAcr", None)
        if kwargs:
            raise InvalidConfig(f"build_local: unknown arguments {', '.join(sorted(kwargs))} "
                                f"(it takes workspace, platform, useDocker).")
        if use_docker:
            raise NotSupported(
                "local", "build_local(useDocker=True)",
                "(environments are built into images by Model.package or ContainerImage.create; "
                "build_local(useDocker=False) makes the environment as a local virtual environment)",
            )
        if platform not in (None, "linux", sys.platform):
            raise InvalidConfig(f"build_local: platform {platform!r} is not this machine's ({sys.platform}).")
        from aml_core.engines.environments import materialise
        from aml_core.images import _environment_spec

        return materialise(_environment_spec(self), Path(workspace.root) / "cache" / "environments")

    # -- files (azureml-core's save_to_directory / load_from_directory) ------------------

    def save_to_directory(self, path: str | Path, overwrite: bool = False) -> None:
        """Write ``azureml_environment.json`` (the definition, in the schema an
        ``inferenceconfig.json``'s ``environment`` takes) and ``conda_dependencies.yml``."""
        folder = Path(path)
        files = {folder / ENVIRONMENT_FILE: json.dumps(self._definition_json(), indent=4) + "\n",
                 folder / CONDA_FILE: yaml.safe_dump(self._conda_document(), sort_keys=False)}
        existing = [str(f) for f in files if f.exists()]
        if existing and not overwrite:
            raise InvalidConfig(f"{', '.join(existing)} already exist(s); pass overwrite=True to replace them.")
        folder.mkdir(parents=True, exist_ok=True)
        for target, text in files.items():
            tmp = target.with_name(f".{target.name}.tmp")
            tmp.write_text(text)
            tmp.replace(target)

    @staticmethod
    def load_from_directory(path: str | Path) -> "Environment":
        """The environment ``save_to_directory`` wrote (errors name the file and line)."""
        from aml_core.configfiles import load_json, read_environment

        folder = Path(path)
        document = load_json(folder / ENVIRONMENT_FILE, "environment definition file")
        return read_environment(document, str(folder / ENVIRONMENT_FILE), base=folder)

    def _definition_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "python": {"userManagedDependencies": self.python.user_managed_dependencies,
                       "condaDependenciesFile": CONDA_FILE},
            "docker": {"enabled": self.docker.enabled, "baseImage": self.docker.base_image,
                       "baseDockerfile": self.docker.base_dockerfile},
            "environmentVariables": dict(self.environment_variables),
            "inferencingStackVersion": self.inferencing_stack_version,
        }

    def _conda_document(self) -> dict[str, Any]:
        conda = self.python.conda_dependencies
        dependencies: list[Any] = [f"python={conda.python_version}"] if conda.python_version else []
        dependencies += list(conda.conda_packages)
        if conda.pip_packages:
            dependencies.append({"pip": list(conda.pip_packages)})
        return {"name": "project_environment", "channels": list(conda.channels), "dependencies": dependencies}

    # -- identity ------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Environment":
        python = data.get("python") or {}
        conda = python.get("conda_dependencies") or {}
        return cls(
            name=data["name"],
            python=PythonSection(
                conda_dependencies=CondaDependencies(**conda),
                user_managed_dependencies=bool(python.get("user_managed_dependencies", False)),
            ),
            docker=DockerSection(**{k: v for k, v in (data.get("docker") or {}).items()
                                    if k in ("enabled", "base_image", "base_dockerfile")}),
            environment_variables=dict(data.get("environment_variables") or {}),
            inferencing_stack_version=data.get("inferencing_stack_version"),
            version=data.get("version"),
        )

    def materialization_spec(self) -> dict[str, Any]:
        """What an engine needs to build this environment, in a canonical form."""
        conda = self.python.conda_dependencies
        return {
            "python": conda.python_version or f"{sys.version_info.major}.{sys.version_info.minor}",
            "pip": conda.pip_requirements(),
            "conda_only": sorted(conda.conda_only()),
            "user_managed": self.python.user_managed_dependencies,
            "base_image": self.docker.base_image,
            "environment_variables": dict(sorted(self.environment_variables.items())),
        }

    @property
    def hash(self) -> str:
        """A stable hash of what the environment installs (not of its name)."""
        canonical = json.dumps(self.materialization_spec(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


# -- the registry ----------------------------------------------------------------------------

#: the prefix azureml-core reserves for curated environments
CURATED_PREFIX = "AzureML"


def _curated(name: str, pip: list[str], conda: list[str] = ()) -> Any:
    def build() -> Environment:
        env = Environment(name, version="1")
        env.python.conda_dependencies = CondaDependencies.create(pip_packages=pip, conda_packages=list(conda))
        return env

    return build


#: Curated environments a user can start from (``Environment.get(ws, "AzureML-Minimal")``).
#: Their names follow Azure ML's; their packages are unpinned so they install on any
#: Python this project supports. The list is documented in docs/porting.md.
CURATED = {
    "AzureML-Minimal": _curated("AzureML-Minimal", ["azureml-defaults"]),
    "AzureML-Tutorial": _curated("AzureML-Tutorial", ["azureml-defaults", "numpy", "scikit-learn", "joblib"]),
    "AzureML-Scikit-learn": _curated("AzureML-Scikit-learn", ["azureml-defaults", "scikit-learn", "joblib"],
                                     ["numpy"]),
}


def _definition(env: Environment) -> dict[str, Any]:
    """What makes two registrations the same version: everything but the version itself."""
    data = env.to_dict()
    data.pop("version", None)
    return data


def register_environment(workspace, env: Environment) -> Environment:
    if env.name.lower().startswith(CURATED_PREFIX.lower()):
        raise InvalidConfig(
            f"Environment name {env.name!r} is reserved: names starting with {CURATED_PREFIX!r} are curated "
            f"environments. Register yours under another name (copy one with Environment.get(...) and set .name)."
        )
    definition = _definition(env)
    with workspace.transaction() as db:
        row = db.execute("SELECT version, record FROM environments WHERE name = ? ORDER BY version DESC LIMIT 1",
                         (env.name,)).fetchone()
        if row is not None and _definition(Environment.from_dict(json.loads(row["record"]))) == definition:
            version = int(row["version"])
        else:
            version = (int(row["version"]) if row is not None else 0) + 1
            stored = {**definition, "version": str(version)}
            db.execute("INSERT INTO environments (name, version, record) VALUES (?, ?, ?)",
                       (env.name, version, json.dumps(stored, sort_keys=True)))
    registered = Environment.from_dict({**definition, "version": str(version)})
    env.version = registered.version
    return registered


def get_environment(workspace, name: str, version: str | int | None = None) -> Environment:
    if name in CURATED:
        if version not in (None, "1", 1):
            raise NotFound(f"Curated environment {name!r} has only version '1', not {version!r}.")
        return CURATED[name]()
    if version is not None and not str(version).isdigit():
        raise InvalidConfig(f"Environment version {version!r} is not a whole number ('1', '2' ...).")
    with workspace.reading() as db:
        if version is None:
            row = db.execute("SELECT record FROM environments WHERE name = ? ORDER BY version DESC LIMIT 1",
                             (name,)).fetchone()
        else:
            row = db.execute("SELECT record FROM environments WHERE name = ? AND version = ?",
                             (name, int(version))).fetchone()
    if row is None:
        # Azure ML's own words first ("No definition exists for Environment with Name: ..."), then the fix
        which = f"{name!r} version {str(version)!r}" if version is not None else repr(name)
        raise NotFound(
            f"No definition exists for Environment with Name: {name} Version: {version if version is not None else 'latest'}. "
            f"Environment {which} is not registered in workspace {workspace.name!r}. Register it with "
            f"env.register(ws); Environment.list(ws) shows what there is (curated: {', '.join(CURATED)})."
        )
    return Environment.from_dict(json.loads(row["record"]))


def list_environments(workspace) -> dict[str, Environment]:
    with workspace.reading() as db:
        rows = db.execute(
            "SELECT record FROM environments e WHERE version = (SELECT MAX(version) FROM environments "
            "WHERE name = e.name) ORDER BY name").fetchall()
    found = {name: build() for name, build in CURATED.items()}
    for row in rows:
        env = Environment.from_dict(json.loads(row["record"]))
        found[env.name] = env
    return found


def default_environment() -> Environment:
    """The environment used when an InferenceConfig names none: the runtime's own packages only."""
    return Environment("aml-default")
