#!/usr/bin/env bash
# Runs the libFuzzer targets of tests/security/fuzz; closing line "N passed, M failed".
#  1. Replays each reproducer in tests/security/findings/<target>/ (open
#     findings): one test each, which fails while the finding reproduces.
#  2. Fuzzes each target for a bounded time, printing the inputs tried
#     (libFuzzer's stat::number_of_executed_units). A target passes when it
#     ran its time without a crash, a sanitizer report, a non-lww::Error
#     exception or a broken property. Open findings are steered around
#     (FUZZ_SKIP_KNOWN=1) so a run can find new ones.
#   FUZZ_SECONDS=30                 seconds per target
#   FUZZ_TARGETS="jwt row_codec"    a subset
#   FUZZ_BUILD=build-fuzz           where `make fuzz-build` put the binaries
# Inputs that grow coverage are kept in $FUZZ_BUILD/corpus/<target> (the
# seeds in tests/security/corpus/<target> are only read); crash inputs land
# in $FUZZ_BUILD/artifacts/<target>/.
set -uo pipefail
cd "$(dirname "$0")/../.."
secs=${FUZZ_SECONDS:-30}
[ "$secs" -ge 1 ] 2>/dev/null || { echo "FUZZ_SECONDS must be a positive number of seconds"; echo "0 passed, 1 failed"; exit 1; }
build=${FUZZ_BUILD:-build-fuzz}
sec=tests/security

# target, -max_len (bytes), dictionary. Lengths: change sets and exchange
# documents well past the 32-level nesting bound; a little over the 64 KiB an
# HTTP error body is parsed up to; the 8 KiB cpp-httplib allows for a header
# line (the bearer token) plus the 9 bytes of mode and clock.
targets=(
    "json               4096 lwwsync.dict"
    "changeset         16384 lwwsync.dict"
    "exchange_request  16384 lwwsync.dict"
    "exchange_response 16384 lwwsync.dict"
    "http_error        66000 lwwsync.dict"
    "jwt                8201 jwt.dict"
    "sync_options       4096 lwwsync.dict"
    "row_codec          4096 -"
)
selected() { [ -z "${FUZZ_TARGETS:-}" ] || [[ " $FUZZ_TARGETS " == *" $1 "* ]]; }

mkdir -p "$build/logs"
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_stack_use_after_return=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
passed=0 failed=0

# What broke, and the first frames of its stack (libFuzzer/sanitizer frames left out).
report() {  # log
    grep -E '^FINDING|ERROR: (Address|Leak|Undefined)Sanitizer|runtime error:|deadly signal|SUMMARY: |timeout after|out-of-memory' "$1" | head -n 8
    grep -E '^ *#[0-9]+ ' "$1" | grep -vE 'libFuzzer|fuzzer::|__sanitizer|__asan|__ubsan|libc\.so|_start|abort|raise|pthread_kill' | head -n 14
}

# 1. Open findings.
for spec in "${targets[@]}"; do
    read -r name _ <<<"$spec"
    selected "$name" || continue
    for f in "$sec/findings/$name"/*; do
        [ -f "$f" ] || continue
        echo "== open finding $name/$(basename "$f")"
        log=$build/logs/finding-$name-$(basename "$f").log
        ("$build/fuzz_$name" "$f") >"$log" 2>&1
        if [ $? -eq 0 ] && ! grep -qE '^==[0-9]+==ERROR|runtime error:|^FINDING' "$log"; then
            echo "does not reproduce any more: move it to $sec/corpus/$name/"
            passed=$((passed + 1))
        else
            echo "still reproduces (tests/security/findings/README.md):"
            report "$log" | head -n 3
            failed=$((failed + 1))
        fi
    done
done

# 2. Fuzzing.
export FUZZ_SKIP_KNOWN=1
for spec in "${targets[@]}"; do
    read -r name max_len dict <<<"$spec"
    selected "$name" || continue
    bin=$build/fuzz_$name
    work=$build/corpus/$name art=$build/artifacts/$name log=$build/logs/$name.log
    seeds=$sec/corpus/$name
    mkdir -p "$work" "$art" "$seeds"
    echo "== fuzz_$name (${secs} s, -max_len=$max_len)"
    if [ ! -x "$bin" ]; then
        echo "fuzz_$name: not built (make fuzz-build)"
        failed=$((failed + 1))
        continue
    fi
    args=(-max_total_time="$secs" -max_len="$max_len" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048
          -artifact_prefix="$art/")
    [ "$dict" != - ] && args+=(-dict="$sec/fuzz/$dict")
    start=$(date +%s)
    ("$bin" "${args[@]}" "$work" "$seeds") >"$log" 2>&1
    rc=$?
    took=$(( $(date +%s) - start ))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    units=$(find "$work" -type f | wc -l)
    crash=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
    if [ $rc -eq 0 ] && ! grep -qE '^==[0-9]+==ERROR|runtime error:|^FINDING' "$log"; then
        echo "fuzz_$name: ${execs:-?} inputs tried in ${took} s, corpus $units files: ok"
        passed=$((passed + 1))
    else
        echo "fuzz_$name: ${execs:-?} inputs tried in ${took} s: FAILED (exit $rc)"
        report "$log"
        if [ -n "$crash" ] && [ -f "$crash" ]; then
            echo "input: $crash ($(stat -c %s "$crash") bytes)"
            [ "$(stat -c %s "$crash")" -le 3000 ] && echo "base64: $(base64 -w0 "$crash")"
        fi
        echo "full log: $log"
        failed=$((failed + 1))
    fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
