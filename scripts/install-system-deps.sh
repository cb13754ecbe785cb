#!/usr/bin/env bash
# Installs the Debian packages the test suite uses, when they are missing, and says which
# and why before it starts. Only what a test needs is listed here; every one of them is a
# tool some test would otherwise skip for (and under AML_FAIL_ON_ENV_SKIP=1 fail for).
# apt's and dpkg's output goes to a log file ($AML_SYSTEM_DEPS_LOG), named on failure.
# Needs root (CI runs as root); elsewhere it prints the apt-get command and carries on.
set -euo pipefail

# package  why the tests need it
needs=(
  "podman|container engine (Docker-compatible API) for the local target's docker engine and image tests"
  "runc|the OCI runtime those podman tests configure"
  "skopeo|a registry client nobody here wrote, pushing and pulling our images"
  "buildah|a second image builder pushing to the emulated registry"
  "docker-registry|the reference registry our registry is compared with"
  "debootstrap|builds the Debian + Python base image (scripts/build-base-image.sh)"
  "umoci|reads the OCI image layouts our packaging writes"
)
log="${AML_SYSTEM_DEPS_LOG:-${TMPDIR:-/tmp}/aml-system-deps.log}"

missing=()
for entry in "${needs[@]}"; do
  package="${entry%%|*}"
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$entry")
done
if ! command -v kubectl >/dev/null; then
  # Debian has no kubectl package; the machine image provides it
  echo "install-system-deps: kubectl is not on PATH; the cluster tests drive it. Install kubectl v1.32+." >&2
fi
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-system-deps: the ${#needs[@]} Debian packages the tests use are installed."
  exit 0
fi

names=()
echo "install-system-deps: ${#missing[@]} Debian package(s) the tests need are missing:"
for entry in "${missing[@]}"; do
  names+=("${entry%%|*}")
  printf '  %-16s %s\n' "${entry%%|*}" "${entry#*|}"
done
if [ "$(id -u)" -ne 0 ]; then
  echo "install-system-deps: not root, so not installing; run: sudo apt-get install --no-install-recommends ${names[*]}" >&2
  echo "install-system-deps: until then the tests that need them skip, saying which." >&2
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
: >"$log"
fail() {
  echo "install-system-deps: $1 failed; apt's output is in $log (last lines below)." >&2
  tail -n 15 "$log" >&2
  exit 1
}
started=$(date +%s)
apt-get update -q >>"$log" 2>&1 || fail "apt-get update"
# What apt will do besides: more packages it depends on, and any upgrade it forces.
plan=$(apt-get install -s --no-install-recommends "${names[@]}" 2>>"$log") || fail "apt-get install (dry run)"
extra=$(printf '%s\n' "$plan" | awk '/^Inst / && $3 !~ /^\[/ {print $2}' | grep -vxF -f <(printf '%s\n' "${names[@]}") | wc -l || true)
upgrades=$(printf '%s\n' "$plan" | awk '/^Inst / && $3 ~ /^\[/ {printf "%s ", $2}')
echo "install-system-deps: apt adds ${extra} package(s) they depend on${upgrades:+, and upgrades ${upgrades% } (a dependency needs their newer version)}."
echo "install-system-deps: installing (apt's output goes to $log) ..."
apt-get install -y -q --no-install-recommends "${names[@]}" >>"$log" 2>&1 || fail "apt-get install"
echo "install-system-deps: done in $(( $(date +%s) - started )) s."
