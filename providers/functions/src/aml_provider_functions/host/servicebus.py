"""Service Bus queue trigger, with the real ``azure-servicebus`` client, as the host runs it:
receive in peek-lock, renew the lock while the function runs (up to
``maxAutoLockRenewalDuration``), complete on success (``autoCompleteMessages``), abandon on
failure so the broker counts the delivery and dead-letters the message past the queue's
maximum delivery count; ``serviceBus`` out bindings are sent before the completion, so a kill
in between delivers the message again rather than losing its result.
"""

from __future__ import annotations

import datetime as _dt
import logging
import threading
from typing import Any

from aml_provider_functions.host.app import Function

log = logging.getLogger("aml.functions.host")
RECONNECT_DELAY = 1.0


def _seconds(text: str, default: float) -> float:
    try:
        hours, minutes, seconds = (float(part) for part in text.split(":"))
    except (AttributeError, ValueError):
        return default
    return hours * 3600 + minutes * 60 + seconds


class ServiceBusTriggerListener:
    def __init__(self, function: Function, settings: dict[str, str], host: dict[str, Any]) -> None:
        self.function = function
        trigger = function.trigger
        self.queue = str(trigger.get("queueName") or "")
        if not self.queue:
            raise RuntimeError(f"Function {function.name!r}: the serviceBusTrigger names no queueName.")
        self.connection_name = str(trigger.get("connection") or "AzureWebJobsServiceBus")
        self.connection = settings.get(self.connection_name)
        if not self.connection:
            raise RuntimeError(f"Function {function.name!r}: the app setting {self.connection_name!r} (the Service "
                               f"Bus trigger's connection) is not set.")
        self.settings = settings
        options = (host.get("extensions") or {}).get("serviceBus") or {}
        self.auto_complete = bool(options.get("autoCompleteMessages", True))
        self.renew_for = _seconds(str(options.get("maxAutoLockRenewalDuration", "00:05:00")), 300.0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"servicebus-{function.name}", daemon=True)

    def start(self) -> "ServiceBusTriggerListener":
        self._thread.start()
        log.info("Service Bus trigger of 'Functions.%s' listening on queue %r", self.function.name, self.queue)
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        from azure.servicebus import AutoLockRenewer, ServiceBusClient, ServiceBusReceiveMode

        while not self._stop.is_set():
            #: output senders stay open with the connection: opening one costs a CBS round trip
            senders: dict[tuple[str, str], Any] = {}
            try:
                with ServiceBusClient.from_connection_string(self.connection) as client, \
                        client.get_queue_receiver(self.queue, receive_mode=ServiceBusReceiveMode.PEEK_LOCK) as receiver, \
                        AutoLockRenewer(max_lock_renewal_duration=self.renew_for) as renewer:
                    while not self._stop.is_set():
                        for message in receiver.receive_messages(max_message_count=1, max_wait_time=1):
                            renewer.register(receiver, message)
                            self._handle(client, receiver, message, senders)
            except Exception:  # the namespace went away for a moment: log, reconnect
                log.exception("Receiving from queue %r for 'Functions.%s' failed; reconnecting", self.queue,
                              self.function.name)
                self._stop.wait(RECONNECT_DELAY)
            finally:
                for sender in senders.values():
                    try:
                        sender.close()
                    except Exception:  # already gone with its connection
                        log.debug("Closing an output sender failed", exc_info=True)

    def _handle(self, client: Any, receiver: Any, message: Any, senders: dict[tuple[str, str], Any]) -> None:
        try:
            _, outputs = self.function.invoke(_function_message(message),
                                              "(null)" if message.message_id is None else
                                              f"Trigger Details: MessageId: {message.message_id}, "
                                              f"DeliveryCount: {message.delivery_count}")
            self._send_outputs(client, outputs, senders)
        except Exception:
            receiver.abandon_message(message)
            return
        if self.auto_complete:
            receiver.complete_message(message)

    def _send_outputs(self, client: Any, outputs: dict[str, Any], senders: dict[tuple[str, str], Any]) -> None:
        from azure.servicebus import ServiceBusClient, ServiceBusMessage

        for binding in self.function.outputs():
            if binding.get("type") != "serviceBus" or binding["name"] not in outputs:
                continue
            name = str(binding.get("connection") or self.connection_name)
            value = outputs[binding["name"]]
            body = value if isinstance(value, (str, bytes)) else str(value)
            queue = str(binding.get("queueName") or binding.get("topicName"))
            sender = senders.get((name, queue))
            if sender is None:
                target = client if name == self.connection_name else \
                    ServiceBusClient.from_connection_string(self.settings[name])
                sender = senders[(name, queue)] = target.get_queue_sender(queue)
            sender.send_messages(ServiceBusMessage(body))


def _function_message(message: Any) -> Any:
    """The SDK's received message as ``azure.functions.ServiceBusMessage``."""
    from azure.functions.servicebus import ServiceBusMessage

    body = b"".join(part if isinstance(part, bytes) else str(part).encode() for part in message.body)
    ttl = message.time_to_live if isinstance(message.time_to_live, _dt.timedelta) else None
    return ServiceBusMessage(
        body=body, application_properties=dict(message.application_properties or {}),
        content_type=message.content_type, correlation_id=message.correlation_id,
        dead_letter_error_description=message.dead_letter_error_description,
        dead_letter_reason=message.dead_letter_reason, dead_letter_source=message.dead_letter_source,
        delivery_count=message.delivery_count, enqueued_sequence_number=message.enqueued_sequence_number,
        enqueued_time_utc=message.enqueued_time_utc, expires_at_utc=message.expires_at_utc,
        label=message.subject, locked_until=message.locked_until_utc, lock_token=str(message.lock_token),
        message_id=message.message_id or "", partition_key=message.partition_key, reply_to=message.reply_to,
        reply_to_session_id=message.reply_to_session_id,
        scheduled_enqueue_time_utc=message.scheduled_enqueue_time_utc, sequence_number=message.sequence_number,
        session_id=message.session_id, subject=message.subject, time_to_live=ttl, to=message.to,
        user_properties={str(k): v for k, v in (message.application_properties or {}).items()})
