#!/usr/bin/env bash
# Install Debian's chromium (headless browser for the report test, tests/test_report.py), once.
# Idempotent and quick when it is already there; needs root (or sudo) and Debian's apt sources.
set -euo pipefail
for name in chromium chromium-browser google-chrome; do
  if command -v "$name" >/dev/null 2>&1; then
    echo "browser already installed: $(command -v "$name")" >&2
    exit 0
  fi
done
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
if ! apt-cache policy chromium 2>/dev/null | grep -q 'Candidate: [0-9]'; then
  $SUDO apt-get update -qq
fi
$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
echo "installed: $(command -v chromium)" >&2
