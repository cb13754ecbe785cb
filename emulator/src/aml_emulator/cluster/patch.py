"""The four PATCH flavours: JSON patch (RFC 6902), JSON merge patch (RFC 7386),
strategic merge patch (lists merged by key) and server-side apply (simplified ownership).
"""

from __future__ import annotations

import copy
from typing import Any

from aml_emulator.cluster.exceptions import ApiError, bad_request

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
APPLY_PATCH_CBOR = "application/apply-patch+cbor"

# Strategic merge keys, by field name (what the Kubernetes Go structs declare with
# patchStrategy=merge). ``ports`` depends on where it is: containerPort in a container,
# port in a service.
MERGE_KEYS: dict[str, str] = {
    "containers": "name", "initContainers": "name", "ephemeralContainers": "name",
    "env": "name", "volumes": "name", "volumeMounts": "mountPath", "volumeDevices": "devicePath",
    "imagePullSecrets": "name", "ownerReferences": "uid", "conditions": "type",
    "hostAliases": "ip", "topologySpreadConstraints": "topologyKey", "resourceClaims": "name",
}
MERGE_PRIMITIVE_LISTS = {"finalizers"}


def _merge_key(field: str, items: list) -> str | None:
    if field == "ports":
        for it in items:
            if isinstance(it, dict):
                return "containerPort" if "containerPort" in it else "port"
        return None
    return MERGE_KEYS.get(field)


# --------------------------------------------------------------------------- JSON patch

def _unescape(tok: str) -> str:
    return tok.replace("~1", "/").replace("~0", "~")


def _walk(doc: Any, pointer: str) -> tuple[Any, str]:
    if not pointer.startswith("/"):
        raise bad_request(f"invalid JSON pointer: {pointer!r}")
    toks = [_unescape(t) for t in pointer.split("/")[1:]]
    cur = doc
    for t in toks[:-1]:
        if isinstance(cur, list):
            try:
                cur = cur[int(t)]
            except (ValueError, IndexError):
                raise bad_request(f"the server rejected our request due to an error in our request: doc is missing path: {pointer!r}")
        elif isinstance(cur, dict) and t in cur:
            cur = cur[t]
        else:
            raise bad_request(f"the server rejected our request due to an error in our request: doc is missing path: {pointer!r}")
    return cur, toks[-1]


def _get(doc: Any, pointer: str) -> Any:
    if pointer == "":
        return doc
    parent, last = _walk(doc, pointer)
    try:
        return parent[int(last)] if isinstance(parent, list) else parent[last]
    except (KeyError, IndexError, ValueError, TypeError):
        raise bad_request(f"the server rejected our request due to an error in our request: doc is missing key: {pointer!r}")


def _add(doc: Any, pointer: str, value: Any) -> Any:
    if pointer == "":
        return value
    parent, last = _walk(doc, pointer)
    if isinstance(parent, list):
        if last == "-":
            parent.append(value)
        else:
            try:
                idx = int(last)
            except ValueError:
                raise bad_request(f"invalid array index in {pointer!r}")
            if idx < 0 or idx > len(parent):
                raise bad_request(f"array index out of bounds in {pointer!r}")
            parent.insert(idx, value)
    elif isinstance(parent, dict):
        parent[last] = value
    else:
        raise bad_request(f"cannot add at {pointer!r}")
    return doc


def _remove(doc: Any, pointer: str) -> Any:
    parent, last = _walk(doc, pointer)
    try:
        if isinstance(parent, list):
            del parent[int(last)]
        else:
            del parent[last]
    except (KeyError, IndexError, ValueError, TypeError):
        raise bad_request(f"the server rejected our request due to an error in our request: Unable to remove nonexistent key: {last}: missing value")
    return doc


def json_patch(doc: dict, ops: Any) -> dict:
    if not isinstance(ops, list):
        raise bad_request("json patch must be a list of operations")
    doc = copy.deepcopy(doc)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise bad_request(f"invalid json patch operation: {op!r}")
        kind, path = op["op"], op["path"]
        if kind == "add":
            doc = _add(doc, path, copy.deepcopy(op.get("value")))
        elif kind == "remove":
            doc = _remove(doc, path)
        elif kind == "replace":
            _get(doc, path)
            if path == "":
                doc = copy.deepcopy(op.get("value"))
            else:
                parent, last = _walk(doc, path)
                if isinstance(parent, list):
                    parent[int(last)] = copy.deepcopy(op.get("value"))
                else:
                    parent[last] = copy.deepcopy(op.get("value"))
        elif kind in ("move", "copy"):
            value = copy.deepcopy(_get(doc, op.get("from", "")))
            if kind == "move":
                doc = _remove(doc, op["from"])
            doc = _add(doc, path, value)
        elif kind == "test":
            if _get(doc, path) != op.get("value"):
                raise ApiError(422, "Invalid", f"the server rejected our request due to an error in our request: testing value {path} failed")
        else:
            raise bad_request(f"unknown json patch operation {kind!r}")
    return doc


# --------------------------------------------------------------------------- merge patch

def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = merge_patch(result.get(k), v)
    return result


# --------------------------------------------------------------------------- strategic merge

def strategic_merge(target: Any, patch: Any, field: str | None = None) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if patch.get("$patch") == "delete":
        return None
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    retain = patch.get("$retainKeys")
    for k, v in patch.items():
        if k.startswith("$setElementOrder/") or k in ("$retainKeys", "$patch"):
            continue
        if k.startswith("$deleteFromPrimitiveList/"):
            name = k.split("/", 1)[1]
            if isinstance(result.get(name), list):
                result[name] = [x for x in result[name] if x not in (v or [])]
            continue
        if v is None:
            result.pop(k, None)
        elif isinstance(v, list):
            result[k] = _merge_list(result.get(k), v, k)
        elif isinstance(v, dict):
            merged = strategic_merge(result.get(k), v, k)
            if merged is None:
                result.pop(k, None)
            else:
                result[k] = merged
        else:
            result[k] = copy.deepcopy(v)
    if isinstance(retain, list):
        for k in list(result):
            if k not in retain:
                result.pop(k)
    for k, v in patch.items():
        if k.startswith("$setElementOrder/"):
            name = k.split("/", 1)[1]
            _apply_order(result, name, v)
    return result


def _apply_order(result: dict, name: str, order: list) -> None:
    items = result.get(name)
    if not isinstance(items, list) or not isinstance(order, list):
        return
    key = _merge_key(name, items)
    if key is None:
        return
    pos = {(o.get(key) if isinstance(o, dict) else o): i for i, o in enumerate(order)}
    items.sort(key=lambda it: pos.get(it.get(key) if isinstance(it, dict) else it, len(pos)))


def _merge_list(current: Any, patch: list, field: str) -> list:
    current = current if isinstance(current, list) else []
    if field in MERGE_PRIMITIVE_LISTS:
        out = list(current)
        for x in patch:
            if x not in out:
                out.append(x)
        return out
    key = _merge_key(field, patch + current)
    if key is None:
        if len(patch) == 1 and isinstance(patch[0], dict) and patch[0].get("$patch") == "replace":
            return []
        return copy.deepcopy(patch)
    out = copy.deepcopy(current)
    for item in patch:
        if not isinstance(item, dict):
            continue
        if item.get("$patch") == "replace" and key not in item:
            out = []
            continue
        kv = item.get(key)
        idx = next((i for i, c in enumerate(out) if isinstance(c, dict) and c.get(key) == kv), None)
        if item.get("$patch") == "delete":
            if idx is not None:
                del out[idx]
            continue
        if idx is None:
            out.append(strategic_merge({}, item))
        else:
            out[idx] = strategic_merge(out[idx], item)
    return out


# --------------------------------------------------------------------------- server-side apply

def field_paths(obj: Any, prefix: tuple = (), field: str | None = None) -> set[tuple]:
    """Leaf paths of an applied configuration; keyed list items become ``(key, value)``
    segments, so ownership follows containers by name rather than by index."""
    out: set[tuple] = set()
    if isinstance(obj, dict):
        if not obj and prefix:
            out.add(prefix)
        for k, v in obj.items():
            out |= field_paths(v, prefix + (k,), k)
    elif isinstance(obj, list) and field is not None and (_merge_key(field, obj) is not None):
        key = _merge_key(field, obj)
        for it in obj:
            if isinstance(it, dict) and key in it:
                out |= field_paths(it, prefix + ((key, it[key]),), None) | {prefix + ((key, it[key]),)}
    else:
        out.add(prefix)
    return out


def path_value(obj: Any, path: tuple) -> tuple[bool, Any]:
    cur = obj
    for seg in path:
        if isinstance(seg, tuple):
            if not isinstance(cur, list):
                return False, None
            cur = next((it for it in cur if isinstance(it, dict) and it.get(seg[0]) == seg[1]), None)
            if cur is None:
                return False, None
        else:
            if not isinstance(cur, dict) or seg not in cur:
                return False, None
            cur = cur[seg]
    return True, cur


def remove_path(obj: Any, path: tuple) -> None:
    cur = obj
    for seg in path[:-1]:
        found, cur = path_value(cur, (seg,))
        if not found:
            return
    last = path[-1]
    if isinstance(last, tuple) and isinstance(cur, list):
        cur[:] = [it for it in cur if not (isinstance(it, dict) and it.get(last[0]) == last[1])]
    elif isinstance(cur, dict):
        cur.pop(last, None)


def render_path(path: tuple) -> str:
    out = ""
    for seg in path:
        out += f'[{seg[0]}="{seg[1]}"]' if isinstance(seg, tuple) else f".{seg}"
    return out


def apply(current: dict | None, applied: dict, manager: str, owners: dict[str, dict],
          force: bool) -> tuple[dict, list[tuple[str, str]]]:
    """Merge ``applied`` (the full intent of ``manager``) into ``current``.

    ``owners`` maps each apply manager to its last applied configuration. Returns the new
    object and the conflicts (``(manager, path)``) that block it when ``force`` is false.
    Fields the manager applied before and dropped now are removed unless another manager
    still applies them.
    """
    base = current or {}
    new_paths = field_paths(applied)
    conflicts: list[tuple[str, str]] = []
    for other, cfg in owners.items():
        if other == manager:
            continue
        for p in field_paths(cfg) & new_paths:
            if p[:1] in (("apiVersion",), ("kind",)) or p[:2] in (("metadata", "name"), ("metadata", "namespace")):
                continue
            _, mine = path_value(applied, p)
            found, theirs = path_value(base, p)
            if found and mine != theirs and not isinstance(mine, (dict, list)):
                conflicts.append((other, render_path(p)))
    if conflicts and not force:
        return base, conflicts
    result = strategic_merge(base, applied)
    previous = owners.get(manager)
    if previous is not None:
        others = set()
        for other, cfg in owners.items():
            if other != manager:
                others |= field_paths(cfg)
        for p in sorted(field_paths(previous) - new_paths - others, key=len, reverse=True):
            remove_path(result, p)
    return result, conflicts
