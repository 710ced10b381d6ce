#!/usr/bin/env bash
# Everything the tests need on a fresh machine (Node.js, npm, python3, git and apt only).
set -euo pipefail
cd "$(dirname "$0")/.."
npm install --no-audit --no-fund
need=()
command -v swaks >/dev/null || need+=(swaks)
command -v curl >/dev/null || need+=(curl)
command -v openssl >/dev/null || need+=(openssl)
# DKIM signatures are checked by an independent verifier: dkimpy, for the system's python3.
/usr/bin/python3 -c "import dkim" 2>/dev/null || need+=(python3-dkim)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null \
    || echo "install-deps: could not install ${need[*]}; tests needing them will say so" >&2
fi
