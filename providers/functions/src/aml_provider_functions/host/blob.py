"""Blob trigger: watch the container of the trigger's ``path`` for blobs whose names match its
pattern, call the function once per blob version, write the ``out`` blob bindings.

As the Functions host does it:

* **Receipts** — once a blob version (its ETag) has been handled, a receipt blob
  ``blobreceipts/<host id>/<function id>/<etag>/<container>/<blob name>`` in the
  ``azure-webjobs-hosts`` container of ``AzureWebJobsStorage`` says so; receipts outlive the
  host, so a restart does not process a blob again, and deleting a receipt forces it.
* **Attempts** — the receipt is written (metadata ``AttemptCount``) *before* each attempt, so
  an attempt cut short by a kill still counts; the blob is tried again on the next scan.
* **Poison** — after :data:`MAX_DEQUEUE_COUNT` (5) failed attempts the host puts
  ``{FunctionId, BlobType, ContainerName, BlobName, ETag}`` on the storage queue
  ``webjobs-blobtrigger-poison`` (base64 text, the WebJobs SDK's encoding), marks the receipt
  done, and leaves the blob where it is.

A kill between writing the output and completing the receipt repeats the attempt, which
writes the same output blob again: at-least-once with an idempotent output, like the host.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from typing import Any

from aml_provider_functions.host.app import Function

log = logging.getLogger("aml.functions.host")
RECEIPTS_CONTAINER = "azure-webjobs-hosts"
POISON_QUEUE = "webjobs-blobtrigger-poison"
MAX_DEQUEUE_COUNT = 5
SCAN_INTERVAL = 0.25


def path_pattern(path: str) -> tuple[str, re.Pattern[str]]:
    """``container/pattern`` → (container, a regex over blob names with a group per ``{token}``)."""
    container, _, pattern = path.partition("/")
    parts, position = [], 0
    for match in re.finditer(r"\{([^{}]+)\}", pattern):
        parts.append(re.escape(pattern[position:match.start()]))
        parts.append(f"(?P<{match.group(1)}>.+?)")
        position = match.end()
    parts.append(re.escape(pattern[position:]))
    return container, re.compile("^" + "".join(parts) + "$")


def fill(path: str, values: dict[str, str]) -> str:
    """``path`` with its ``{token}``s replaced (an output binding's blob name)."""
    return re.sub(r"\{([^{}]+)\}", lambda m: values.get(m.group(1), m.group(0)), path)


class BlobTriggerListener:
    def __init__(self, function: Function, settings: dict[str, str], host_id: str) -> None:
        from azure.storage.blob import BlobServiceClient

        self.function = function
        trigger = function.trigger
        self.connection_name = str(trigger.get("connection") or "AzureWebJobsStorage")
        connection = settings.get(self.connection_name)
        if not connection:
            raise RuntimeError(f"Function {function.name!r}: the app setting {self.connection_name!r} (the blob "
                               f"trigger's connection) is not set.")
        host_storage = settings.get("AzureWebJobsStorage")
        if not host_storage:
            raise RuntimeError("The app setting 'AzureWebJobsStorage' is not set; the host keeps its blob receipts "
                               "and poison queue there.")
        self.container, self.pattern = path_pattern(str(trigger["path"]))
        self.source = BlobServiceClient.from_connection_string(connection)
        self.host_storage = BlobServiceClient.from_connection_string(host_storage)
        self.host_storage_connection = host_storage
        self.host_id = host_id
        self.function_id = f"{host_id}.Functions.{function.name}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"blob-{function.name}", daemon=True)

    def start(self) -> "BlobTriggerListener":
        for client, name in ((self.host_storage, RECEIPTS_CONTAINER), (self.source, self.container)):
            self._ensure_container(client, name)
        self._thread.start()
        log.info("Blob trigger of 'Functions.%s' listening on %s/%s", self.function.name, self.container,
                 self.pattern.pattern)
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    @staticmethod
    def _ensure_container(client: Any, name: str) -> None:
        from azure.core.exceptions import ResourceExistsError

        try:
            client.create_container(name)
        except ResourceExistsError:
            pass

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.scan()
            except Exception:  # storage unreachable for a moment: log and scan again
                log.exception("Scanning container %r for 'Functions.%s' failed", self.container, self.function.name)
            self._stop.wait(SCAN_INTERVAL)

    def scan(self) -> int:
        """One pass over the container; how many blobs were attempted."""
        attempted = 0
        container = self.source.get_container_client(self.container)
        for blob in container.list_blobs():
            if self._stop.is_set():
                break
            match = self.pattern.match(blob.name)
            if match is None:
                continue
            if self._attempt(blob, {**match.groupdict(), "name": blob.name}):
                attempted += 1
        return attempted

    def _receipt(self, etag: str, blob_name: str) -> Any:
        bare_etag = etag.strip('"')
        name = f"blobreceipts/{self.host_id}/{self.function_id}/{bare_etag}/{self.container}/{blob_name}"
        return self.host_storage.get_blob_client(RECEIPTS_CONTAINER, name)

    def _attempt(self, blob: Any, tokens: dict[str, str]) -> bool:
        from azure.core.exceptions import ResourceNotFoundError

        receipt = self._receipt(blob.etag, blob.name)
        try:
            metadata = receipt.get_blob_properties().metadata or {}
        except ResourceNotFoundError:
            metadata = {}
        if metadata.get("Completed") == "true":
            return False
        attempts = int(metadata.get("AttemptCount") or 0) + 1
        receipt.upload_blob(b"", overwrite=True, metadata={"AttemptCount": str(attempts)})
        try:
            self._invoke(blob, tokens)
        except Exception as exc:
            if attempts >= MAX_DEQUEUE_COUNT:
                self._poison(blob, attempts, exc)
            return True
        receipt.set_blob_metadata({"AttemptCount": str(attempts), "Completed": "true"})
        return True

    def _invoke(self, blob: Any, tokens: dict[str, str]) -> None:
        from azure.functions.blob import InputStream

        client = self.source.get_blob_client(self.container, blob.name)
        data = client.download_blob(etag=blob.etag, match_condition=_if_match()).readall()
        stream = InputStream(data=data, name=f"{self.container}/{blob.name}", uri=client.url, length=len(data),
                             blob_properties={"ETag": blob.etag}, metadata=dict(blob.metadata or {}))
        _, outputs = self.function.invoke(stream, f"New blob detected({_blob_kind(blob)}): "
                                                  f"{self.container}/{blob.name}")
        for binding in self.function.outputs():
            if binding.get("type") != "blob" or binding["name"] not in outputs:
                continue
            target = fill(str(binding["path"]), tokens)
            out_container, _, out_name = target.partition("/")
            connection = self.source if str(binding.get("connection") or self.connection_name) == \
                self.connection_name else self.host_storage
            self._ensure_container(connection, out_container)
            value = outputs[binding["name"]]
            connection.get_blob_client(out_container, out_name).upload_blob(
                value if isinstance(value, (bytes, str)) else json.dumps(value), overwrite=True)

    def _poison(self, blob: Any, attempts: int, exc: Exception) -> None:
        from azure.core.exceptions import ResourceExistsError
        from azure.storage.queue import QueueClient, TextBase64EncodePolicy

        queue = QueueClient.from_connection_string(self.host_storage_connection, POISON_QUEUE,
                                                   message_encode_policy=TextBase64EncodePolicy())
        try:
            queue.create_queue()
        except ResourceExistsError:
            pass
        queue.send_message(json.dumps({"FunctionId": self.function_id, "BlobType": _blob_kind(blob),
                                       "ContainerName": self.container, "BlobName": blob.name,
                                       "ETag": blob.etag}))
        self._receipt(blob.etag, blob.name).set_blob_metadata(
            {"AttemptCount": str(attempts), "Completed": "true", "Poisoned": "true"})
        log.error("Blob '%s/%s' failed 'Functions.%s' %d times (last: %s: %s); moved to the poison queue %r. "
                  "The blob itself is kept.", self.container, blob.name, self.function.name, attempts,
                  type(exc).__name__, exc, POISON_QUEUE)


def _blob_kind(blob: Any) -> str:
    kind = getattr(blob, "blob_type", None) or "BlockBlob"
    return str(getattr(kind, "value", kind))


def _if_match() -> Any:
    from azure.core import MatchConditions

    return MatchConditions.IfNotModified
