#!/usr/bin/env bash
# Installs the Debian packages the slow test tiers use, when they are missing.
# Needs root (CI runs as root); elsewhere it says what to install and carries on:
# the tests that need a missing tool skip with that reason.
set -euo pipefail
packages=(podman runc skopeo docker-registry wrk debootstrap buildah)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "install-system-deps: not root; please run: sudo apt-get install -y ${missing[*]}" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
