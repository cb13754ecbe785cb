"""``ProcessEngine.prepare(args=...)``: a container's args replace the image's Cmd, as
Kubernetes does; the Entrypoint stays."""

from __future__ import annotations

import io
import subprocess
import tarfile

from aml_core.engines import ProcessEngine
from aml_core.oci import EnvironmentSpec, Image
from aml_core.oci.layers import Blob, gzip_bytes
from aml_core.oci.media import OCI_LAYER_GZIP

# the shape of an image whose entrypoint is a shell line passing its arguments on as "$@"
ENTRYPOINT = ["/bin/sh", "-c", 'echo "port=${AML_PORT:-8080}" "$@"', "frontdoor"]


def _image(cmd: list[str]) -> Image:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("app/README")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    layer = Blob.from_bytes(gzip_bytes(raw.getvalue()), OCI_LAYER_GZIP)
    return Image.assemble({"config": {"Entrypoint": ENTRYPOINT, "Cmd": cmd, "Labels": {
        "org.aml.environment": EnvironmentSpec(name="args").to_label()}}}, [layer])


def test_args_replace_the_cmd_and_reach_the_entrypoint_as_its_arguments(tmp_path):
    engine = ProcessEngine(cache_dir=tmp_path / "cache")
    image = _image(["--default", "cmd"])
    default = engine.prepare(image, port=9001)
    assert default.argv == [*ENTRYPOINT, "--default", "cmd"]
    overridden = engine.prepare(image, port=9001, args=["--publish", "http://x y"])
    assert overridden.argv == [*ENTRYPOINT, "--publish", "http://x y"]
    out = subprocess.run(overridden.argv, env=overridden.env, capture_output=True, text=True, timeout=30, check=True)
    assert out.stdout.strip() == "port=9001 --publish http://x y"
    # an empty list is an override too: no arguments at all
    assert engine.prepare(image, port=9001, args=[]).argv == ENTRYPOINT
