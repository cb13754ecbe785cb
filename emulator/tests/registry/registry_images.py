"""Build tiny OCI image layouts on disk, so real clients have something to push offline."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def write_blob(layout: Path, data: bytes) -> str:
    digest = sha256(data)
    path = layout / "blobs" / "sha256" / digest[7:]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return digest


def write_oci_layout(layout: Path, files: dict[str, bytes], tag: str = "latest", *,
                     compress: bool = True, cmd: list[str] | None = None) -> dict[str, str]:
    """Write an OCI image layout with one layer holding ``files``; return the digests."""
    layout.mkdir(parents=True, exist_ok=True)
    tar = layer_tar(files)
    blob = gzip.compress(tar, compresslevel=1, mtime=0) if compress else tar
    layer_digest = write_blob(layout, blob)
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": cmd or ["/hello"], "Env": ["PATH=/"]},
        "rootfs": {"type": "layers", "diff_ids": [sha256(tar)]},
    }, sort_keys=True).encode()
    config_digest = write_blob(layout, config)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER_GZIP if compress else OCI_LAYER_TAR,
                    "digest": layer_digest, "size": len(blob)}],
    }, sort_keys=True).encode()
    manifest_digest = write_blob(layout, manifest)
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    index = {"schemaVersion": 2, "manifests": [{
        "mediaType": OCI_MANIFEST, "digest": manifest_digest, "size": len(manifest),
        "annotations": {"org.opencontainers.image.ref.name": tag}}]}
    (layout / "index.json").write_text(json.dumps(index))
    return {"manifest": manifest_digest, "config": config_digest, "layer": layer_digest}
