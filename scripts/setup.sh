#!/usr/bin/env bash
# Installs the toolchain and the locked dependencies, then builds every package.
# Sourced by .ci/run and scripts/demo.sh; safe to run again.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v pnpm >/dev/null 2>&1 || [ "$(pnpm --version 2>/dev/null)" != "12.4.2" ]; then
  echo "[setup] installing pnpm 12.4.2"
  npm i -g pnpm@12.4.2 >/dev/null
fi
# better-sqlite3 compiles against the machine's Node headers when it can't fetch a prebuilt
# binary; pnpm does not read npm's `nodedir` setting, so pass it on.
if [ -z "${npm_config_nodedir:-}" ]; then
  nodedir=$(npm config get nodedir 2>/dev/null || true)
  if [ -n "$nodedir" ] && [ "$nodedir" != "undefined" ] && [ "$nodedir" != "null" ]; then
    export npm_config_nodedir="$nodedir"
  fi
fi
echo "[setup] pnpm install --frozen-lockfile"
pnpm install --frozen-lockfile
echo "[setup] pnpm build"
pnpm build
