#!/usr/bin/env bash
# Builds and installs the PostgreSQL extension, then runs its pg_regress and
# pg_isolation_regress suites on temporary instances (make installcheck).
# initdb refuses root, so as root the suites run as "postgres" in a copy of
# the tree that user can write. Prints "N passed, M failed" for the runner.
set -uo pipefail
cd "$(dirname "$0")/.."
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
# PG_CONFIG picks the Postgres to build for, install into and test with
# (default: the one on PATH).
PG_CONFIG=${PG_CONFIG:-pg_config}
PG_CONFIG=$(command -v "$PG_CONFIG") || { echo "pg_config not found"; echo "0 passed, 1 failed"; exit 1; }
PGBINDIR=$("$PG_CONFIG" --bindir)
export PG_CONFIG
# LWWSYNC_SKIP_INSTALL=1 (make installcheck): test what is installed.
if [ -z "${LWWSYNC_SKIP_INSTALL:-}" ]; then
    make -C pg_ext -s PG_CONFIG="$PG_CONFIG" >/dev/null || { echo "pg_ext build failed"; echo "0 passed, 1 failed"; exit 1; }
    $SUDO make -C pg_ext -s PG_CONFIG="$PG_CONFIG" install >/dev/null || { echo "pg_ext install failed"; echo "0 passed, 1 failed"; exit 1; }
fi

work=$(mktemp -d /tmp/lwwsync-pgtest.XXXXXX)
trap 'rm -rf "$work"' EXIT
cp -r common pg_ext sql expected specs version.mk "$work/"
run() {
    if [ "$(id -u)" -eq 0 ]; then chown -R postgres "$work"; su postgres -s /bin/bash -c "$*"; else bash -c "$*"; fi
}
# The suites run through su: PG_CONFIG (and its bindir) passed on, they test
# the Postgres the build installed into. PG_TESTS / PG_ISOLATION pick suites.
out=$(run "cd '$work/pg_ext' && PATH='$PGBINDIR':\$PATH make -s PG_CONFIG='$PG_CONFIG' EXTRA_REGRESS_OPTS='${EXTRA_REGRESS_OPTS:-}' installcheck ${PG_TESTS:+REGRESS='$PG_TESTS' ISOLATION='${PG_ISOLATION:-}'} 2>&1")
rc=$?
echo "$out" | grep -E '^(ok|not ok|test |     |#)|tests passed|failed|FAILED' | grep -v '^#' | head -100
# PG_RESULTS=DIR keeps what the suites printed (results/, output_iso/results/).
if [ -n "${PG_RESULTS:-}" ]; then
    mkdir -p "$PG_RESULTS"
    cp -r "$work"/pg_ext/results "$PG_RESULTS"/ 2>/dev/null
    cp -r "$work"/pg_ext/output_iso/results "$PG_RESULTS"/iso 2>/dev/null
fi
if [ $rc -ne 0 ]; then
    for f in "$work"/pg_ext/regression.diffs "$work"/pg_ext/output_iso/regression.diffs; do
        [ -f "$f" ] && { echo "--- $f"; head -150 "$f"; }
    done
fi
# pg_regress 15 prints one line per test: "test NAME ... ok" / "... FAILED".
p=$(echo "$out" | grep -E '\.\.\. ok' | wc -l)
f=$(echo "$out" | grep -E '\.\.\. FAILED' | wc -l)
[ $rc -ne 0 ] && [ "$f" -eq 0 ] && f=1
echo "$p passed, $f failed"
[ $rc -eq 0 ]
