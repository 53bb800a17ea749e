#!/usr/bin/env bash
# Builds Tollgate's OpenTelemetry Collector to collector/otelcol/_build/otelcol-tollgate.
#
# Sources are the builder-generated main*.go + components.go and go.mod/go.sum committed next
# to this script (see builder-config.yaml), so this is a plain `go build`: no builder binary,
# no release downloads; modules come from the machine's Go module proxy / module cache and are
# verified against the committed go.sum.
#
# Skips the build when the binary exists and nothing that goes into it changed. Cache key:
# sha256 over go.mod, go.sum, *.go and the Go version, stored next to the binary.
#
# Env:
#   OTELCOL_FORCE_BUILD=1   rebuild even when the cache key matches
#   OTELCOL_BUILD_NICE      niceness for the compiler (default 10: the machine is shared)
#   GOFLAGS                 passed through (e.g. GOFLAGS=-p=1 on a busy 2-core box)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out_dir="$here/_build"
bin="$out_dir/otelcol-tollgate"
key_file="$out_dir/otelcol-tollgate.key"

if ! command -v go >/dev/null 2>&1; then
  if [ -x /usr/local/go/bin/go ]; then export PATH="/usr/local/go/bin:$PATH"; else
    echo "build.sh: go not found (expected on PATH or at /usr/local/go/bin/go)" >&2; exit 1
  fi
fi

mkdir -p "$out_dir"
# One build at a time (CI and a developer's test run may both call this).
exec 9>"$out_dir/.build.lock"
flock 9

key="$(
  cd "$here"
  { go version; for f in go.mod go.sum $(ls -1 *.go | LC_ALL=C sort); do echo "== $f"; cat "$f"; done; } \
    | sha256sum | cut -d' ' -f1
)"

if [ -z "${OTELCOL_FORCE_BUILD:-}" ] && [ -x "$bin" ] && [ -f "$key_file" ] && [ "$(cat "$key_file")" = "$key" ]; then
  echo "build.sh: otelcol-tollgate is up to date ($bin, key ${key:0:12})"
  exit 0
fi

echo "build.sh: building otelcol-tollgate (key ${key:0:12}) ..."
start=$(date +%s)
cd "$here"
# Same settings the Collector Builder uses for its builds (CGO off -> static binary), plus
# -mod=readonly so a go.mod/go.sum that is out of date fails instead of silently changing.
# -trimpath/-buildvcs=false keep the output independent of the checkout's path and git state.
# Build to a temp name and rename, so a killed build never leaves a half-written binary that
# the next run (or the test harness) would take for a good one.
CGO_ENABLED=0 nice -n "${OTELCOL_BUILD_NICE:-10}" \
  go build -mod=readonly -trimpath -buildvcs=false -ldflags="-s -w" -o "$bin.tmp" .
mv -f "$bin.tmp" "$bin"
echo "$key" >"$key_file"
end=$(date +%s)
echo "build.sh: built $bin in $((end - start))s"
"$bin" --version
