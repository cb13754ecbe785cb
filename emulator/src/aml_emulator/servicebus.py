"""Azure Service Bus for the emulator: an AMQP 1.0 broker built on Apache Qpid Proton
(``python-qpid-proton``'s server-capable container), speaking what the ``azure-servicebus``
SDK does with the connection string of Microsoft's own emulator
(``Endpoint=sb://127.0.0.1:<port>;...;UseDevelopmentEmulator=true``: plain AMQP, no TLS).

What it serves (the SDK's side of each is cited in the project's cloud-protocols reference, §5):

* **CBS** (``$cbs``): ``put-token`` with a SAS token, checked against the namespace's keys
  (HMAC-SHA256 over ``quote_plus(sr) + "\\n" + se`` with the key's UTF-8 bytes); a wrong key or
  an expired token answers 401, and an entity link opened without a valid token is refused.
* **Queues**: senders enqueue; receivers get messages in peek-lock (unsettled, lock token =
  delivery tag as ``uuid.bytes_le``, ``x-opt-locked-until``) or receive-and-delete (pre-settled).
  ``accepted`` completes, ``modified`` abandons (delivery count +1), ``rejected`` with
  ``com.microsoft:dead-letter`` dead-letters; a lock that expires counts as a delivery too; past
  the queue's maximum delivery count a message moves to ``<queue>/$DeadLetterQueue`` with reason
  ``MaxDeliveryCountExceeded``. Messages past their time-to-live are dropped (or dead-lettered
  with ``TTLExpiredException`` when the queue says so); ``x-opt-scheduled-enqueue-time`` holds a
  message back until then.
* **Management** (``<queue>/$management``): ``renew-lock``, ``schedule-message``,
  ``cancel-scheduled-message``, ``peek-message``.

Queues are made with :meth:`ServiceBusService.create_queue` (the emulator's API; Microsoft's
emulator reads them from its Config.json instead). Queues and messages are kept in
``state_dir/servicebus.json`` after every change, so they survive a restart.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote_plus, urlparse

import attrs

log = logging.getLogger(__name__)

KEY_NAME = "RootManageSharedAccessKey"
DEAD_LETTER = "$DeadLetterQueue"
MANAGEMENT = "$management"
#: Microsoft's emulator's defaults (overview-emulator.md): 1 h TTL; Service Bus's max delivery count
DEFAULT_TTL = 3600.0
DEFAULT_MAX_DELIVERY = 10
DEFAULT_LOCK = 60.0
#: 256 KB, the emulator's (and Standard tier's) message size limit
MAX_MESSAGE_BYTES = 256 * 1024
_TICK = 0.05


@attrs.define
class StoredMessage:
    sequence_number: int
    encoded: bytes
    enqueued_at: float
    visible_at: float
    expires_at: float | None
    delivery_count: int = 0
    locked_until: float = 0.0
    lock_token: str | None = None
    dead_letter_reason: str | None = None
    dead_letter_description: str | None = None

    def to_state(self) -> dict[str, Any]:
        state = attrs.asdict(self)
        state["encoded"] = base64.b64encode(self.encoded).decode()
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "StoredMessage":
        return cls(**{**state, "encoded": base64.b64decode(state["encoded"]), "locked_until": 0.0,
                      "lock_token": None})


@attrs.define
class Queue:
    name: str
    max_delivery_count: int = DEFAULT_MAX_DELIVERY
    lock_duration: float = DEFAULT_LOCK
    default_ttl: float = DEFAULT_TTL
    dead_lettering_on_expiration: bool = False
    messages: list[StoredMessage] = attrs.field(factory=list)
    dead_letters: list[StoredMessage] = attrs.field(factory=list)

    def to_state(self) -> dict[str, Any]:
        return {"name": self.name, "max_delivery_count": self.max_delivery_count,
                "lock_duration": self.lock_duration, "default_ttl": self.default_ttl,
                "dead_lettering_on_expiration": self.dead_lettering_on_expiration,
                "messages": [m.to_state() for m in self.messages],
                "dead_letters": [m.to_state() for m in self.dead_letters]}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "Queue":
        return cls(name=state["name"], max_delivery_count=state["max_delivery_count"],
                   lock_duration=state["lock_duration"], default_ttl=state["default_ttl"],
                   dead_lettering_on_expiration=state.get("dead_lettering_on_expiration", False),
                   messages=[StoredMessage.from_state(m) for m in state["messages"]],
                   dead_letters=[StoredMessage.from_state(m) for m in state["dead_letters"]])


def entity_path(address: str | None) -> str:
    """``amqps://ns/queue`` / ``sb://ns/queue`` / ``queue`` → ``queue`` (the path part)."""
    if not address:
        return ""
    if "://" in address:
        return urlparse(address).path.lstrip("/")
    return address.lstrip("/")


def sas_token(resource: str, key_name: str, key: str, expiry: int) -> str:
    """A SAS token as the SDK builds it (for tests and the CLI)."""
    signed = quote_plus(resource) + "\n" + str(expiry)
    signature = base64.b64encode(hmac.new(key.encode(), signed.encode(), hashlib.sha256).digest()).decode()
    from urllib.parse import urlencode

    return "SharedAccessSignature " + urlencode({"sr": resource, "sig": signature, "se": str(expiry),
                                                 "skn": key_name})


class ServiceBusService:
    """The broker: one namespace, on a loopback ephemeral port, its state in ``state_dir``."""

    def __init__(self, state_dir: str | Path, *, host: str = "127.0.0.1", key: str | None = None) -> None:
        self.state_dir = Path(state_dir)
        self.host = host
        self.port = 0
        self._lock = threading.RLock()
        self.queues: dict[str, Queue] = {}
        self._sequence = 0
        self._key = key
        self._container: Any = None
        self._thread: threading.Thread | None = None
        self._handler: Any = None

    # -- lifecycle and the emulator's API ------------------------------------------------------

    @property
    def _state_file(self) -> Path:
        return self.state_dir / "servicebus.json"

    def _load(self) -> None:
        if self._state_file.exists():
            state = json.loads(self._state_file.read_text())
            self._key = self._key or state["key"]
            self._sequence = int(state["sequence"])
            self.queues = {q["name"].lower(): Queue.from_state(q) for q in state["queues"]}
        self._key = self._key or base64.b64encode(secrets.token_bytes(32)).decode()

    def save(self) -> None:
        with self._lock:
            state = {"key": self._key, "sequence": self._sequence,
                     "queues": [q.to_state() for q in self.queues.values()]}
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self._state_file.with_name(".servicebus.json.tmp")
        tmp.write_text(json.dumps(state))
        tmp.chmod(0o600)
        tmp.replace(self._state_file)

    def start(self) -> "ServiceBusService":
        from proton.reactor import Container

        from aml_emulator._servicebus_amqp import BrokerHandler

        self._load()
        self._handler = BrokerHandler(self)
        self._container = Container(self._handler)
        from aml_emulator.arm.containers import free_port

        self.port = free_port(self.host)
        self._container.listen(f"{self.host}:{self.port}")
        self._container.schedule(_TICK, self._handler)
        ready = threading.Event()
        self._handler.ready = ready
        self._thread = threading.Thread(target=self._container.run, name="servicebus-amqp", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("The Service Bus AMQP listener did not start within 10 s.")
        return self

    def stop(self) -> None:
        if self._container is not None:
            self._handler.stopping = True
            self._container.stop()
            if self._thread is not None:
                self._thread.join(timeout=10)
            self._container = None
        self.save()

    @property
    def url(self) -> str:
        return f"sb://{self.host}:{self.port}"

    @property
    def connection_string(self) -> str:
        """The namespace's connection string in the form of Microsoft's emulator (plain AMQP)."""
        return (f"Endpoint=sb://{self.host}:{self.port};SharedAccessKeyName={KEY_NAME};"
                f"SharedAccessKey={self._key};UseDevelopmentEmulator=true;")

    def create_queue(self, name: str, *, max_delivery_count: int = DEFAULT_MAX_DELIVERY,
                     lock_duration: float = DEFAULT_LOCK, default_ttl: float = DEFAULT_TTL,
                     dead_lettering_on_expiration: bool = False) -> Queue:
        """Create queue ``name`` (or return it when it exists)."""
        if not name or "/" in name.strip("/") and not name.startswith("$") or len(name) > 260:
            raise ValueError(f"Invalid queue name {name!r}: 1-260 characters without '/'.")
        if max_delivery_count < 1:
            raise ValueError("max_delivery_count must be at least 1.")
        with self._lock:
            queue = self.queues.get(name.lower())
            if queue is None:
                queue = self.queues[name.lower()] = Queue(name=name, max_delivery_count=max_delivery_count,
                                                          lock_duration=lock_duration, default_ttl=default_ttl,
                                                          dead_lettering_on_expiration=dead_lettering_on_expiration)
        self.save()
        return queue

    def delete_queue(self, name: str) -> bool:
        with self._lock:
            found = self.queues.pop(name.lower(), None)
        self.save()
        return found is not None

    # -- SAS ------------------------------------------------------------------------------------

    def check_token(self, token: str, now: float | None = None) -> tuple[int, str, str | None]:
        """``(status, description, resource path)`` of a put-token: 200, or 401 with why."""
        if not isinstance(token, str) or not token.startswith("SharedAccessSignature "):
            return 401, "The token is not a SharedAccessSignature.", None
        fields = {k: v[0] for k, v in parse_qs(token[len("SharedAccessSignature "):]).items()}
        resource, signature, expiry, key_name = (fields.get(k) for k in ("sr", "sig", "se", "skn"))
        if not (resource and signature and expiry and key_name):
            return 401, "The SharedAccessSignature lacks sr, sig, se or skn.", None
        if key_name != KEY_NAME:
            return 401, f"The key name {key_name!r} is not a key of this namespace.", None
        expected = base64.b64encode(hmac.new(str(self._key).encode(), (quote_plus(resource) + "\n" + expiry).encode(),
                                             hashlib.sha256).digest()).decode()
        if not hmac.compare_digest(expected, signature):
            return 401, "InvalidSignature: the token's signature does not match the key.", None
        if not expiry.isdigit() or int(expiry) < (now or time.time()):
            return 401, "ExpiredToken: the token has expired.", None
        return 200, "OK", entity_path(resource)

    # -- queue operations (called on the broker's thread, under the lock) -------------------------

    def queue_for(self, path: str) -> tuple[Queue | None, bool]:
        """The queue of an entity path and whether it is its dead-letter sub-queue."""
        dead = path.lower().endswith("/" + DEAD_LETTER.lower())
        name = path[: -len(DEAD_LETTER) - 1] if dead else path
        return self.queues.get(name.lower()), dead

    def enqueue(self, queue: Queue, encoded: bytes, ttl: float | None, scheduled_at: float | None) -> int:
        now = time.time()
        self._sequence += 1
        ttl = ttl if ttl and ttl > 0 else queue.default_ttl
        visible = max(now, scheduled_at or now)
        queue.messages.append(StoredMessage(sequence_number=self._sequence, encoded=encoded, enqueued_at=now,
                                            visible_at=visible, expires_at=visible + ttl if ttl else None))
        return self._sequence

    def dead_letter(self, queue: Queue, message: StoredMessage, reason: str, description: str) -> None:
        queue.messages.remove(message)
        message.lock_token, message.locked_until = None, 0.0
        message.dead_letter_reason, message.dead_letter_description = reason, description
        queue.dead_letters.append(message)

    def expire(self, now: float) -> bool:
        """Drop (or dead-letter) expired messages, release expired locks; whether anything changed."""
        changed = False
        for queue in self.queues.values():
            for message in list(queue.messages):
                if message.lock_token and message.locked_until < now:
                    message.lock_token, message.locked_until = None, 0.0
                    changed = True
                    if message.delivery_count >= queue.max_delivery_count:
                        self.dead_letter(queue, message, "MaxDeliveryCountExceeded",
                                         f"Message could not be consumed after {queue.max_delivery_count} "
                                         f"delivery attempts.")
                        continue
                if message.expires_at is not None and message.expires_at < now and not message.lock_token:
                    changed = True
                    if queue.dead_lettering_on_expiration:
                        self.dead_letter(queue, message, "TTLExpiredException",
                                         "The message expired and was dead lettered.")
                    else:
                        queue.messages.remove(message)
        return changed

    def peek(self, name: str, dead_letters: bool = False) -> list[StoredMessage]:
        """The messages of a queue (or its dead-letter queue) now, for tests and the CLI."""
        with self._lock:
            queue = self.queues[name.lower()]
            return list(queue.dead_letters if dead_letters else queue.messages)
