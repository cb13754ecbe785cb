#!/usr/bin/env bash
# The az ml (v1) deployment flow with `aml`: the same verbs, options and config files.
# Usage: run.sh WORKDIR   (needs `aml` on PATH, e.g. the dev venv's .venv/bin)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
workdir="$1"
mkdir -p "$workdir"
export AML_WORKSPACE="$workdir/workspace"

aml workspace create "$AML_WORKSPACE" --exist-ok >/dev/null
echo 2 > "$workdir/factor.txt"
aml model register -n factor -p "$workdir/factor.txt" >/dev/null

cd "$here"   # az ml reads the paths in inferenceconfig.json from the current directory
aml model deploy -n example-service -m factor:1 --ic inferenceconfig.json --dc deploymentconfig.json
trap 'aml service delete example-service >/dev/null' EXIT

echo "Result: $(aml service run example-service --data '{"data": [1, 2, 3]}' -o json | tr -d ' \n')"
aml service get-logs -n example-service -l 5 >/dev/null
aml model download -i factor:1 -t "$workdir/download" --overwrite >/dev/null
echo "Downloaded: $(cat "$workdir/download/factor.txt")"
