#!/usr/bin/env bash
# Checks the Prometheus rules: syntax (promtool check rules) and the alert unit tests
# (promtool test rules). CI runs this; installs promtool from Debian's `prometheus` package
# when it is missing.
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v promtool >/dev/null 2>&1; then
  echo "promtool not found: installing the prometheus package" >&2
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends prometheus
fi

promtool --version | head -n 1
promtool check rules alerts.yaml
promtool test rules alerts.test.yaml
