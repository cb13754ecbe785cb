"""Azure Storage for the emulator: **Azurite**, Microsoft's storage emulator from the npm
registry, run as a child process on loopback ephemeral ports with its data under the
emulator's state directory (so blobs and queue messages survive a restart).

Azurite is installed once into a cache folder (``AML_AZURITE_DIR``, default
``~/.cache/aml-emulator/azurite``) by ``scripts/install-azurite.sh`` (which ``make
system-deps`` runs) or, when missing, by :func:`ensure_installed` with ``npm``.

Clients use :attr:`StorageService.connection_string`: the development account
``devstoreaccount1`` with its well-known key (Azurite's only default account), and the blob and
queue endpoints of this run.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)

AZURITE_VERSION = "3"
ACCOUNT = "devstoreaccount1"
#: Azurite's published development key (not a secret: every Azurite has it)
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
START_TIMEOUT = 60.0
_LISTENING = re.compile(r"Azurite (Blob|Queue|Table) service is successfully listening at http://[^:]+:(\d+)")


def install_dir() -> Path:
    return Path(os.environ.get("AML_AZURITE_DIR") or Path.home() / ".cache" / "aml-emulator" / "azurite")


def azurite_script(directory: Path | None = None) -> Path:
    return (directory or install_dir()) / "node_modules" / "azurite" / "dist" / "src" / "azurite.js"


def ensure_installed(directory: Path | None = None) -> Path:
    """Azurite's entry script, installed with ``npm`` into ``directory`` when missing."""
    directory = directory or install_dir()
    script = azurite_script(directory)
    if script.is_file():
        return script
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise RuntimeError("The storage service runs Azurite, which needs Node.js and npm: install them "
                           "(apt-get install nodejs npm) or run `make system-deps`.")
    directory.mkdir(parents=True, exist_ok=True)
    result = subprocess.run([npm, "install", "--prefix", str(directory), "--no-audit", "--no-fund", "--silent",
                             f"azurite@{AZURITE_VERSION}"], capture_output=True, text=True, timeout=600)
    if result.returncode != 0 or not script.is_file():
        raise RuntimeError(f"Installing Azurite with npm into {directory} failed: {result.stderr.strip()[-800:]}")
    return script


class StorageService:
    """Azurite's blob, queue and table services on loopback; data in ``state_dir``."""

    def __init__(self, state_dir: str | Path, *, host: str = "127.0.0.1") -> None:
        self.state_dir = Path(state_dir)
        self.host = host
        self.ports: dict[str, int] = {}
        self._process: subprocess.Popen[str] | None = None
        self._output: list[str] = []
        self._reader: threading.Thread | None = None

    def start(self) -> "StorageService":
        script = ensure_installed()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        argv = [shutil.which("node") or "node", str(script), "--location", str(self.state_dir),
                "--blobHost", self.host, "--blobPort", "0", "--queueHost", self.host, "--queuePort", "0",
                "--tableHost", self.host, "--tablePort", "0", "--skipApiVersionCheck", "--disableTelemetry",
                "--debug", str(self.state_dir / "debug.log")]
        self._process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        ready = threading.Event()

        def read() -> None:
            assert self._process is not None and self._process.stdout is not None
            for line in self._process.stdout:
                self._output.append(line)
                found = _LISTENING.search(line)
                if found:
                    self.ports[found.group(1).lower()] = int(found.group(2))
                    if len(self.ports) == 3:
                        ready.set()
            ready.set()

        self._reader = threading.Thread(target=read, name="azurite-output", daemon=True)
        self._reader.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not ready.wait(0.1):
            if time.monotonic() > deadline:
                break
        if len(self.ports) != 3:
            output = "".join(self._output)[-1500:]
            self.stop()
            raise RuntimeError(f"Azurite did not start within {START_TIMEOUT:.0f} s: {output}")
        return self

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.ports = {}

    def endpoint(self, service: str) -> str:
        return f"http://{self.host}:{self.ports[service]}/{ACCOUNT}"

    @property
    def url(self) -> str:
        return self.endpoint("blob")

    @property
    def connection_string(self) -> str:
        """What ``BlobServiceClient.from_connection_string`` and ``AzureWebJobsStorage`` take."""
        return (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
                f"BlobEndpoint={self.endpoint('blob')};QueueEndpoint={self.endpoint('queue')};"
                f"TableEndpoint={self.endpoint('table')};")
