"""Safe unpacking: a corpus of hostile layers, one per rule, each refused cleanly."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest
from aml_core.errors import InvalidConfig
from aml_core.oci import Image, UnsafeArchive, unpack_image
from aml_core.oci.layers import Blob, gzip_bytes
from aml_core.oci.media import OCI_LAYER_GZIP


def tar_of(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


def entry(
    name: str, kind=tarfile.REGTYPE, *, data: bytes | None = b"x", mode=0o644, link=""
) -> tuple:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.linkname = kind, mode, link
    return info, (data if kind == tarfile.REGTYPE else None)


def image_of(*layers: bytes) -> Image:
    blobs = [Blob.from_bytes(gzip_bytes(raw), OCI_LAYER_GZIP) for raw in layers]
    return Image.assemble({"rootfs": {"type": "layers", "diff_ids": []}, "config": {}}, blobs)


HOSTILE = {
    "dotdot": ([entry("ok.txt"), entry("../escaped.txt")], "../escaped.txt", "'..'"),
    "dotdot-nested": ([entry("a/../../escaped.txt")], "a/../../escaped.txt", "'..'"),
    "absolute": ([entry("/tmp/escaped.txt")], "/tmp/escaped.txt", "absolute"),
    "symlink-absolute": ([entry("etc", tarfile.SYMTYPE, link="/etc")], "etc", "absolute"),
    "symlink-outside": (
        [
            entry("d", tarfile.DIRTYPE, mode=0o755),
            entry("d/up", tarfile.SYMTYPE, link="../../outside"),
        ],
        "d/up",
        "outside",
    ),
    "symlink-then-write": (
        [entry("lnk", tarfile.SYMTYPE, link=".."), entry("lnk/escaped.txt")],
        "lnk",
        "outside",
    ),
    "hardlink-outside": ([entry("h", tarfile.LNKTYPE, link="../../etc/passwd")], "h", "'..'"),
    "hardlink-absolute": ([entry("h", tarfile.LNKTYPE, link="/etc/passwd")], "h", "absolute"),
    "hardlink-missing": ([entry("h", tarfile.LNKTYPE, link="nothing-here")], "h", "earlier entry"),
    "char-device": ([entry("null", tarfile.CHRTYPE)], "null", "device"),
    "block-device": ([entry("sda", tarfile.BLKTYPE)], "sda", "device"),
    "fifo": ([entry("pipe", tarfile.FIFOTYPE)], "pipe", "FIFO"),
    "setuid": ([entry("su", mode=0o4755)], "su", "setuid"),
    "setgid": ([entry("sg", mode=0o2755)], "sg", "setgid"),
    # `up` resolves inside while `a` links two levels down; `a` then becomes a plain folder
    # in the same archive, and `up` leads one level above the tree
    "symlink-retargeted": (
        [entry("b", tarfile.DIRTYPE, mode=0o755), entry("b/c", tarfile.DIRTYPE, mode=0o755),
         entry("a", tarfile.SYMTYPE, link="b/c"), entry("up", tarfile.SYMTYPE, link="a/../.."),
         entry("a", tarfile.DIRTYPE, mode=0o755)],
        "up",
        "outside the tree once every entry is applied",
    ),
    "whiteout-dotdot": (
        [entry("a", tarfile.DIRTYPE, mode=0o755), entry("a/.wh...")],
        "a/.wh...",
        "whiteout",
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_layer_is_refused_and_leaves_nothing(case, tmp_path):
    members, bad_entry, reason = HOSTILE[case]
    sandbox = tmp_path / "sandbox"
    cache = sandbox / "cache"
    cache.mkdir(parents=True)
    before_outside = set(os.listdir(tmp_path))
    with pytest.raises(UnsafeArchive) as info:
        unpack_image(image_of(tar_of(*members)), cache)
    assert info.value.entry == bad_entry
    assert bad_entry in str(info.value) and reason in str(info.value)
    assert info.value.code == "UnsafeArchive" and isinstance(info.value, InvalidConfig)
    # nothing written outside the cache, and the cache holds no tree, partial or whole
    assert set(os.listdir(tmp_path)) == before_outside
    assert sorted(os.listdir(sandbox)) == ["cache"]
    assert [p for p in os.listdir(cache) if not p.endswith(".lock")] == []
    assert not (Path("/tmp/escaped.txt")).exists() or case != "absolute"


# Cases that take more than one layer: each layer is fine alone, the finished tree is not.
HOSTILE_STACKS = {
    # a later layer turns `a` from a link two levels down into a folder: `up` now leads to
    # the tree's parent (on a real node, `/`'s parent: a pod's working directory outside)
    "retarget-by-replacing": (
        [[entry("b", tarfile.DIRTYPE, mode=0o755), entry("b/c", tarfile.DIRTYPE, mode=0o755),
          entry("a", tarfile.SYMTYPE, link="b/c"), entry("up", tarfile.SYMTYPE, link="a/../..")],
         [entry("a", tarfile.DIRTYPE, mode=0o755)]],
        "up",
    ),
    # the same with a whiteout: `a` is deleted, then comes back as a link to `.`
    "retarget-by-whiteout": (
        [[entry("b", tarfile.DIRTYPE, mode=0o755), entry("b/c", tarfile.DIRTYPE, mode=0o755),
          entry("a", tarfile.SYMTYPE, link="b/c"), entry("up", tarfile.SYMTYPE, link="a/../..")],
         [entry(".wh.a", data=b"")],
         [entry("a", tarfile.SYMTYPE, link=".")]],
        "up",
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_STACKS))
def test_a_link_retargeted_by_a_later_layer_is_refused_and_leaves_nothing(case, tmp_path):
    layers, bad_entry = HOSTILE_STACKS[case]
    cache = tmp_path / "cache"
    with pytest.raises(UnsafeArchive) as info:
        unpack_image(image_of(*(tar_of(*members) for members in layers)), cache)
    assert info.value.entry == bad_entry
    assert "outside the tree once every" in str(info.value)
    assert [p for p in os.listdir(cache) if not p.endswith(".lock")] == []


def test_links_that_stay_inside_after_every_layer_are_kept(tmp_path):
    lower = tar_of(entry("b", tarfile.DIRTYPE, mode=0o755), entry("b/c", tarfile.DIRTYPE, mode=0o755),
                   entry("a", tarfile.SYMTYPE, link="b/c"), entry("up", tarfile.SYMTYPE, link="a/.."),
                   entry("dangling", tarfile.SYMTYPE, link="not/yet/there"))
    upper = tar_of(entry("a", tarfile.DIRTYPE, mode=0o755))  # `up` → the root itself: inside
    root = unpack_image(image_of(lower, upper), tmp_path).rootfs
    assert os.readlink(root / "up") == "a/.." and os.readlink(root / "dangling") == "not/yet/there"


def test_layers_apply_in_order_with_whiteouts(tmp_path):
    lower = tar_of(
        entry("app", tarfile.DIRTYPE, mode=0o755),
        entry("app/keep.txt", data=b"1"),
        entry("app/gone.txt", data=b"2"),
        entry("opq", tarfile.DIRTYPE, mode=0o755),
        entry("opq/old.txt", data=b"old"),
        entry("app/keep.txt.link", tarfile.SYMTYPE, link="keep.txt"),
    )
    upper = tar_of(
        entry("app/.wh.gone.txt", data=b""),
        entry("opq/new.txt", data=b"new"),
        entry("opq/.wh..wh..opq", data=b""),
        entry("app/keep.txt", data=b"updated"),
        entry("app/hard", tarfile.LNKTYPE, link="app/keep.txt"),
    )
    image = image_of(lower, upper)
    unpacked = unpack_image(image, tmp_path / "cache")
    root = unpacked.rootfs
    assert unpacked.path.name == image.digest.split(":")[1]
    assert (root / "app/keep.txt").read_text() == "updated"
    assert not (root / "app/gone.txt").exists()
    assert sorted(os.listdir(root / "opq")) == ["new.txt"]
    assert os.readlink(root / "app/keep.txt.link") == "keep.txt"
    assert (root / "app/hard").read_text() == "updated"
    assert not any(n.startswith(".wh.") for _, _, files in os.walk(root) for n in files)
    # cached: a second call returns the same tree without extracting again
    (root / "marker").write_text("x")
    assert (unpack_image(image, tmp_path / "cache").rootfs / "marker").exists()


def test_top_layers_only(tmp_path):
    image = image_of(tar_of(entry("base.txt")), tar_of(entry("app.txt")))
    root = unpack_image(image, tmp_path, top_layers=1).rootfs
    assert sorted(os.listdir(root)) == ["app.txt"]


def test_corrupt_blob_is_refused(tmp_path):
    good = Blob.from_bytes(gzip_bytes(tar_of(entry("a.txt"))), OCI_LAYER_GZIP)
    forged = Blob(
        digest="sha256:" + "0" * 64, size=good.size, media_type=OCI_LAYER_GZIP, data=good.data
    )
    image = Image.assemble({"config": {}}, [forged])
    with pytest.raises(InvalidConfig, match="does not match its digest"):
        unpack_image(image, tmp_path)
    assert [p for p in os.listdir(tmp_path) if not p.endswith(".lock")] == []


def test_modes_are_sanitised(tmp_path):
    image = image_of(tar_of(entry("w.txt", mode=0o666), entry("x.sh", mode=0o777)))
    root = unpack_image(image, tmp_path).rootfs
    assert stat.S_IMODE((root / "w.txt").stat().st_mode) & 0o022 == 0
    assert (root / "x.sh").stat().st_mode & 0o100


def test_concurrent_unpacks_of_one_image_build_one_tree(tmp_path):
    import threading

    image = image_of(tar_of(*[entry(f"f{i}.txt", data=b"x" * 1000) for i in range(200)]))
    roots, errors = [], []

    def go():
        try:
            roots.append(unpack_image(image, tmp_path).rootfs)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=go) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors and len(set(roots)) == 1 and len(roots) == 4
    assert len(os.listdir(roots[0])) == 200
    assert sorted(p for p in os.listdir(tmp_path) if not p.endswith(".lock")) == [
        image.digest.split(":")[1]
    ]
