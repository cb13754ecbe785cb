"""The emulator's Service Bus: an AMQP 1.0 broker driven with the real azure-servicebus SDK and
the connection string of Microsoft's emulator (UseDevelopmentEmulator=true, plain AMQP)."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from aml_emulator.servicebus import ServiceBusService


@pytest.fixture
def broker(tmp_path):
    service = ServiceBusService(tmp_path / "sb").start()
    yield service
    service.stop()


def _send(connection_string, queue, *bodies, **kwargs):
    from azure.servicebus import ServiceBusClient, ServiceBusMessage

    with ServiceBusClient.from_connection_string(connection_string) as client, \
            client.get_queue_sender(queue) as sender:
        for body in bodies:  # one at a time: the broker does not unpack batched (list) sends
            sender.send_messages(ServiceBusMessage(body, **kwargs))


def test_peek_lock_complete_abandon_and_dead_letter_after_max_deliveries(broker):
    from azure.servicebus import ServiceBusClient, ServiceBusSubQueue

    broker.create_queue("work", max_delivery_count=3)
    _send(broker.connection_string, "work", "done", "poison")
    with ServiceBusClient.from_connection_string(broker.connection_string) as client:
        with client.get_queue_receiver("work", max_wait_time=2) as receiver:
            first = receiver.receive_messages(max_message_count=1, max_wait_time=5)[0]
            assert str(first) == "done" and first.sequence_number >= 1 and first.lock_token
            before = first.locked_until_utc
            assert receiver.renew_message_lock(first) >= before
            receiver.complete_message(first)
            counts = []
            for _ in range(3):
                message = receiver.receive_messages(max_message_count=1, max_wait_time=5)[0]
                assert str(message) == "poison"
                counts.append(message.delivery_count or 0)
                receiver.abandon_message(message)
            assert counts == [0, 1, 2]
            assert receiver.receive_messages(max_message_count=1, max_wait_time=1) == []
        with client.get_queue_receiver("work", sub_queue=ServiceBusSubQueue.DEAD_LETTER, max_wait_time=2) as dlq:
            dead = dlq.receive_messages(max_message_count=1, max_wait_time=5)[0]
            assert str(dead) == "poison" and dead.dead_letter_reason == "MaxDeliveryCountExceeded"
            dlq.complete_message(dead)
    assert broker.peek("work") == [] and broker.peek("work", dead_letters=True) == []


def test_explicit_dead_letter_ttl_and_scheduled_messages(broker):
    from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusSubQueue

    broker.create_queue("jobs", default_ttl=60, dead_lettering_on_expiration=True)
    _send(broker.connection_string, "jobs", "bad")
    _send(broker.connection_string, "jobs", "short-lived", time_to_live=dt.timedelta(seconds=1))
    with ServiceBusClient.from_connection_string(broker.connection_string) as client:
        with client.get_queue_sender("jobs") as sender:
            later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=3)
            (number,) = sender.schedule_messages(ServiceBusMessage("later"), later)
            assert number > 0
        with client.get_queue_receiver("jobs", max_wait_time=1) as receiver:
            bad = receiver.receive_messages(max_message_count=1, max_wait_time=5)[0]
            assert str(bad) == "bad"
            receiver.dead_letter_message(bad, reason="BadPayload", error_description="not JSON")
            deadline = time.monotonic() + 10
            got = []
            while time.monotonic() < deadline and not got:
                got = receiver.receive_messages(max_message_count=1, max_wait_time=1)
            assert [str(m) for m in got] == ["later"], "the scheduled message arrives, the expired one never"
            receiver.complete_message(got[0])
        with client.get_queue_receiver("jobs", sub_queue=ServiceBusSubQueue.DEAD_LETTER, max_wait_time=2) as dlq:
            dead = {str(m): m for m in dlq.receive_messages(max_message_count=5, max_wait_time=3)}
            assert dead["bad"].dead_letter_reason == "BadPayload"
            assert dead["bad"].dead_letter_error_description == "not JSON"
            assert dead["short-lived"].dead_letter_reason == "TTLExpiredException"


def test_a_wrong_key_is_refused(broker):
    from azure.servicebus.exceptions import ServiceBusAuthenticationError, ServiceBusError

    broker.create_queue("secure")
    wrong = broker.connection_string.replace("SharedAccessKey=", "SharedAccessKey=x")
    with pytest.raises((ServiceBusAuthenticationError, ServiceBusError)):
        _send(wrong, "secure", "nope")
    assert broker.peek("secure") == []


def test_messages_survive_a_restart(tmp_path):
    from azure.servicebus import ServiceBusClient

    first = ServiceBusService(tmp_path / "sb").start()
    first.create_queue("kept")
    _send(first.connection_string, "kept", "one", "two")
    first.stop()
    second = ServiceBusService(tmp_path / "sb").start()
    try:
        with ServiceBusClient.from_connection_string(second.connection_string) as client, \
                client.get_queue_receiver("kept", max_wait_time=2) as receiver:
            bodies = [str(m) for m in receiver.receive_messages(max_message_count=5, max_wait_time=5)]
        assert sorted(bodies) == ["one", "two"]
    finally:
        second.stop()


def test_queues_through_arm_with_azure_mgmt_servicebus(tmp_path):
    from azure.mgmt.servicebus import ServiceBusManagementClient
    from azure.mgmt.servicebus.models import SBQueue
    from azure.servicebus import ServiceBusClient, ServiceBusMessage

    from aml_azure_common import management_client
    from aml_emulator import Emulator

    with Emulator(tmp_path / "state", services=["registry", "arm", "servicebus"]) as emu:
        client = management_client(ServiceBusManagementClient, emu.profile())
        group = emu.resource_group
        namespace = client.namespaces.begin_create_or_update(
            group, "aml-bus", {"location": "westus", "sku": {"name": "Standard"}}).result()
        assert namespace.service_bus_endpoint == f"{emu.servicebus.url}/"
        with pytest.raises(Exception, match="QuotaExceeded"):
            client.namespaces.begin_create_or_update(group, "second-bus", {"location": "westus"}).result()
        queue = client.queues.create_or_update(group, "aml-bus", "orders", SBQueue(
            max_delivery_count=4, lock_duration=dt.timedelta(seconds=30),
            default_message_time_to_live=dt.timedelta(days=1)))
        assert queue.max_delivery_count == 4 and queue.lock_duration == dt.timedelta(seconds=30)
        assert emu.servicebus.queues["orders"].lock_duration == 30
        keys = client.namespaces.list_keys(group, "aml-bus", "RootManageSharedAccessKey")
        assert keys.primary_connection_string.endswith("UseDevelopmentEmulator=true;")
        with ServiceBusClient.from_connection_string(keys.primary_connection_string) as bus:
            with bus.get_queue_sender("orders") as sender:
                sender.send_messages(ServiceBusMessage("via arm"))
        assert client.queues.get(group, "aml-bus", "orders").message_count == 1
        assert [q.name for q in client.queues.list_by_namespace(group, "aml-bus")] == ["orders"]
        client.queues.delete(group, "aml-bus", "orders")
        assert "orders" not in emu.servicebus.queues
