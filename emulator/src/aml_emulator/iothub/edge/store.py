"""The edge hub's store-and-forward queues: one per endpoint, ordered by priority then arrival,
kept on disk so nothing accepted is lost when the edge hub restarts.

The log ``store.jsonl`` has ``add`` and ``ack`` records; it is replayed at start (and
compacted to the messages still pending). Expired messages (``timeToLiveSecs`` past, on the
store's clock) are skipped and dropped, as IoT Edge does. Delivery is at least once: a message
leaves its queue only when it was acknowledged.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any, Callable

import attrs


@attrs.define
class StoredMessage:
    id: int
    endpoint: str
    priority: int
    #: store-clock time after which the message is dropped (``None``: never)
    expires: float | None
    body: bytes = attrs.field(repr=False)
    properties: dict[str, str] = attrs.field(factory=dict)
    system: dict[str, str] = attrs.field(factory=dict)

    def to_record(self) -> dict[str, Any]:
        return {"op": "add", "id": self.id, "endpoint": self.endpoint, "priority": self.priority,
                "expires": self.expires, "body": self.body.decode("latin-1"), "properties": self.properties,
                "system": self.system}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "StoredMessage":
        return cls(id=record["id"], endpoint=record["endpoint"], priority=record["priority"],
                   expires=record["expires"], body=record["body"].encode("latin-1"),
                   properties=record.get("properties") or {}, system=record.get("system") or {})


class MessageStore:
    """Pending messages by endpoint; thread-safe; every change is appended and fsync'd."""

    def __init__(self, directory: Path, *, clock: Callable[[], float]) -> None:
        self.path = Path(directory) / "store.jsonl"
        self.clock = clock
        self._lock = threading.Lock()
        self._pending: dict[int, StoredMessage] = {}
        self._next_id = 1
        self.expired = 0
        self._load()

    def _load(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    break  # a torn last line from a crash: everything before it stands
                if record["op"] == "add":
                    self._pending[record["id"]] = StoredMessage.from_record(record)
                else:
                    self._pending.pop(record["id"], None)
                self._next_id = max(self._next_id, record["id"] + 1)
        tmp = self.path.with_name(".store.jsonl.tmp")
        with open(tmp, "w", encoding="utf-8") as handle:
            for message in self._pending.values():
                handle.write(json.dumps(message.to_record()) + "\n")
        os.replace(tmp, self.path)

    def _append(self, record: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def add(self, endpoint: str, body: bytes, properties: dict[str, str], system: dict[str, str], *,
            priority: int, ttl_seconds: float | None) -> StoredMessage:
        with self._lock:
            expires = None if ttl_seconds is None else self.clock() + ttl_seconds
            message = StoredMessage(self._next_id, endpoint, priority, expires, body, dict(properties), dict(system))
            self._next_id += 1
            self._append(message.to_record())
            self._pending[message.id] = message
            return message

    def ack(self, message_id: int) -> None:
        with self._lock:
            if self._pending.pop(message_id, None) is not None:
                self._append({"op": "ack", "id": message_id})

    def next_for(self, endpoint: str) -> StoredMessage | None:
        """The next message to deliver to ``endpoint`` (highest priority, then oldest),
        dropping expired ones on the way."""
        with self._lock:
            now = self.clock()
            candidates = sorted((m for m in self._pending.values() if m.endpoint == endpoint),
                                key=lambda m: (m.priority, m.id))
            for message in candidates:
                if message.expires is not None and message.expires <= now:
                    del self._pending[message.id]
                    self._append({"op": "ack", "id": message.id})
                    self.expired += 1
                    continue
                return message
            return None

    def endpoints(self) -> set[str]:
        with self._lock:
            return {m.endpoint for m in self._pending.values()}

    def pending(self, endpoint: str | None = None) -> int:
        with self._lock:
            return sum(1 for m in self._pending.values() if endpoint is None or m.endpoint == endpoint)
