#!/usr/bin/env bash
# Builds the Python base image that the container engine runs scoring images on, offline
# except for Debian's mirror and PyPI:
#   1. debootstrap a minimal Debian (python3 from Debian);
#   2. install the scoring runtime's requirements, plus numpy/scikit-learn/joblib for the
#      quickstart model and pyjwt/kubernetes for the AKS front door's image, as manylinux
#      wheels chosen for the rootfs's Python, with uv on the host (the rootfs never needs
#      network access);
#   3. write a deterministic rootfs tarball into the cache, keyed by this script's hash, so
#      CI and later runs reuse it.
# Prints the tarball's path on stdout. Needs root (debootstrap), debootstrap and uv.
#
# Usage: scripts/build-base-image.sh [CACHE_DIR]
#   CACHE_DIR defaults to $AML_CACHE_DIR/base-images or ~/.cache/aml/base-images.
#   AML_DEBIAN_MIRROR overrides the mirror (default: the first URI in apt's sources).
set -euo pipefail

SUITE=bookworm
PY_VERSION=3.11
PACKAGES=(
  "pluggy>=1.5" "attrs>=23.1" "click>=8.1" "rich>=13" "requests>=2.31" "packaging>=23"
  "pyyaml>=6" "uvicorn>=0.30" "uvloop>=0.19" "httptools>=0.6" "pathspec>=0.12"
  "numpy" "scikit-learn" "joblib"
  "pyjwt>=2.8" "kubernetes>=29"
)

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${1:-${AML_CACHE_DIR:-$HOME/.cache/aml}/base-images}
key=$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-16)
out="$cache/aml-base-$key.tar"
if [ -s "$out" ]; then
  echo "$out"
  exit 0
fi

[ "$(id -u)" -eq 0 ] || { echo "build-base-image: debootstrap needs root" >&2; exit 2; }
command -v debootstrap >/dev/null || { echo "build-base-image: apt-get install debootstrap" >&2; exit 2; }
uv=$(command -v uv || true)
[ -n "$uv" ] || uv="$here/../.venv/bin/uv"
[ -x "$uv" ] || { echo "build-base-image: uv not found (pip install uv)" >&2; exit 2; }

mirror=${AML_DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
  mirror=$(grep -hoE '^(URIs:|deb) +https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null \
    | grep -oE 'https?://[^ ]+' | head -n1 || true)
fi
mirror=${mirror:-http://deb.debian.org/debian}

mkdir -p "$cache"
# One build at a time (parallel test workers all ask for it); the others then find it.
exec 9>"$cache/.build.lock"
flock 9
if [ -s "$out" ]; then
  echo "$out"
  exit 0
fi
work=$(mktemp -d "$cache/.build-XXXXXX")
trap 'rm -rf "$work"' EXIT
root="$work/rootfs"

echo "build-base-image: debootstrap $SUITE from $mirror" >&2
debootstrap --variant=minbase --include=python3,ca-certificates "$SUITE" "$root" "$mirror" >&2

echo "build-base-image: installing ${PACKAGES[*]}" >&2
"$uv" pip install --quiet --target "$root/usr/local/lib/python$PY_VERSION/dist-packages" \
  --python-version "$PY_VERSION" --python-platform x86_64-manylinux_2_28 --only-binary :all: \
  "${PACKAGES[@]}" >&2
# Tools uv installs under bin/ use the host's interpreter path; nothing in the image needs them.
rm -rf "$root/usr/local/lib/python$PY_VERSION/dist-packages/bin"

# Drop what a runtime image never needs, then pin the result down byte for byte.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
  "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/locale/* "$root"/var/log/*
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
  -C "$root" -cf "$work/rootfs.tar" .
mv "$work/rootfs.tar" "$out"
echo "$out"
