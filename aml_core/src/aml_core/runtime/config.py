"""Where a scoring service's settings come from: a spec file, or CLI arguments and env vars.

Spec file (``--spec``, written by the local provider; re-read on every reload)::

    {"entry_script": "/abs/score.py", "source_dir": "/abs/src" | null,
     "model_dir": "/abs/azureml-models/NAME/VERSION", "env": {"EXTRA": "value"},
     "scoring_timeout_ms": 60000 | null, "max_body_bytes": 1048576 | null,
     "memory_limit_bytes": 322122547 | null}   (optional; enforced by the supervisor)

Without a spec (inside an image) the Azure server's variables apply: ``AML_APP_ROOT``,
``AZUREML_SOURCE_DIRECTORY``, ``AZUREML_ENTRY_SCRIPT``, ``AZUREML_MODEL_DIR``,
``SCORING_TIMEOUT_MS``, ``SERVICE_PATH_PREFIX``, plus ``AML_MAX_BODY_BYTES``; the CLI's
``--entry_script`` and ``--model_dir`` override them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from aml_core.errors import InvalidConfig

DEFAULT_APP_ROOT = "/var/azureml-app"
DEFAULT_TIMEOUT_MS = 3_600_000
DEFAULT_MAX_BODY_BYTES = 100 * 1024 * 1024

SPEC_KEYS = {
    "entry_script",
    "source_dir",
    "model_dir",
    "env",
    "scoring_timeout_ms",
    "max_body_bytes",
    "memory_limit_bytes",
}


def _int_setting(value: Any, name: str, default: int) -> int:
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InvalidConfig(f"{name} must be an integer, got {value!r}.") from None
    if number <= 0:
        raise InvalidConfig(f"{name} must be positive, got {number}.")
    return number


def from_spec_file(path: str, environ: Mapping[str, str] | None = None) -> dict:
    """Read and validate a spec file; returns the worker configuration dict."""
    environ = os.environ if environ is None else environ
    try:
        with open(path, encoding="utf-8") as handle:
            spec = json.load(handle)
    except FileNotFoundError:
        raise InvalidConfig(f"The spec file {path} does not exist.") from None
    except (OSError, ValueError) as exc:
        raise InvalidConfig(f"The spec file {path} cannot be read as JSON: {exc}") from None
    if not isinstance(spec, dict):
        raise InvalidConfig(f"The spec file {path} must hold a JSON object.")
    unknown = set(spec) - SPEC_KEYS
    if unknown:
        raise InvalidConfig(
            f"The spec file {path} has unknown keys {sorted(unknown)}; allowed: {sorted(SPEC_KEYS)}."
        )
    entry = spec.get("entry_script")
    if not isinstance(entry, str) or not os.path.isabs(entry):
        raise InvalidConfig(f"The spec's entry_script must be an absolute path, got {entry!r}.")
    source_dir = spec.get("source_dir")
    if source_dir is not None and (
        not isinstance(source_dir, str) or not os.path.isabs(source_dir)
    ):
        raise InvalidConfig(
            f"The spec's source_dir must be an absolute path or null, got {source_dir!r}."
        )
    model_dir = spec.get("model_dir")
    if model_dir is not None and not isinstance(model_dir, str):
        raise InvalidConfig(f"The spec's model_dir must be a path, got {model_dir!r}.")
    extra_env = spec.get("env") or {}
    if not isinstance(extra_env, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in extra_env.items()
    ):
        raise InvalidConfig("The spec's env must map variable names to string values.")
    merged = {**environ, **extra_env}
    timeout = spec.get("scoring_timeout_ms")
    max_body = spec.get("max_body_bytes")
    memory_limit = spec.get("memory_limit_bytes")
    return {
        "memory_limit_bytes": None if memory_limit is None else _int_setting(memory_limit, "memory_limit_bytes", 0),
        "entry_script": entry,
        "source_dir": source_dir,
        "app_root": source_dir or os.path.dirname(entry),
        "model_dir": model_dir or merged.get("AZUREML_MODEL_DIR", ""),
        "env": extra_env,
        "scoring_timeout_ms": _int_setting(
            timeout if timeout is not None else merged.get("SCORING_TIMEOUT_MS"),
            "scoring_timeout_ms",
            DEFAULT_TIMEOUT_MS,
        ),
        "max_body_bytes": _int_setting(
            max_body if max_body is not None else merged.get("AML_MAX_BODY_BYTES"),
            "max_body_bytes",
            DEFAULT_MAX_BODY_BYTES,
        ),
        "path_prefix": merged.get("SERVICE_PATH_PREFIX", ""),
    }


def from_environment(
    entry_script: str | None = None,
    model_dir: str | None = None,
    environ: Mapping[str, str] | None = None,
    cwd: str | None = None,
) -> dict:
    """The in-image configuration: CLI overrides, then the Azure server's env vars."""
    environ = os.environ if environ is None else environ
    cwd = cwd or os.getcwd()
    app_root = environ.get("AML_APP_ROOT") or DEFAULT_APP_ROOT
    source_dir = environ.get("AZUREML_SOURCE_DIRECTORY") or None
    if source_dir and not os.path.isabs(source_dir):
        source_dir = os.path.join(app_root, source_dir)
    entry = entry_script or environ.get("AZUREML_ENTRY_SCRIPT") or None
    resolved = None
    if entry:
        if os.path.isabs(entry):
            resolved = entry
        else:
            candidates = [os.path.join(d, entry) for d in (source_dir, app_root) if d]
            if entry_script:  # a CLI argument is relative to the working directory first
                candidates.insert(0, os.path.join(cwd, entry))
            resolved = next((c for c in candidates if os.path.isfile(c)), candidates[0])
        resolved = os.path.abspath(resolved)
    model = model_dir or environ.get("AZUREML_MODEL_DIR", "")
    if model and model_dir:
        model = os.path.abspath(model)
    return {
        "entry_script": resolved,
        "source_dir": source_dir,
        "app_root": app_root,
        "model_dir": model,
        "env": {},
        "scoring_timeout_ms": _int_setting(
            environ.get("SCORING_TIMEOUT_MS"), "SCORING_TIMEOUT_MS", DEFAULT_TIMEOUT_MS
        ),
        "max_body_bytes": _int_setting(
            environ.get("AML_MAX_BODY_BYTES"), "AML_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES
        ),
        "path_prefix": environ.get("SERVICE_PATH_PREFIX", ""),
    }


def search_path(config: Mapping[str, Any]) -> list[str]:
    """Directories the worker puts in front of ``sys.path`` (source dir, script dir, app root)."""
    dirs = []
    entry = config.get("entry_script")
    for directory in (
        config.get("source_dir"),
        os.path.dirname(entry) if entry else None,
        config.get("app_root"),
    ):
        if directory and directory not in dirs:
            dirs.append(directory)
    return dirs
