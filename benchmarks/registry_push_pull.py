"""Push and pull a ~50 MB image with skopeo: the emulator's registry vs Debian's docker-registry.

Both registries run on 127.0.0.1 in the same run; rounds are interleaved (the order flips
every round) and each round pushes a fresh image of random, incompressible layer data, so no
registry can skip an upload because it already holds the blob. Reported: the median wall
time of ``skopeo copy`` for push (OCI layout -> registry) and pull (registry -> ``dir:``),
the throughput, and the emulator/reference throughput ratio (target >= 0.8).

    .venv/bin/python benchmarks/registry_push_pull.py [--size-mb 50] [--rounds 3] [--json out.json]

Needs the Debian packages skopeo and docker-registry.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from aml_emulator.registry import RegistryService


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def write_image(layout: Path, size: int) -> int:
    """An OCI layout holding one layer of ``size`` random bytes (gzip framing, stored blocks)."""
    payload = os.urandom(size)
    tar_buf = io.BytesIO()
    with tarfile.open(fileobj=tar_buf, mode="w") as tar:
        info = tarfile.TarInfo("model.bin")
        info.size = size
        tar.addfile(info, io.BytesIO(payload))
    tar_bytes = tar_buf.getvalue()
    # Level 0: valid gzip that costs nothing to make; random data would not shrink anyway.
    layer = gzip.compress(tar_bytes, compresslevel=0, mtime=0)
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> str:
        d = sha256(data)
        (blobs / d[7:]).write_bytes(data)
        return d

    layer_digest = put(layer)
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [sha256(tar_bytes)]}}).encode()
    config_digest = put(config)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest,
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest,
                    "size": len(layer)}]}).encode()
    manifest_digest = put(manifest)
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest,
        "size": len(manifest), "annotations": {"org.opencontainers.image.ref.name": "bench"}}]}))
    return len(layer) + len(config) + len(manifest)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Reference:
    """Debian's docker-registry (distribution 2.8) with filesystem storage in a temp dir."""

    def __init__(self, root: Path) -> None:
        binary = shutil.which("docker-registry")
        if binary is None:
            sys.exit("docker-registry not found: apt-get install docker-registry")
        root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        config = root / "config.yml"
        config.write_text(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: 127.0.0.1:{self.port}\n")
        self.proc = subprocess.Popen([binary, "serve", str(config)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        self.login_server = f"127.0.0.1:{self.port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    sys.exit("docker-registry did not start")
                time.sleep(0.05)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def skopeo(*args: str) -> float:
    start = time.perf_counter()
    subprocess.run(["skopeo", *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                   timeout=600)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=float, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if shutil.which("skopeo") is None:
        sys.exit("skopeo not found: apt-get install skopeo")
    if args.rounds < 3:
        sys.exit("use at least 3 rounds: the report is a median")
    size = int(args.size_mb * 1024 * 1024)

    work = Path(tempfile.mkdtemp(prefix="registry-bench-"))
    reference = Reference(work / "reference")
    emulator = RegistryService(state_dir=work / "emulator").start()
    creds = f"{emulator.credentials.username}:{emulator.credentials.passwords['password']}"
    targets = {
        "emulator": (emulator.login_server, ["--dest-creds", creds], ["--src-creds", creds]),
        "docker-registry": (reference.login_server, ["--dest-no-creds"], ["--src-no-creds"]),
    }
    times: dict[str, dict[str, list[float]]] = {k: {"push": [], "pull": []} for k in targets}
    image_bytes = 0
    try:
        for rnd in range(args.rounds):
            layout = work / f"image-{rnd}"
            image_bytes = write_image(layout, size)
            order = list(targets) if rnd % 2 == 0 else list(reversed(targets))
            for key in order:
                server, dest_creds, src_creds = targets[key]
                ref = f"docker://{server}/bench/app{rnd}:v1"
                push = skopeo("copy", "--dest-tls-verify=false", *dest_creds, f"oci:{layout}:bench", ref)
                out = work / f"pull-{key}-{rnd}"
                pull = skopeo("copy", "--src-tls-verify=false", *src_creds, ref, f"dir:{out}")
                shutil.rmtree(out)
                times[key]["push"].append(push)
                times[key]["pull"].append(pull)
                print(f"round {rnd + 1} {key:16s} push {push:6.3f}s  pull {pull:6.3f}s", flush=True)
            shutil.rmtree(layout)
    finally:
        emulator.stop()
        reference.stop()
        shutil.rmtree(work, ignore_errors=True)

    mb = image_bytes / 1e6
    results: dict[str, dict] = {"image_mb": round(mb, 1), "rounds": args.rounds}
    print(f"\nimage: {mb:.1f} MB, {args.rounds} rounds, median wall time of skopeo copy")
    print(f"{'':10s}{'emulator':>22s}{'docker-registry':>22s}{'ratio':>10s}{'best-of ratio':>15s}")
    for op in ("push", "pull"):
        emu = statistics.median(times["emulator"][op])
        ref = statistics.median(times["docker-registry"][op])
        ratio = ref / emu  # throughput ratio: emulator MB/s over reference MB/s
        # The fastest round of each is less disturbed by other load on the machine.
        best = min(times["docker-registry"][op]) / min(times["emulator"][op])
        results[op] = {"emulator_s": round(emu, 3), "reference_s": round(ref, 3),
                       "emulator_mb_s": round(mb / emu, 1), "reference_mb_s": round(mb / ref, 1),
                       "throughput_ratio": round(ratio, 2), "best_of_ratio": round(best, 2)}
        print(f"{op:10s}{emu:8.3f}s {mb / emu:8.1f} MB/s{ref:8.3f}s {mb / ref:8.1f} MB/s"
              f"{ratio:9.2f}x{best:14.2f}x")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
