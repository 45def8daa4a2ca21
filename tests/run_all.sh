#!/usr/bin/env bash
# Runs every test suite and prints one closing line: "N passed, M failed".
# Counts are individual tests (GoogleTest cases, convergence scenarios).
# SCENARIOS=N / MIXED_SCENARIOS=N size the randomized convergence runs
# (default 300 SQLite-only, 200 mixed); SEED=S replays one. FUZZ_SECONDS=N
# (default 20) per fuzz target; ASAN_SCENARIOS=N (200) under ASan.
set -uo pipefail
cd "$(dirname "$0")/.."
passed=0 failed=0 broken=()
export LWWSYNC_EXT="$PWD/lwwsync.so"

gtest_suite() {  # name, binary
    local out
    echo "== $1"
    out=$("$2" --gtest_brief=1 --gtest_color=no 2>&1)
    local rc=$?
    echo "$out" | grep -vE '^Running main\(\)' | tail -n 40
    local p f
    p=$(echo "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' | tail -1)
    f=$(echo "$out" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' | tail -1)
    passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0}))
    if [ $rc -ne 0 ] && [ -z "$f" ]; then failed=$((failed + 1)); broken+=("$1"); fi
}

gtest_suite "core unit tests" build/unit_tests
gtest_suite "SQLite extension" build/sqlite_tests

# A suite that prints its own "N passed, M failed" closing line.
summary_suite() {  # name, command...
    local name=$1; shift
    echo "== $name"
    local out rc line
    out=$("$@" 2>&1)
    rc=$?
    echo "$out" | tail -n 30
    # Failures further up would scroll away: repeat them.
    echo "$out" | head -n -30 | grep -E '^not ok|FAILED|^#' | head -n 40
    line=$(echo "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed' | tail -1)
    if [ -n "$line" ]; then
        passed=$((passed + $(echo "$line" | cut -d' ' -f1)))
        failed=$((failed + $(echo "$line" | cut -d' ' -f3)))
        [ $rc -ne 0 ] && [ "$(echo "$line" | cut -d' ' -f3)" = 0 ] && { failed=$((failed + 1)); broken+=("$name"); }
    else
        failed=$((failed + 1)); broken+=("$name")
    fi
}

conv_args=(--ext "$LWWSYNC_EXT" --scenarios "${SCENARIOS:-300}")
[ -n "${SEED:-}" ] && conv_args+=(--seed "$SEED")
summary_suite "randomized convergence (SQLite peers)" tests/convergence/convergence "${conv_args[@]}"
summary_suite "randomized convergence with purges and long-offline devices (SQLite star)" \
    tests/convergence/convergence "${conv_args[@]}" --purge

summary_suite "PostgreSQL extension (pg_regress, isolation)" scripts/pg_test.sh

LWWSYNC_SKIP_INSTALL=1 summary_suite "Postgres -> SQLite -> Postgres type round trips" tests/interop/types_roundtrip.sh
LWWSYNC_SKIP_INSTALL=1 summary_suite "Schema changes rolled out across Postgres and SQLite" tests/interop/schema_rollout.sh

# Mixed peers need a running cluster with the extension installed.
pgdir=$(mktemp -d /tmp/lwwsync-mixed.XXXXXX)
chmod 755 "$pgdir"
pgport=${MIXED_PGPORT:-5561}
trap 'scripts/pg_cluster.sh stop "$pgdir/pg" >/dev/null 2>&1; rm -rf "$pgdir"' EXIT
mixed_args=(--ext "$LWWSYNC_EXT" --pg "host=$pgdir/pg port=$pgport user=postgres"
            --mixed-scenarios "${MIXED_SCENARIOS:-200}")
[ -n "${SEED:-}" ] && mixed_args+=(--seed "$SEED")
if scripts/pg_cluster.sh start "$pgdir/pg" "$pgport"; then
    summary_suite "randomized convergence (Postgres + SQLite peers)" tests/convergence/mixed "${mixed_args[@]}"
else
    echo "== randomized convergence (Postgres + SQLite peers): cannot start a cluster"
    failed=$((failed + 1)); broken+=("mixed convergence")
fi

# The gateway's HTTP contract: auth, limits, status codes, gzip, recovery.
LWWSYNC_REAL_EXTENSION=1 summary_suite "HTTP gateway (lwwsync-server)" tests/gateway/gateway_test.sh

# The gateway under attack: slowloris, header floods, per-IP caps, clients
# that hang up mid-exchange, timeouts, malformed requests, reserved roles.
summary_suite "HTTP gateway under attack" tests/security/gateway_attacks.sh

# The sources as .clang-format writes them (make format fixes them).
format_check() {  # the Makefile's target: one list of files, one set of flags
    local out
    if out=$(make -s format-check 2>&1); then echo "1 passed, 0 failed"; return 0; fi
    echo "$out" | grep 'code should be clang-formatted' | head -20
    echo "0 passed, 1 failed (make format rewrites them)"
    return 1
}
if command -v clang-format >/dev/null && git rev-parse --git-dir >/dev/null 2>&1; then
    summary_suite "sources formatted (clang-format, .clang-format)" format_check
fi

# The hosts apps load lwwsync into: Node.js (better-sqlite3, built from
# source the first time) and Python's sqlite3, syncing through the gateway.
summary_suite "host apps: Node.js better-sqlite3 and Python sqlite3 over HTTP" tests/hosts/hosts.sh

# 20 SQLite devices writing 10 shared rows through the gateway at once:
# no failed sync, no deadlock, convergence, last write wins.
hot_env=()
[ -n "${SEED:-}" ] && hot_env+=(SEED="$SEED")
summary_suite "hot rows through the gateway (20 devices, 10 rows)" env "${hot_env[@]}" tests/security/hot_rows.sh

# Real processes over HTTP: Postgres + lwwsync-server + SQLite and Postgres
# clients, with faults (kill -9, Postgres stopped, cut connections, crashes).
e2e_env=(ROUNDS="${E2E_ROUNDS:-6}")
[ -n "${SEED:-}" ] && e2e_env+=(SEED="$SEED")
summary_suite "end to end over HTTP (real processes, faults)" env "${e2e_env[@]}" tests/e2e/e2e.sh

# Past one machine: pulls served by a hot standby through two gateways that
# share one primary; three regions (multi-primary) syncing over HTTP.
scale_env=()
[ -n "${SEED:-}" ] && scale_env+=(SEED="$SEED")
summary_suite "pulls from a streaming replica, two gateways on one database" env "${scale_env[@]}" tests/e2e/standby.sh
summary_suite "three regions syncing over HTTP, each with its devices" env "${scale_env[@]}" tests/e2e/regions.sh
summary_suite "tombstone purge and re-snapshot over HTTP (Postgres server, SQLite devices)" env "${scale_env[@]}" tests/e2e/purge.sh

# Copies and restores: a dump restored elsewhere, a server put back from an
# older backup, a lagging standby promoted, a copied device file.
summary_suite "parked rows, foreign keys and triggers over lww_sync (Postgres to Postgres)" tests/e2e/pg_parking.sh
summary_suite "copies, restores and failover (real processes)" tests/restore/restore.sh

# Fuzzing (clang/libFuzzer, tests/security) and the sanitizer builds of the
# suites above; each builds what it needs in its own directory (build-fuzz/,
# build-asan/). SECURITY_SUITES=0 leaves them out.
if [ "${SECURITY_SUITES:-1}" != 0 ]; then
    summary_suite "fuzz targets (${FUZZ_SECONDS:-20} s each) and open findings" \
        env FUZZ_SECONDS="${FUZZ_SECONDS:-20}" make -s -j2 fuzz
    summary_suite "ASan+UBSan: unit, SQLite and convergence tests" make -s -j2 check-asan
    # Installs a sanitized lwwsync.so into pg_config's Postgres for the run,
    # then the normal one again (as scripts/pg_test.sh installs it).
    summary_suite "ASan+UBSan: PostgreSQL extension (pg_regress, isolation)" make -s check-asan-pg
fi

[ ${#broken[@]} -gt 0 ] && echo "suites that crashed or printed no summary: ${broken[*]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
