"""The AMQP side of :mod:`aml_emulator.servicebus`: a Qpid Proton ``MessagingHandler`` that runs
on the broker's reactor thread. Every change to the queues happens here, under the service's lock."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from proton import Condition, Delivery, Link, Message, symbol, timestamp
from proton.handlers import MessagingHandler

from aml_emulator.servicebus import DEAD_LETTER, MANAGEMENT, MAX_MESSAGE_BYTES, Queue, StoredMessage, entity_path

log = logging.getLogger("aml_emulator.servicebus")
CBS = "$cbs"
_TICK = 0.05


def _ms(seconds: float) -> timestamp:
    return timestamp(int(seconds * 1000))


def _plain(value: Any) -> Any:
    """Proton's decoded values (symbols, arrays, described) as plain Python."""
    if hasattr(value, "elements"):
        return [_plain(v) for v in value.elements]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _links(connection: Any) -> list[Any]:
    found, link = [], connection.link_head(0)
    while link is not None:
        found.append(link)
        link = link.next(0)
    return found


class BrokerHandler(MessagingHandler):
    def __init__(self, service: Any) -> None:
        super().__init__(prefetch=50, auto_accept=False, auto_settle=False)
        self.service = service
        self.ready: Any = None
        self.stopping = False
        #: connection -> entity paths its CBS tokens cover, with their expiry
        self.tokens: dict[Any, list[tuple[str, float]]] = {}
        #: lock token -> (queue, message) of every delivery in peek-lock
        self.locked: dict[uuid.UUID, tuple[Queue, StoredMessage]] = {}
        self.consumers: list[Any] = []

    # -- lifecycle ------------------------------------------------------------------------------

    def on_reactor_init(self, event: Any) -> None:
        if self.ready is not None:
            self.ready.set()

    def on_timer_task(self, event: Any) -> None:
        if self.stopping:
            return
        with self.service._lock:  # noqa: SLF001 - the service and its handler are one unit
            now = time.time()
            for token, (queue, message) in list(self.locked.items()):
                if message.lock_token != str(token):
                    del self.locked[token]
            if self.service.expire(now):
                self.service.save()
        self._dispatch()
        event.reactor.schedule(_TICK, self)

    def on_connection_closed(self, event: Any) -> None:
        self.tokens.pop(event.connection, None)

    def on_disconnected(self, event: Any) -> None:
        self.tokens.pop(event.connection, None)
        self.consumers = [link for link in self.consumers if link.connection is not event.connection]

    # -- links ----------------------------------------------------------------------------------

    def on_link_opening(self, event: Any) -> None:
        link = event.link
        link.source.copy(link.remote_source)
        link.target.copy(link.remote_target)

    def on_link_opened(self, event: Any) -> None:
        link = event.link
        address = entity_path(link.remote_source.address if link.is_sender else link.remote_target.address)
        if address == CBS:
            return
        entity = address[: -len(MANAGEMENT) - 1] if address.endswith("/" + MANAGEMENT) else address
        queue, _dead = self.service.queue_for(entity)
        if not self._authorized(link.connection, entity):
            self._refuse(link, "amqp:unauthorized-access",
                         f"Unauthorized access. 'Listen'/'Send' claim(s) are required for '{entity}': put a valid "
                         f"SAS token on $cbs first.")
            return
        if queue is None:
            self._refuse(link, "amqp:not-found", f"The messaging entity '{entity}' could not be found. "
                                                 f"Create the queue first.")
            return
        if link.is_sender and not address.endswith("/" + MANAGEMENT):
            self.consumers.append(link)
            self._dispatch()

    def on_link_closed(self, event: Any) -> None:
        if event.link in self.consumers:
            self.consumers.remove(event.link)

    @staticmethod
    def _refuse(link: Any, name: str, description: str) -> None:
        link.condition = Condition(name, description)
        link.close()

    def _authorized(self, connection: Any, entity: str) -> bool:
        now = time.time()
        for resource, expiry in self.tokens.get(connection, []):
            if expiry >= now and (not resource or entity.lower() == resource.lower()
                                  or entity.lower().startswith(resource.lower().rstrip("/") + "/")):
                return True
        return False

    # -- what clients send ------------------------------------------------------------------------

    def on_message(self, event: Any) -> None:
        link, delivery, message = event.link, event.delivery, event.message
        address = entity_path(link.remote_target.address)
        if address == CBS:
            self._put_token(event.connection, message)
            delivery.update(Delivery.ACCEPTED)
            delivery.settle()
            return
        if address.endswith("/" + MANAGEMENT):
            self._management(event.connection, address[: -len(MANAGEMENT) - 1], message)
            delivery.update(Delivery.ACCEPTED)
            delivery.settle()
            return
        queue, dead = self.service.queue_for(address)
        encoded = message.encode()
        if queue is None or dead:
            delivery.local.condition = Condition("amqp:not-found", f"Cannot send to '{address}'.")
            delivery.update(Delivery.REJECTED)
        elif len(encoded) > MAX_MESSAGE_BYTES:
            delivery.local.condition = Condition("amqp:link:message-size-exceeded",
                                                 f"The message is {len(encoded)} bytes; the limit is "
                                                 f"{MAX_MESSAGE_BYTES}.")
            delivery.update(Delivery.REJECTED)
        else:
            annotations = {str(k): v for k, v in (message.annotations or {}).items()}
            scheduled = annotations.get("x-opt-scheduled-enqueue-time")
            with self.service._lock:  # noqa: SLF001
                self.service.enqueue(queue, encoded, message.ttl or None, _seconds(scheduled))
            self.service.save()
            delivery.update(Delivery.ACCEPTED)
        delivery.settle()
        self._dispatch()

    def _reply(self, connection: Any, source: str, reply: Message) -> None:
        for link in _links(connection):
            if link.is_sender and entity_path(link.remote_source.address) == source and link.state & \
                    Link.LOCAL_ACTIVE:
                delivery = link.send(reply)
                delivery.settle()
                return
        log.warning("No reply link from %r to answer on", source)

    def _put_token(self, connection: Any, message: Message) -> None:
        props = message.properties or {}
        status, description, resource = self.service.check_token(message.body)
        if status == 200 and resource is not None:
            expiry = _seconds(props.get("expiration")) or time.time() + 3600
            self.tokens.setdefault(connection, []).append((resource, expiry))
        reply = Message(correlation_id=message.id, properties={"status-code": status,
                                                               "status-description": description})
        self._reply(connection, message.reply_to or CBS, reply)

    def _management(self, connection: Any, entity: str, message: Message) -> None:
        props = {str(k): v for k, v in (message.properties or {}).items()}
        operation = str(props.get("operation") or "")
        body = _plain(message.body) if message.body is not None else {}
        with self.service._lock:  # noqa: SLF001
            queue, _dead = self.service.queue_for(entity)
            status, answer, description = self._operation(queue, operation, body or {})
            if status < 300:
                self.service.save()
        reply = Message(correlation_id=message.id, body=answer,
                        properties={"statusCode": status, "statusDescription": description})
        self._reply(connection, message.reply_to or f"{entity}/{MANAGEMENT}", reply)
        self._dispatch()

    def _operation(self, queue: Queue | None, operation: str, body: dict[str, Any]) -> tuple[int, Any, str]:
        if queue is None:
            return 404, None, "The messaging entity could not be found."
        now = time.time()
        if operation == "com.microsoft:renew-lock":
            expirations = []
            for token in body.get("lock-tokens") or []:
                found = self.locked.get(token if isinstance(token, uuid.UUID) else uuid.UUID(str(token)))
                if found is None or found[1].lock_token is None:
                    return 410, None, "The lock supplied is invalid. Either the lock expired, or the message " \
                                      "has already been removed from the queue."
                found[1].locked_until = now + queue.lock_duration
                expirations.append(_ms(found[1].locked_until))
            return 200, {"expirations": expirations}, "OK"
        if operation == "com.microsoft:schedule-message":
            numbers = []
            for item in body.get("messages") or []:
                encoded = bytes(item["message"])
                scheduled = Message()
                scheduled.decode(encoded)
                annotations = {str(k): v for k, v in (scheduled.annotations or {}).items()}
                numbers.append(self.service.enqueue(queue, encoded, scheduled.ttl or None,
                                                    _seconds(annotations.get("x-opt-scheduled-enqueue-time"))))
            return 200, {"sequence-numbers": numbers}, "OK"
        if operation == "com.microsoft:cancel-scheduled-message":
            wanted = set(body.get("sequence-numbers") or [])
            queue.messages = [m for m in queue.messages if m.sequence_number not in wanted or m.visible_at <= now]
            return 200, {}, "OK"
        if operation == "com.microsoft:peek-message":
            start = int(body.get("from-sequence-number") or 0)
            count = int(body.get("message-count") or 1)
            found = [m for m in queue.messages if m.sequence_number >= start][:count]
            if not found:
                return 204, None, "No messages to peek."
            return 200, {"messages": [{"message": self._outgoing(m, now).encode()} for m in found]}, "OK"
        if operation == "com.microsoft:update-disposition":
            return self._update_disposition(queue, body)
        return 501, None, f"The operation {operation!r} is not supported by the emulator."

    def _update_disposition(self, queue: Queue, body: dict[str, Any]) -> tuple[int, Any, str]:
        """Settlement through the management link (the SDK's fallback when the receive link is gone)."""
        status = str(body.get("disposition-status") or "")
        for token in body.get("lock-tokens") or []:
            token = token if isinstance(token, uuid.UUID) else uuid.UUID(str(token))
            found = self.locked.pop(token, None)
            if found is None or found[1].lock_token != str(token):
                return 410, None, "The lock supplied is invalid. Either the lock expired, or the message has " \
                                  "already been removed from the queue."
            message = found[1]
            message.lock_token, message.locked_until = None, 0.0
            if status == "completed":
                queue.messages.remove(message)
            elif status == "suspended":
                self.service.dead_letter(queue, message, str(body.get("deadletter-reason") or "Rejected"),
                                         str(body.get("deadletter-description") or ""))
            elif status == "abandoned" and message.delivery_count >= queue.max_delivery_count:
                self.service.dead_letter(queue, message, "MaxDeliveryCountExceeded",
                                         f"Message could not be consumed after {queue.max_delivery_count} "
                                         f"delivery attempts.")
        return 200, {}, "OK"

    # -- what clients receive ----------------------------------------------------------------------

    @staticmethod
    def _outgoing(stored: StoredMessage, now: float) -> Message:
        message = Message()
        message.decode(stored.encoded)
        annotations = dict(message.annotations or {})
        annotations.update({symbol("x-opt-sequence-number"): stored.sequence_number,
                            symbol("x-opt-enqueued-time"): _ms(stored.enqueued_at),
                            symbol("x-opt-enqueue-sequence-number"): stored.sequence_number})
        if stored.locked_until:
            annotations[symbol("x-opt-locked-until")] = _ms(stored.locked_until)
        message.annotations = annotations
        if stored.dead_letter_reason:
            message.properties = {**(message.properties or {}), "DeadLetterReason": stored.dead_letter_reason,
                                  "DeadLetterErrorDescription": stored.dead_letter_description or ""}
        # the header goes out only with a non-default field: first-acquirer marks a first delivery
        message.delivery_count = max(stored.delivery_count - 1, 0)
        message.first_acquirer = stored.delivery_count <= 1
        return message

    def _dispatch(self) -> None:
        now = time.time()
        for link in list(self.consumers):
            if not link.state & Link.LOCAL_ACTIVE:
                continue
            queue, dead = self.service.queue_for(entity_path(link.remote_source.address))
            if queue is None:
                continue
            presettled = link.remote_snd_settle_mode == Link.SND_SETTLED
            while link.credit > 0:
                with self.service._lock:  # noqa: SLF001
                    pool = queue.dead_letters if dead else queue.messages
                    stored = next((m for m in pool if not m.lock_token and m.visible_at <= now
                                   and (dead or m.expires_at is None or m.expires_at > now)), None)
                    if stored is None:
                        break
                    stored.delivery_count += 1
                    token = uuid.uuid4()
                    if not presettled:
                        stored.lock_token, stored.locked_until = str(token), now + queue.lock_duration
                        self.locked[token] = (queue, stored)
                    message = self._outgoing(stored, now)
                    if presettled:
                        pool.remove(stored)
                delivery = link.send(message, tag=token.bytes_le)
                # proton reads tags back as UTF-8 text, which a GUID's bytes are not: keep it aside
                delivery.lock_token = token
                if presettled:
                    delivery.settle()
                    self.service.save()

    def _settled(self, event: Any, outcome: Any) -> tuple[Queue, StoredMessage] | None:
        """Echo ``outcome`` settled (peek-lock receivers settle second and wait for it) and
        release the delivery's lock; its queue and message unless the lock had expired."""
        delivery = event.delivery
        token = getattr(delivery, "lock_token", None)
        found = self.locked.pop(token, None) if token is not None else None
        delivery.update(outcome)
        delivery.settle()
        if found is None or found[1].lock_token != str(token):
            return None  # the lock expired first: the message is someone else's now
        found[1].lock_token, found[1].locked_until = None, 0.0
        return found

    def on_accepted(self, event: Any) -> None:
        with self.service._lock:  # noqa: SLF001
            found = self._settled(event, Delivery.ACCEPTED)
            if found is not None:
                queue, message = found
                for pool in (queue.messages, queue.dead_letters):
                    if message in pool:
                        pool.remove(message)
                self.service.save()
        self._dispatch()

    def on_rejected(self, event: Any) -> None:
        condition = event.delivery.remote.condition
        with self.service._lock:  # noqa: SLF001
            found = self._settled(event, Delivery.REJECTED)
            if found is not None:
                queue, message = found
                info = _plain(condition.info) if condition is not None and condition.info else {}
                if message in queue.messages:
                    self.service.dead_letter(queue, message, str(info.get("DeadLetterReason") or "Rejected"),
                                             str(info.get("DeadLetterErrorDescription") or ""))
                self.service.save()
        self._dispatch()

    def on_released(self, event: Any) -> None:
        delivery = event.delivery
        failed = delivery.remote_state == Delivery.MODIFIED and delivery.remote.failed
        with self.service._lock:  # noqa: SLF001
            found = self._settled(event, Delivery.MODIFIED if delivery.remote_state == Delivery.MODIFIED
                                  else Delivery.RELEASED)
            if found is not None:
                queue, message = found
                if not failed:
                    message.delivery_count = max(message.delivery_count - 1, 0)
                elif message.delivery_count >= queue.max_delivery_count and message in queue.messages:
                    self.service.dead_letter(queue, message, "MaxDeliveryCountExceeded",
                                             f"Message could not be consumed after {queue.max_delivery_count} "
                                             f"delivery attempts.")
                self.service.save()
        self._dispatch()

    def on_sendable(self, event: Any) -> None:
        self._dispatch()


def _seconds(value: Any) -> float | None:
    """An AMQP timestamp (ms) or datetime as epoch seconds."""
    if value is None:
        return None
    if hasattr(value, "timestamp"):
        return float(value.timestamp())
    if isinstance(value, float):  # CBS expirations are seconds
        return value
    return int(value) / 1000.0


__all__ = ["BrokerHandler", "DEAD_LETTER"]
