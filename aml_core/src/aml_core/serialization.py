"""JSON <-> record conversion, kept apart from the record classes themselves."""

from __future__ import annotations

import json
from typing import Any, TypeVar

import attrs

from aml_core.records import FileEntry, ImageRecord, ModelRecord, ServiceRecord

T = TypeVar("T")


def to_dict(record: Any) -> dict[str, Any]:
    """A JSON-ready dict of an attrs record (tuples become lists)."""
    return attrs.asdict(record, filter=lambda a, v: a.repr is not False or v is None)


def to_json(record: Any) -> str:
    return json.dumps(to_dict(record), sort_keys=True)


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    names = {a.name for a in attrs.fields(cls)}
    return {k: v for k, v in data.items() if k in names}


def model_from_dict(data: dict[str, Any]) -> ModelRecord:
    fields = _known(ModelRecord, data)
    fields["files"] = tuple(FileEntry(**_known(FileEntry, f)) for f in data.get("files", ()))
    return ModelRecord(**fields)


def service_from_dict(data: dict[str, Any]) -> ServiceRecord:
    fields = _known(ServiceRecord, data)
    fields["models"] = tuple(data.get("models", ()))
    return ServiceRecord(**fields)


def image_from_dict(data: dict[str, Any]) -> ImageRecord:
    return ImageRecord(**_known(ImageRecord, data))
