#!/usr/bin/env bash
# Runs the AddressSanitizer + UBSan builds of `make asan` (build-asan/): the
# core unit tests, the SQLite function tests against build-asan/lwwsync.so,
# and the randomized convergence program. Closing line: "N passed, M failed".
#   ASAN_SCENARIOS=200  convergence scenarios, a quarter with --edge-values (in
#                       one process, so LeakSanitizer sees every connection at exit)
#   SEED=S              replays one convergence seed
# Every sanitizer report (ASan, UBSan, LeakSanitizer) goes to a file in
# build-asan/logs/; a suite counts at least as many failures as the
# processes that reported.
set -uo pipefail
cd "$(dirname "$0")/../.."
build=${ASAN_BUILD:-build-asan}
[[ $build == /* ]] || build=$PWD/$build
logs=$build/logs
rm -rf "$logs"
mkdir -p "$logs"
passed=0 failed=0 broken=()

for b in unit_tests lwwsync.so sqlite_tests convergence; do
    [ -e "$build/$b" ] || { echo "$build/$b missing: run make asan"; echo "0 passed, 1 failed"; exit 1; }
done

# LeakSanitizer stops the process's threads with ptrace-like calls, which
# some containers forbid: then run without leak checks and say so.
leaks=1
probe=$(ASAN_OPTIONS=detect_leaks=1 "$build/unit_tests" --gtest_filter=NoSuchTest 2>&1)
if echo "$probe" | grep -q "LeakSanitizer has encountered a fatal error\|LeakSanitizer does not work"; then
    leaks=0
    echo "note: LeakSanitizer does not work here; leak checks are off"
fi
export ASAN_OPTIONS="detect_leaks=$leaks:log_path=$logs/asan:abort_on_error=0:strict_string_checks=1:check_initialization_order=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$logs/ubsan"
export LWWSYNC_EXT="$build/lwwsync.so"

# Reports written since the last call, printed; their number in $reports.
seen=0
reports=0
new_reports() {
    local all
    all=$(find "$logs" -type f -name 'asan.*' -o -type f -name 'ubsan.*' | sort)
    reports=$(( $(echo "$all" | grep -c . ) - seen ))
    [ "$reports" -gt 0 ] || { reports=0; return; }
    echo "$all" | tail -n "$reports" | while read -r f; do
        echo "--- sanitizer report $f"
        grep -E 'ERROR:|runtime error|SUMMARY|^ *#[0-9]+ ' "$f" | grep -vE 'libasan|libubsan|__libc_start|_start$' | head -n 25
    done
    seen=$((seen + reports))
}

# A suite's failures: its own count, or the number of reporting processes if more.
count() {  # name, passed, failed, rc, had_summary
    local f=$3
    new_reports
    [ "$reports" -gt "$f" ] && f=$reports
    if [ "$4" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; broken+=("$1"); fi
    [ "$5" = 1 ] || [ "$reports" -gt 0 ] || broken+=("$1")
    passed=$((passed + $2)); failed=$((failed + f))
}

gtest_suite() {  # name, binary
    echo "== $1 (ASan+UBSan)"
    local out rc p f start=$SECONDS
    out=$("$2" --gtest_brief=1 --gtest_color=no 2>&1)
    rc=$?
    echo "$out" | grep -vE '^Running main\(\)' | tail -n 20
    p=$(echo "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' | tail -1)
    f=$(echo "$out" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' | tail -1)
    count "$1" "${p:-0}" "${f:-0}" "$rc" "$([ -n "$p$f" ] && echo 1 || echo 0)"
    echo "($((SECONDS - start)) s)"
}

gtest_suite "core unit tests" "$build/unit_tests"
gtest_suite "SQLite extension" "$build/sqlite_tests"

conv_suite() {  # name, scenarios, extra flags...
    local name=$1 n=$2 out rc line start=$SECONDS
    shift 2
    echo "== $name (ASan+UBSan)"
    local args=(--ext "$LWWSYNC_EXT" --scenarios "$n" --no-fork "$@")
    [ -n "${SEED:-}" ] && args+=(--seed "$SEED")
    # In one process (--no-fork), so a leak anywhere is seen at exit; `timeout`
    # stands in for the per-scenario limit forked runs have.
    out=$(timeout 900 "$build/convergence" "${args[@]}" 2>&1)
    rc=$?
    echo "$out" | grep -E '^FAIL|^seed|repro' | head -n 20
    line=$(echo "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed' | tail -1)
    echo "${line:-no summary (exit $rc)}"
    line=${line:-0 passed, 0 failed}
    count "$name" "$(echo "$line" | cut -d' ' -f1)" "$(echo "$line" | cut -d' ' -f3)" "$rc" \
          "$(echo "$out" | grep -qE '^[0-9]+ passed, [0-9]+ failed' && echo 1 || echo 0)"
    echo "($((SECONDS - start)) s)"
}

n=${ASAN_SCENARIOS:-200}
conv_suite "randomized convergence" $((n * 3 / 4))
conv_suite "randomized convergence, infinities" $((n - n * 3 / 4)) --edge-values

[ ${#broken[@]} -gt 0 ] && echo "suites that crashed or printed no summary: ${broken[*]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
