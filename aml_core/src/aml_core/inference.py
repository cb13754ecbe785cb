"""InferenceConfig: the entry script, its source directory and its environment."""

from __future__ import annotations

import ast
import os
import warnings
from pathlib import Path
from typing import Any

import attrs

from aml_core.environment import Environment, default_environment
from aml_core.errors import InvalidConfig

#: InferenceConfig arguments that an ``environment`` replaces (as in azureml-core).
_LEGACY_ARGS = ("runtime", "conda_file", "extra_docker_file_steps", "enable_gpu", "cuda_version", "base_image")


@attrs.frozen(kw_only=True)
class InferenceConfig:
    """How to serve a model: ``InferenceConfig(entry_script="score.py", environment=env)``.

    Paths are resolved when the config is made, so it can be used from any directory later.
    """

    entry_script: str
    source_directory: str | None = None
    environment: Environment = attrs.field(factory=default_environment)
    description: str | None = None

    def __init__(
        self,
        entry_script: str,
        runtime: str | None = None,
        conda_file: str | None = None,
        extra_docker_file_steps: str | None = None,
        source_directory: str | None = None,
        enable_gpu: bool | None = None,
        description: str | None = None,
        base_image: str | None = None,
        base_image_registry: Any = None,
        cuda_version: str | None = None,
        environment: Environment | None = None,
    ) -> None:
        legacy = {
            "runtime": runtime,
            "conda_file": conda_file,
            "extra_docker_file_steps": extra_docker_file_steps,
            "enable_gpu": enable_gpu,
            "cuda_version": cuda_version,
            "base_image": base_image,
        }
        given = [k for k in _LEGACY_ARGS if legacy[k] not in (None, False)]
        if environment is not None and given:
            raise InvalidConfig(
                f"InferenceConfig: environment cannot be combined with {', '.join(given)}; "
                f"put those settings in the Environment instead."
            )
        if not entry_script:
            raise InvalidConfig("InferenceConfig: entry_script is required (the path of your score.py).")
        if not str(entry_script).endswith(".py"):
            raise InvalidConfig(f"InferenceConfig: entry_script {entry_script!r} must be a Python (.py) file.")
        if runtime not in (None, "python"):
            raise InvalidConfig(f"InferenceConfig: runtime {runtime!r} is not supported; use 'python'.")
        base = Path(source_directory).resolve() if source_directory else Path.cwd()
        if source_directory and not base.is_dir():
            raise InvalidConfig(f"InferenceConfig: source_directory {source_directory!r} is not a directory.")
        script = Path(entry_script)
        script_path = script if script.is_absolute() else base / script
        if not script_path.is_file():
            where = f"in source_directory {str(base)!r}" if source_directory else f"relative to {str(base)!r}"
            raise InvalidConfig(f"InferenceConfig: entry_script {entry_script!r} does not exist {where}.")
        if environment is None:
            if conda_file:
                conda_path = Path(conda_file)
                conda_path = conda_path if conda_path.is_absolute() else base / conda_path
                environment = Environment.from_conda_specification("aml-inference-env", conda_path)
            else:
                environment = default_environment()
            if base_image:
                environment.docker.base_image = base_image
        self.__attrs_init__(
            entry_script=str(script_path.resolve()),
            source_directory=str(base) if source_directory else None,
            environment=environment,
            description=description,
        )

    @property
    def entry_script_path(self) -> Path:
        return Path(self.entry_script)

    @property
    def app_directory(self) -> Path:
        """The folder copied into the image: the source directory, else the script's folder."""
        return Path(self.source_directory) if self.source_directory else self.entry_script_path.parent

    @property
    def entry_script_relative(self) -> str:
        """The entry script's path relative to the app directory."""
        return os.path.relpath(self.entry_script, self.app_directory)

    def validate_entry_script(self) -> None:
        """Refuse a script that does not parse or lacks ``init()`` or ``run()``, naming what is missing."""
        path = self.entry_script_path
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        except FileNotFoundError:
            raise InvalidConfig(f"The entry script {path} no longer exists.") from None
        except SyntaxError as exc:
            raise InvalidConfig(
                f"The entry script {path.name} has a syntax error at line {exc.lineno}: {exc.msg}. Fix it and deploy again."
            ) from None
        defined = set()
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                defined.add(node.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                defined.update(t.id for t in targets if isinstance(t, ast.Name))
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                defined.update((a.asname or a.name).split(".")[0] for a in node.names)
        missing = [fn for fn in ("init", "run") if fn not in defined]
        if missing:
            names = " and ".join(f"{m}()" for m in missing)
            raise InvalidConfig(
                f"The entry script {path.name} does not define {names}. A scoring script needs init() "
                f"(load the model once) and run(raw_data) (score one request)."
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "entry_script": self.entry_script,
            "source_directory": self.source_directory,
            "environment": self.environment.to_dict(),
            "description": self.description,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "InferenceConfig":
        return cls(
            entry_script=data["entry_script"],
            source_directory=data.get("source_directory"),
            environment=Environment.from_dict(data["environment"]),
            description=data.get("description"),
        )
