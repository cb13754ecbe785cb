"""The object store: every API object, one resourceVersion counter for the whole store,
a bounded event history for watches, and optional persistence under a state directory.

Thread-safe: the API server (an event loop thread), the controllers and the kubelet all
read and write through it. Writers get deep copies in and out, so nobody mutates stored
state behind the store's back.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import json
import random
import threading
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

import attrs

from aml_core.secure_files import private_dir, write_private

from aml_emulator.cluster import exceptions as err
from aml_emulator.cluster.encryption import SecretsCipher
from aml_emulator.cluster.models import (
    RESOURCES,
    ResourceType,
    by_store_key,
    is_terminating,
    now_rfc3339,
)

FORMAT_VERSION = 1
# After a restart, RVs jump this far ahead of the last persisted one, so an RV handed out
# after the last save (and lost in a crash) is never handed out again.
RESTART_RV_GAP = 1000
HISTORY_LIMIT = 10000
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"


class StateFormatError(RuntimeError):
    """The state directory was written by a newer emulator; refuse rather than misread it."""


@attrs.define
class Event:
    rv: int
    type: str
    key: tuple[str, str]
    obj: dict
    old: dict | None


@attrs.define(eq=False)
class Watcher:
    key: tuple[str, str]
    namespace: str | None
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue


#: where Secrets live: apart from the other objects, sealed (see ``encryption.py``)
SECRETS_FILE = "cluster-secrets.enc"
DEFAULT_KEY_FILE = "encryption-key"
_SECRETS_KEY = ("", "secrets")


class Store:
    """:param encryption_key_file: the key Secrets are sealed with at rest (default
    ``<state_dir>/encryption-key``, made on first use)."""

    def __init__(self, state_dir: Path | None = None, *, save_delay: float = 0.2,
                 encryption_key_file: Path | None = None) -> None:
        self._lock = threading.RLock()
        self._save_lock = threading.Lock()
        self.changed = threading.Condition(self._lock)
        self._objects: dict[tuple[str, str], dict[tuple[str, str], dict]] = {
            r.store_key: {} for r in RESOURCES}
        self._apply_owners: dict[tuple, dict[str, dict]] = {}
        self._rv = 0
        self._history: collections.deque[Event] = collections.deque(maxlen=HISTORY_LIMIT)
        self._history_floor = 0  # the RV before the oldest event we can replay
        self._watchers: list[Watcher] = []
        self._sync_listeners: list[Callable[[Event], None]] = []
        self.state_dir = state_dir
        self._save_delay = save_delay
        self._dirty = threading.Event()
        self._closing = threading.Event()
        self._saver: threading.Thread | None = None
        self._cipher: SecretsCipher | None = None
        if state_dir is not None:
            private_dir(state_dir)
            self._cipher = SecretsCipher.load_or_create(encryption_key_file or state_dir / DEFAULT_KEY_FILE)
            self._load()
        self._history_floor = self._rv

    # ------------------------------------------------------------------ persistence
    @property
    def _state_file(self) -> Path:
        assert self.state_dir is not None
        return self.state_dir / "cluster-state.json"

    @property
    def _secrets_file(self) -> Path:
        assert self.state_dir is not None
        return self.state_dir / SECRETS_FILE

    def _load(self) -> None:
        assert self.state_dir is not None and self._cipher is not None
        if not self._state_file.exists():
            return
        data = json.loads(self._state_file.read_text())
        fmt = data.get("format")
        if not isinstance(fmt, int) or fmt > FORMAT_VERSION:
            raise StateFormatError(
                f"{self._state_file} was written with cluster state format {fmt!r}, newer than "
                f"this emulator's {FORMAT_VERSION}; upgrade aml-emulator or use a fresh state_dir")
        self._rv = int(data.get("rv", 0)) + RESTART_RV_GAP
        objects = list(data.get("objects", []))  # a state file from before the split holds Secrets too
        if self._secrets_file.exists():
            sealed = self._cipher.open(self._secrets_file.read_bytes(), self._secrets_file)
            objects.extend(json.loads(sealed))
        for obj in objects:
            key = tuple(obj.pop("__key"))
            m = obj["metadata"]
            self._objects.setdefault(key, {})[(m.get("namespace", ""), m["name"])] = obj
        for entry in data.get("applyOwners", []):
            self._apply_owners[tuple(entry["key"])] = entry["owners"]

    def start(self) -> None:
        if self.state_dir is not None and self._saver is None:
            self._saver = threading.Thread(target=self._save_loop, name="cluster-store-saver", daemon=True)
            self._saver.start()

    def _save_loop(self) -> None:
        while not self._closing.is_set():
            if self._dirty.wait(0.5):
                self._closing.wait(self._save_delay)
                self._dirty.clear()
                self.save()

    def save(self) -> None:
        if self.state_dir is None:
            return
        assert self._cipher is not None
        # one save at a time (the background saver and an explicit call may race): the
        # snapshot taken last is the one written last, never an older one over it
        with self._save_lock:
            self._save_snapshot()

    def _save_snapshot(self) -> None:
        with self._lock:
            objs, secrets = [], []
            for key, bucket in self._objects.items():
                for obj in bucket.values():
                    o = copy.deepcopy(obj)
                    o["__key"] = list(key)
                    (secrets if key == _SECRETS_KEY else objs).append(o)
            data = {"format": FORMAT_VERSION, "rv": self._rv, "objects": objs,
                    "applyOwners": [{"key": list(k), "owners": v} for k, v in self._apply_owners.items()]}
            text = json.dumps(data)
            sealed = self._cipher.seal(json.dumps(secrets).encode())
        # Secrets first: a crash between the two writes leaves the new Secrets beside the old
        # objects, never a state file whose Secrets have gone missing.
        write_private(self._secrets_file, sealed)
        write_private(self._state_file, text.encode())

    def close(self) -> None:
        self._closing.set()
        if self._saver is not None:
            self._saver.join(5)
            self._saver = None
        self.save()
        with self._lock:
            for w in list(self._watchers):
                self._post(w, None)
            self._watchers.clear()

    # ------------------------------------------------------------------ reads
    @property
    def resource_version(self) -> int:
        with self._lock:
            return self._rv

    def get(self, rt: ResourceType, namespace: str, name: str) -> dict:
        with self._lock:
            obj = self._objects[rt.store_key].get((namespace if rt.namespaced else "", name))
            if obj is None:
                raise err.not_found(rt.group, rt.plural, name)
            return copy.deepcopy(obj)

    def try_get(self, rt: ResourceType, namespace: str, name: str) -> dict | None:
        with self._lock:
            obj = self._objects[rt.store_key].get((namespace if rt.namespaced else "", name))
            return copy.deepcopy(obj) if obj is not None else None

    def list(self, rt: ResourceType, namespace: str | None = None,
             pred: Callable[[dict], bool] | None = None) -> tuple[list[dict], int]:
        with self._lock:
            items = [copy.deepcopy(o) for (ns, _), o in sorted(self._objects[rt.store_key].items())
                     if (namespace is None or ns == namespace) and (pred is None or pred(o))]
            return items, self._rv

    def all_objects(self) -> Iterable[tuple[ResourceType, dict]]:
        with self._lock:
            out = []
            for key, bucket in self._objects.items():
                rt = by_store_key(*key)
                out.extend((rt, copy.deepcopy(o)) for o in bucket.values())
            return out

    def exists_uid(self, uid: str) -> bool:
        with self._lock:
            return any(o["metadata"].get("uid") == uid for b in self._objects.values() for o in b.values())

    def apply_owners(self, rt: ResourceType, namespace: str, name: str) -> dict[str, dict]:
        with self._lock:
            return copy.deepcopy(self._apply_owners.get((*rt.store_key, namespace, name), {}))

    def set_apply_owner(self, rt: ResourceType, namespace: str, name: str, manager: str, cfg: dict) -> None:
        with self._lock:
            self._apply_owners.setdefault((*rt.store_key, namespace, name), {})[manager] = copy.deepcopy(cfg)
            self._dirty.set()

    # ------------------------------------------------------------------ writes
    def _commit(self, rt: ResourceType, type_: str, obj: dict, old: dict | None) -> dict:
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        ev = Event(self._rv, type_, rt.store_key, copy.deepcopy(obj), copy.deepcopy(old) if old else None)
        if len(self._history) == self._history.maxlen:
            self._history_floor = self._history[0].rv
        self._history.append(ev)
        for w in self._watchers:
            if w.key == rt.store_key and (w.namespace is None or w.namespace == obj["metadata"].get("namespace")):
                self._post(w, ev)
        for listener in self._sync_listeners:
            listener(ev)
        self._dirty.set()
        self.changed.notify_all()
        return copy.deepcopy(obj)

    @staticmethod
    def _post(w: Watcher, ev: Event | None) -> None:
        try:
            w.loop.call_soon_threadsafe(w.queue.put_nowait, ev)
        except RuntimeError:
            pass  # the loop is closed: the watch has gone

    def create(self, rt: ResourceType, obj: dict) -> dict:
        obj = copy.deepcopy(obj)
        m = obj.setdefault("metadata", {})
        with self._lock:
            bucket = self._objects[rt.store_key]
            if not m.get("name") and m.get("generateName"):
                for _ in range(100):
                    cand = m["generateName"] + "".join(random.choice(_NAME_CHARS) for _ in range(5))
                    if (m.get("namespace", ""), cand) not in bucket:
                        m["name"] = cand
                        break
            key = (m.get("namespace", "") if rt.namespaced else "", m["name"])
            if key in bucket:
                raise err.already_exists(rt.group, rt.plural, m["name"])
            m["uid"] = str(uuid.uuid4())
            m["creationTimestamp"] = now_rfc3339()
            m.pop("deletionTimestamp", None)
            if rt.has_spec_generation:
                m["generation"] = 1
            else:
                m.pop("generation", None)
            bucket[key] = obj
            self._apply_owners.pop((*rt.store_key, *key), None)
            return self._commit(rt, "ADDED", obj, None)

    def update(self, rt: ResourceType, obj: dict, *, subresource: str | None = None,
               check_rv: bool = True) -> dict:
        """Replace an object. The main resource keeps the stored status, ``/status`` keeps
        the stored spec; generation moves only when the spec changes."""
        obj = copy.deepcopy(obj)
        m = obj.setdefault("metadata", {})
        with self._lock:
            bucket = self._objects[rt.store_key]
            key = (m.get("namespace", "") if rt.namespaced else "", m.get("name", ""))
            old = bucket.get(key)
            if old is None:
                raise err.not_found(rt.group, rt.plural, m.get("name", ""))
            sent_rv = m.get("resourceVersion")
            if check_rv and sent_rv and sent_rv != old["metadata"]["resourceVersion"]:
                raise err.conflict(rt.group, rt.plural, key[1])
            om = old["metadata"]
            for f in ("uid", "creationTimestamp", "generation", "deletionTimestamp",
                      "deletionGracePeriodSeconds"):
                if f in om:
                    m[f] = om[f]
                else:
                    m.pop(f, None)
            if rt.has_status:
                if subresource == "status":
                    if "spec" in old:
                        obj["spec"] = copy.deepcopy(old["spec"])
                    else:
                        obj.pop("spec", None)
                else:
                    if "status" in old:
                        obj["status"] = copy.deepcopy(old["status"])
                    else:
                        obj.pop("status", None)
            if rt.has_spec_generation and obj.get("spec") != old.get("spec"):
                m["generation"] = int(om.get("generation", 1)) + 1
            m["resourceVersion"] = om["resourceVersion"]
            if obj == old:
                return copy.deepcopy(old)  # a no-op write does not bump the RV
            if is_terminating(obj) and not m.get("finalizers") and self._may_remove(rt, obj):
                del bucket[key]
                self._apply_owners.pop((*rt.store_key, *key), None)
                return self._commit(rt, "DELETED", obj, old)
            bucket[key] = obj
            return self._commit(rt, "MODIFIED", obj, old)

    def mutate(self, rt: ResourceType, namespace: str, name: str,
               fn: Callable[[dict], dict | None], *, subresource: str | None = None) -> dict | None:
        """Atomic read-modify-write for the controllers and the kubelet. ``fn`` gets a copy
        and returns the new object, or None to leave it alone. Missing object → None."""
        with self._lock:
            cur = self.try_get(rt, namespace, name)
            if cur is None:
                return None
            new = fn(cur)
            if new is None:
                return None
            return self.update(rt, new, subresource=subresource, check_rv=False)

    @staticmethod
    def _may_remove(rt: ResourceType, obj: dict) -> bool:
        """A terminating pod on a node stays until its kubelet has stopped it (the
        kubelet then sets the grace period to 0)."""
        if rt.plural != "pods" or rt.group:
            return True
        m = obj["metadata"]
        return not (obj.get("spec") or {}).get("nodeName") or m.get("deletionGracePeriodSeconds") == 0

    def delete(self, rt: ResourceType, namespace: str, name: str, *,
               propagation: str | None = None, grace: int | None = None,
               precondition_rv: str | None = None, precondition_uid: str | None = None) -> dict:
        with self._lock:
            bucket = self._objects[rt.store_key]
            key = (namespace if rt.namespaced else "", name)
            old = bucket.get(key)
            if old is None:
                raise err.not_found(rt.group, rt.plural, name)
            if precondition_rv and precondition_rv != old["metadata"]["resourceVersion"]:
                raise err.conflict(rt.group, rt.plural, name,
                                   "the ResourceVersion in the precondition does not match the ResourceVersion in record. The object might have been modified")
            if precondition_uid and precondition_uid != old["metadata"].get("uid"):
                raise err.conflict(rt.group, rt.plural, name,
                                   "the UID in the precondition does not match the UID in record. The object might have been deleted and then recreated")
            obj = copy.deepcopy(old)
            m = obj["metadata"]
            finalizers = list(m.get("finalizers") or [])
            if propagation == "Foreground" and "foregroundDeletion" not in finalizers:
                finalizers.append("foregroundDeletion")
            elif propagation == "Orphan" and "orphan" not in finalizers:
                finalizers.append("orphan")
            if rt.plural == "namespaces" and "kubernetes" not in (obj.get("spec") or {}).get("finalizers", []):
                obj.setdefault("spec", {})["finalizers"] = ["kubernetes"]
            is_pod = rt.plural == "pods" and not rt.group
            if is_pod:
                g = grace if grace is not None else int((obj.get("spec") or {}).get("terminationGracePeriodSeconds", 30))
                if "deletionGracePeriodSeconds" not in m or g < m["deletionGracePeriodSeconds"]:
                    m["deletionGracePeriodSeconds"] = g
            if rt.plural == "namespaces":
                obj.setdefault("status", {})["phase"] = "Terminating"
            needs_wait = bool(finalizers) or rt.plural == "namespaces" or not self._may_remove(rt, obj)
            if needs_wait:
                m["finalizers"] = finalizers
                if not finalizers:
                    m.pop("finalizers")
                m.setdefault("deletionTimestamp", now_rfc3339())
                if obj == old:
                    return copy.deepcopy(old)
                bucket[key] = obj
                return self._commit(rt, "MODIFIED", obj, old)
            del bucket[key]
            self._apply_owners.pop((*rt.store_key, *key), None)
            return self._commit(rt, "DELETED", obj, old)

    def remove_now(self, rt: ResourceType, namespace: str, name: str) -> dict | None:
        """Remove an object regardless of finalizers (namespace teardown, kubelet done)."""
        with self._lock:
            bucket = self._objects[rt.store_key]
            key = (namespace if rt.namespaced else "", name)
            old = bucket.pop(key, None)
            if old is None:
                return None
            self._apply_owners.pop((*rt.store_key, *key), None)
            obj = copy.deepcopy(old)
            obj["metadata"].setdefault("deletionTimestamp", now_rfc3339())
            return self._commit(rt, "DELETED", obj, old)

    # ------------------------------------------------------------------ watch
    def add_listener(self, fn: Callable[[Event], None]) -> None:
        with self._lock:
            self._sync_listeners.append(fn)

    def wait_for_change(self, timeout: float) -> None:
        with self._lock:
            self.changed.wait(timeout)

    def watch(self, rt: ResourceType, namespace: str | None, since_rv: int | None,
              loop: asyncio.AbstractEventLoop) -> tuple[Watcher, list[Event], list[dict], int]:
        """Register a watcher. With ``since_rv`` returns the history after it (410 if it has
        been compacted away); without it, returns the current objects for synthetic ADDED
        events. Registration and snapshot are atomic, so nothing is missed."""
        with self._lock:
            w = Watcher(rt.store_key, namespace, loop, asyncio.Queue())
            replay: list[Event] = []
            snapshot: list[dict] = []
            if since_rv is not None:
                if since_rv < self._history_floor:
                    raise err.gone(f"too old resource version: {since_rv} ({self._history_floor + 1})")
                replay = [e for e in self._history if e.rv > since_rv and e.key == rt.store_key
                          and (namespace is None or e.obj["metadata"].get("namespace") == namespace)]
            else:
                snapshot, _ = self.list(rt, namespace)
            self._watchers.append(w)
            return w, replay, snapshot, self._rv

    def unwatch(self, w: Watcher) -> None:
        with self._lock:
            if w in self._watchers:
                self._watchers.remove(w)

    def compact(self) -> None:
        """Forget the watch history (as etcd compaction does); older RVs then get 410."""
        with self._lock:
            self._history.clear()
            self._history_floor = self._rv
