#!/usr/bin/env bash
# Builds dist/posthorn, the single executable. Every worker entry must be listed: Bun builds a
# binary silently without one and fails only when that worker starts.
set -euo pipefail
cd "$(dirname "$0")"
BUN=node_modules/.bin/bun
[ -x "$BUN" ] || { echo "compile.sh: run npm install first" >&2; exit 1; }
WORKERS=(supervisor/store-worker.ts supervisor/engine-worker.ts)
for w in "${WORKERS[@]}"; do [ -f "$w" ] || { echo "compile.sh: missing worker entry $w" >&2; exit 1; }; done
mkdir -p dist
"$BUN" build --compile --minify-syntax --sourcemap=inline main.ts "${WORKERS[@]}" --outfile dist/posthorn
ls -l dist/posthorn
