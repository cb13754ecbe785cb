#!/usr/bin/env bash
# Installs Azurite (Azure Storage's emulator, from the npm registry) where the emulator's
# storage service looks for it: $AML_AZURITE_DIR, default ~/.cache/aml-emulator/azurite.
# Idempotent and quiet; needs node and npm (Debian: nodejs npm).
set -euo pipefail
dir="${AML_AZURITE_DIR:-$HOME/.cache/aml-emulator/azurite}"
[ -f "$dir/node_modules/azurite/dist/src/azurite.js" ] && exit 0
if ! command -v npm >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends nodejs npm
  else
    echo "install-azurite: npm is missing; please run: sudo apt-get install -y nodejs npm" >&2
    exit 0
  fi
fi
mkdir -p "$dir"
npm install --prefix "$dir" --no-audit --no-fund --silent "azurite@3" >/dev/null
