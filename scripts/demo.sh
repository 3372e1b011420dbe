#!/usr/bin/env bash
# The main job, from a fresh clone: install and build, then run a daemon of 2 workers through a
# batch of calculations and workflows in a throwaway profile, live, and stop it.
# Arguments go to `aiida demo` (e.g. --calculations 500 --workflows 100; see --help).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
setup_log=$(mktemp)
echo "Installing and building (log: $setup_log)..."
if ! bash scripts/setup.sh >"$setup_log" 2>&1; then
  tail -n 40 "$setup_log" >&2
  echo "Error: set-up failed; the full log is $setup_log" >&2
  exit 1
fi
rm -f "$setup_log"
exec node packages/cli/dist/bin.js demo "$@"
