"""The emulator's storage service: Azurite on loopback, its data kept in the state directory."""

from __future__ import annotations


def test_blobs_and_queue_messages_survive_a_restart(tmp_path):
    from azure.storage.blob import BlobServiceClient
    from azure.storage.queue import QueueClient

    from aml_emulator import Emulator

    with Emulator(tmp_path / "state", services=["storage"]) as emu:
        assert "registry" not in emu.services and "arm" not in emu.services
        first = emu.storage.connection_string
        blobs = BlobServiceClient.from_connection_string(first)
        blobs.create_container("input")
        blobs.get_blob_client("input", "a.json").upload_blob(b"{}")
        queue = QueueClient.from_connection_string(first, "work")
        queue.create_queue()
        queue.send_message("hello")
        assert emu.storage.url.startswith("http://127.0.0.1:")
    with Emulator(tmp_path / "state", services=["storage"]) as emu:
        again = emu.storage.connection_string
        blob = BlobServiceClient.from_connection_string(again).get_blob_client("input", "a.json")
        assert blob.download_blob().readall() == b"{}"
        assert [m.content for m in QueueClient.from_connection_string(again, "work").receive_messages()] == ["hello"]


def test_storage_is_opt_in():
    from aml_emulator import Emulator

    assert "storage" not in Emulator().wanted
