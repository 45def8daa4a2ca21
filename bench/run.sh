#!/usr/bin/env bash
# Build and run the lwwsync benchmark from the repository root.
#   bench/run.sh            full run (a few minutes)
#   bench/run.sh --quick    smoke run
# Extra arguments are passed to bench/bench (a later --ext overrides the default).
set -euo pipefail
cd "$(dirname "$0")/.."
make -C bench --no-print-directory bench
exec bench/bench --ext ./lwwsync.so "$@"
