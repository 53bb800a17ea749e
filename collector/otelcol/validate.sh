#!/usr/bin/env bash
# Validates the repo's otel-collector.yaml (or the file given as $1) with the real
# otelcol-tollgate binary: component names, config keys and types, pipeline wiring.
#
# `validate` resolves ${env:…} first and an unset variable becomes "" — which the required
# settings reject (bearer tokens, settlement endpoint) — so dummy values are set here for every
# variable without a default. Also checks that every ${env:NAME} the config uses is documented
# in its header comment.
#
# Builds the binary first if it is missing or stale (build.sh is a no-op when up to date).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
config="${1:-$root/otel-collector.yaml}"
bin="$here/_build/otelcol-tollgate"

"$here/build.sh"

# Every ${env:NAME} (with or without a :-default) must appear in the file's leading comment block.
header="$(awk '/^[^#]/ {exit} {print}' "$config")"
missing=0
for name in $(grep -v '^[[:space:]]*#' "$config" | grep -o '\${env:[A-Za-z_][A-Za-z0-9_]*' | sed 's/^\${env://' | sort -u); do
  if ! grep -qw "$name" <<<"$header"; then
    echo "validate.sh: \${env:$name} is used but not documented in the header of $config" >&2
    missing=1
  fi
done
[ "$missing" = 0 ]

storage="$(mktemp -d)"
trap 'rm -rf "$storage"' EXIT

# Dummies only for what has no default; the defaults themselves get validated as written.
env \
  TOLLGATE_SETTLEMENT_ENDPOINT=http://127.0.0.1:4318 \
  TOLLGATE_SETTLEMENT_TOKEN=dummy-settlement-token \
  TOLLGATE_COLLECTOR_TOKEN=dummy-collector-token \
  TOLLGATE_COLLECTOR_STORAGE_DIR="$storage" \
  "$bin" validate --config="$config"
echo "validate.sh: $config is valid for $("$bin" --version)"
