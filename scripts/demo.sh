#!/usr/bin/env bash
# The main job, from a fresh clone: install and build, then run a daemon of 2 workers through a
# batch of calculations and workflows in a throwaway profile, live, and stop it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh >/dev/null
exec node packages/cli/dist/bin.js demo "$@"
