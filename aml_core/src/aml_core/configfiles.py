"""``az ml``'s configuration files: ``inferenceconfig.json`` and ``deploymentconfig.json``.

Both are read in the schema Azure ML's CLI (v1) documents. Every problem is reported as
``<file>:<line>: <field>: <what is wrong and the fix>``: the JSON is parsed with a decoder
that remembers the line of every member (:func:`load_json`), and the fields are checked
against a declared schema (:class:`JsonField`).

``deploymentconfig.json`` is pluggable: its ``computeType`` names a target kind, and the
kind's deployment configuration class declares the fields it reads in
``deployment_json_fields`` (a tuple of :class:`JsonField`), so a provider adds its target's
file format with its configuration class; the CLI holds no table of targets.
"""

from __future__ import annotations

import difflib
import json
import json.decoder
import json.scanner
import os
import re
from pathlib import Path
from typing import Any, Iterable

import attrs

from aml_core.errors import AmlError, InvalidConfig


# -- JSON that remembers where each member was -------------------------------------------------


class LinedDict(dict):
    """A JSON object; ``lines[key]`` is the line its member's value starts on."""

    lines: dict[str, int]
    line: int


class LinedList(list):
    """A JSON array; ``lines[i]`` is the line its ``i``-th element starts on."""

    lines: list[int]
    line: int


def _line(text: str, index: int) -> int:
    return text.count("\n", 0, index) + 1


class _LinedDecoder(json.JSONDecoder):
    def __init__(self) -> None:
        super().__init__()
        self.parse_object = self._parse_object
        self.parse_array = self._parse_array
        # the pure-Python scanner honours parse_object/parse_array (the C one does not)
        self.scan_once = json.scanner.py_make_scanner(self)

    @staticmethod
    def _parse_object(s_and_end, strict, scan_once, object_hook, object_pairs_hook, memo=None):
        text, end = s_and_end
        starts: list[int] = []

        def scan_member(string: str, index: int):
            starts.append(index)
            return scan_once(string, index)

        pairs, new_end = json.decoder.JSONObject(s_and_end, strict, scan_member, None, lambda p: p, memo)
        result = LinedDict(pairs)
        result.lines = {key: _line(text, start) for (key, _), start in zip(pairs, starts)}
        result.line = _line(text, end)
        return result, new_end

    @staticmethod
    def _parse_array(s_and_end, scan_once):
        text, end = s_and_end
        starts: list[int] = []

        def scan_element(string: str, index: int):
            starts.append(index)
            return scan_once(string, index)

        values, new_end = json.decoder.JSONArray(s_and_end, scan_element)
        result = LinedList(values)
        result.lines = [_line(text, start) for start in starts]
        result.line = _line(text, end)
        return result, new_end


def load_json(path: str | os.PathLike, what: str) -> LinedDict:
    """Read a JSON object from ``path``, keeping each member's line; errors name file and line."""
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidConfig(f"The {what} {str(source)!r} does not exist.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidConfig(f"The {what} {str(source)!r} cannot be read: {exc}.") from None
    try:
        document = _LinedDecoder().decode(text)
    except json.JSONDecodeError as exc:
        raise InvalidConfig(f"{source}:{exc.lineno}: not valid JSON: {exc.msg} (column {exc.colno}).") from None
    if not isinstance(document, LinedDict):
        raise InvalidConfig(f"{source}:1: the {what} must be a JSON object ({{ ... }}), "
                            f"got {type(document).__name__}.")
    return document


# -- fields ------------------------------------------------------------------------------------

#: JSON types by the names a schema uses; ``number`` takes integers too
_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,),
    "object": (dict,), "array": (list,), "string map": (dict,), "string list": (list,),
}


@attrs.frozen
class JsonField:
    """One member of a configuration file.

    :param name: the member's name in the file (``"autoScaler"``).
    :param param: the keyword argument it becomes (``"autoscale_enabled"``); ``None`` for an
        object whose ``members`` are read instead.
    :param type: ``string``, ``integer``, ``number``, ``boolean``, ``object``, ``array``,
        ``string map`` (an object of strings) or ``string list``.
    :param members: for ``object``: the fields read inside it.
    :param required: a missing member is an error.
    """

    name: str
    param: str | None
    type: str
    members: tuple["JsonField", ...] = ()
    required: bool = False
    description: str = ""


@attrs.frozen
class FileLocation:
    """Where a value came from, for messages: ``file:line: field``."""

    path: str
    line: int
    field: str

    def error(self, problem: str) -> InvalidConfig:
        return InvalidConfig(f"{self.path}:{self.line}: {self.field}: {problem}")


def _type_ok(value: Any, kind: str) -> bool:
    if kind in ("integer", "number") and isinstance(value, bool):
        return False
    if not isinstance(value, _TYPES[kind]):
        return False
    if kind == "string map":
        return all(isinstance(v, str) for v in value.values())
    if kind == "string list":
        return all(isinstance(v, str) for v in value)
    return True


def read_fields(document: LinedDict, fields: Iterable[JsonField], path: str, *, prefix: str = "",
                ignore: Iterable[str] = ()) -> tuple[dict[str, Any], dict[str, FileLocation]]:
    """Check ``document`` against ``fields``; returns ``(kwargs, where each kwarg came from)``.

    Unknown members, wrong types and missing required members raise
    :class:`~aml_core.errors.InvalidConfig` naming the file, the line and the field (with
    the closest known name when a member looks misspelt). ``null`` means "not given".
    """
    fields = tuple(fields)
    by_name = {f.name: f for f in fields}
    kwargs: dict[str, Any] = {}
    origins: dict[str, FileLocation] = {}
    skipped = set(ignore)
    for key, value in document.items():
        where = FileLocation(path, document.lines.get(key, document.line), prefix + key)
        field = by_name.get(key)
        if field is None:
            if key in skipped:
                continue
            near = difflib.get_close_matches(key, list(by_name), n=1)
            hint = f" Did you mean {near[0]!r}?" if near else ""
            known = ", ".join(sorted(by_name))
            raise where.error(f"unknown field.{hint} The fields here are: {known}.")
        if value is None:
            continue
        if not _type_ok(value, field.type):
            shown = json.dumps(value)[:60]
            raise where.error(f"must be {'an' if field.type[0] in 'aeiou' else 'a'} {field.type}, got {shown}.")
        if field.members:
            inner, inner_origins = read_fields(value, field.members, path, prefix=f"{prefix}{key}.")
            kwargs.update(inner)
            origins.update(inner_origins)
        elif field.param is not None:
            kwargs[field.param] = dict(value) if isinstance(value, dict) else (
                list(value) if isinstance(value, list) else value)
            origins[field.param] = where
    for field in fields:
        if field.required and document.get(field.name) is None:
            raise FileLocation(path, document.line, prefix + field.name).error(
                f"is required{': ' + field.description if field.description else ''}.")
    return kwargs, origins


def build(factory: Any, kwargs: dict[str, Any], origins: dict[str, FileLocation], path: str) -> Any:
    """``factory(**kwargs)``, with a validation error tied to the file (and the field, when
    the message names one of them)."""
    try:
        return factory(**kwargs)
    except AmlError as exc:
        text = str(exc)
        for param, where in origins.items():
            if re.search(rf"\b{re.escape(param)}\b", text):
                raise where.error(text) from None
        raise InvalidConfig(f"{path}: {text}") from None


# -- inferenceconfig.json ------------------------------------------------------------------------

ENVIRONMENT_FIELDS = (
    JsonField("name", "name", "string", required=True, description="the environment's name"),
    JsonField("version", "version", "string"),
    JsonField("python", None, "object", members=(
        JsonField("userManagedDependencies", "user_managed_dependencies", "boolean"),
        JsonField("interpreterPath", "interpreter_path", "string"),
        JsonField("condaDependencies", "conda_dependencies", "object"),
        JsonField("baseCondaEnvironment", "base_conda_environment", "string"),
        JsonField("condaDependenciesFile", "conda_dependencies_file", "string"),
    )),
    JsonField("docker", None, "object", members=(
        JsonField("enabled", "docker_enabled", "boolean"),
        JsonField("baseImage", "base_image", "string"),
        JsonField("baseDockerfile", "base_dockerfile", "string"),
        JsonField("baseImageRegistry", "base_image_registry", "object"),
        JsonField("arguments", "docker_arguments", "string list"),
        JsonField("sharedVolumes", "shared_volumes", "boolean"),
        JsonField("shmSize", "shm_size", "string"),
    )),
    JsonField("environmentVariables", "environment_variables", "string map"),
    JsonField("inferencingStackVersion", "inferencing_stack_version", "string"),
    JsonField("spark", "spark", "object"),
    JsonField("r", "r", "object"),
    JsonField("databricks", "databricks", "object"),
)

INFERENCE_FIELDS = (
    JsonField("entryScript", "entry_script", "string", required=True,
              description="the scoring script with init() and run(), e.g. \"score.py\""),
    JsonField("sourceDirectory", "source_directory", "string"),
    JsonField("runtime", "runtime", "string"),
    JsonField("condaFile", "conda_file", "string"),
    JsonField("extraDockerfileSteps", "extra_docker_file_steps", "string"),
    JsonField("enableGpu", "enable_gpu", "boolean"),
    JsonField("baseImage", "base_image", "string"),
    JsonField("baseImageRegistry", "base_image_registry", "object"),
    JsonField("cudaVersion", "cuda_version", "string"),
    JsonField("description", "description", "string"),
    JsonField("environment", "environment", "object"),
    JsonField("schemaFile", "schema_file", "string"),
    JsonField("dependencies", "dependencies", "string list"),
)


def _environment(document: LinedDict, path: str, workspace: Any) -> Any:
    from aml_core.environment import Environment

    if set(document) <= {"name", "version"} and workspace is not None:
        fields, _ = read_fields(document, ENVIRONMENT_FIELDS, path, prefix="environment.")
        return Environment.get(workspace, fields["name"], fields.get("version"))
    return read_environment(document, path, prefix="environment.")


def read_environment(document: LinedDict, path: str, *, prefix: str = "", base: Path | None = None) -> Any:
    """An :class:`~aml_core.environment.Environment` from its JSON definition (the schema of
    ``azureml_environment.json`` and of ``inferenceconfig.json``'s ``environment``).
    ``python.condaDependenciesFile`` is relative to ``base`` (default: the current directory)."""
    from aml_core.environment import Environment, PythonSection

    fields, origins = read_fields(document, ENVIRONMENT_FIELDS, path, prefix=prefix)
    unsupported = [p for p in ("interpreter_path", "base_conda_environment", "base_image_registry", "spark", "r",
                               "databricks", "docker_arguments", "shared_volumes", "shm_size")
                   if fields.get(p) not in (None, {}, [], False)]
    if unsupported:
        raise origins[unsupported[0]].error("is not supported by this CLI's environments; leave it out "
                                           "(see docs/porting.md).")
    if fields.get("conda_dependencies_file"):
        conda_file = Path(fields["conda_dependencies_file"])
        env = Environment.from_conda_specification(fields["name"], (base or Path.cwd()) / conda_file)
    else:
        env = build(Environment, {"name": fields["name"]}, origins, path)
        if fields.get("conda_dependencies") is not None:
            env.python = PythonSection(conda_dependencies=_conda(fields["conda_dependencies"],
                                                                 origins["conda_dependencies"]))
    env.version = fields.get("version")
    env.python.user_managed_dependencies = bool(fields.get("user_managed_dependencies", False))
    env.docker.enabled = bool(fields.get("docker_enabled", False))
    env.docker.base_image = fields.get("base_image")
    env.docker.base_dockerfile = fields.get("base_dockerfile")
    env.environment_variables = dict(fields.get("environment_variables") or {})
    env.inferencing_stack_version = fields.get("inferencing_stack_version")
    return env


def _conda(spec: dict, where: FileLocation) -> Any:
    """A conda environment file's content (``{"channels": [...], "dependencies": [...]}``)."""
    from aml_core.environment import CondaDependencies

    deps = CondaDependencies()
    channels = spec.get("channels") or []
    dependencies = spec.get("dependencies") or []
    if not isinstance(channels, list) or not isinstance(dependencies, list):
        raise where.error("channels and dependencies must be arrays, as in a conda environment file.")
    deps.channels = [str(c) for c in channels]
    for item in dependencies:
        if isinstance(item, dict) and isinstance(item.get("pip"), list):
            for requirement in item["pip"]:
                try:
                    deps.add_pip_package(str(requirement))
                except InvalidConfig as exc:
                    raise where.error(str(exc)) from None
        elif isinstance(item, str):
            name = item.split("=")[0].strip()
            if name == "python":
                deps.python_version = item.split("=", 1)[1].lstrip("=").strip() if "=" in item else None
            else:
                deps.add_conda_package(item)
        else:
            raise where.error(f"unexpected dependency {json.dumps(item)[:60]}: give a conda spec or "
                              f"{{\"pip\": [...]}}.")
    return deps


def read_inference_config(path: str | os.PathLike, workspace: Any = None) -> Any:
    """An :class:`~aml_core.inference.InferenceConfig` from ``inferenceconfig.json``.

    Paths in it (``entryScript``, ``sourceDirectory``, ``condaFile``) are relative to the
    current directory, as ``az ml`` reads them. An ``environment`` holding only ``name``
    (and ``version``) names a registered environment of ``workspace``.
    """
    from aml_core.inference import InferenceConfig

    source = str(path)
    document = load_json(path, "inference configuration file")
    fields, origins = read_fields(document, INFERENCE_FIELDS, source)
    unsupported = [p for p in ("schema_file", "dependencies", "base_image_registry") if fields.get(p)]
    if unsupported:
        raise origins[unsupported[0]].error("is not supported by this CLI; leave it out (see docs/porting.md).")
    if "environment" in fields:
        fields["environment"] = _environment(document["environment"], source, workspace)
    return build(InferenceConfig, fields, origins, source)


# -- deploymentconfig.json ---------------------------------------------------------------------------


def read_deployment_config(path: str | os.PathLike, *, compute_type: str | None = None) -> Any:
    """The deployment configuration ``deploymentconfig.json`` describes.

    ``computeType`` picks the target kind (case-insensitive: ``"aks"``, ``"AKS"``); its
    configuration class reads the rest from its ``deployment_json_fields``. ``compute_type``
    is used when the file has no ``computeType`` (``--ct`` names a compute target of that
    kind).
    """
    from aml_core.plugins import default_hooks

    source = str(path)
    document = load_json(path, "deployment configuration file")
    hooks = default_hooks()
    kinds = {name.lower(): kind for name, kind in hooks.kinds.items()}
    given = document.get("computeType")
    where = FileLocation(source, document.lines.get("computeType", document.line), "computeType")
    if given is None:
        if compute_type is None:
            raise where.error(f"is required: the target kind, one of {', '.join(sorted(kinds))}.")
        given = compute_type
    if not isinstance(given, str):
        raise where.error(f"must be a string naming the target kind, got {json.dumps(given)}.")
    kind = kinds.get(given.lower())
    if kind is None:
        raise where.error(f"no installed provider serves {given!r}; the installed kinds are "
                          f"{', '.join(sorted(kinds))} (see `aml providers`).")
    config_cls = kind.deployment_config_class
    fields = getattr(config_cls, "deployment_json_fields", None)
    if fields is None:
        raise where.error(f"the {kind.name!r} target ({kind.provider}) cannot be configured from a file: its "
                          f"deployment configuration class declares no deployment_json_fields.")
    kwargs, origins = read_fields(document, fields, source, ignore=("computeType",))
    return build(config_cls, kwargs, origins, source)
