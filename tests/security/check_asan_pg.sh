#!/usr/bin/env bash
# The PostgreSQL extension built with ASan+UBSan, under its pg_regress and
# isolation suites (make installcheck of pg_ext/). Prints "N passed, M failed".
#
# Postgres itself is not instrumented. Two ways to give the sanitized
# lwwsync.so its runtime (PG_ASAN_PRELOAD):
#   0 (default)  libasan/libubsan load with lwwsync.so, which the postmaster
#                loads at start (shared_preload_libraries; in a backend it
#                would be too late: Postgres has by then overwritten the
#                environment ASan reads its options from with the process
#                title), with ASAN_OPTIONS=verify_asan_link_order=0. UBSan
#                checks fully; ASan checks stack and global accesses of
#                lwwsync code, but not the heap: malloc/new stay glibc's.
#   1            the postmaster starts with LD_PRELOAD=libasan+libubsan, so
#                ASan owns malloc and checks the heap too. On Debian 12 every
#                postgres/psql/initdb process then hangs at startup: libp11-kit
#                (libldap -> gnutls) calls newlocale() from its constructor,
#                before the preloaded libasan initialised, and ASan's lazy
#                init inside glibc's locale lock leaves that lock broken
#                (futex wait in bindtextdomain/freelocale). Use it with a
#                Postgres built without LDAP/GnuTLS.
# Leak checks are off: Postgres frees by memory context.
# Each process that reports writes build-asan/pg-logs/{asan,ubsan}.PID.
# KEEP=1 keeps the temporary tree (server logs in pg_ext/log/).
#
# It installs the sanitized lwwsync.so into the PostgreSQL that `pg_config`
# (first on PATH) names, and reinstalls the normal build when done. Use a
# private PostgreSQL for it (PATH=/opt/…/bin:$PATH), never a shared one.
set -uo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
command -v pg_config >/dev/null || { echo "pg_config not found"; echo "0 passed, 1 failed"; exit 1; }
echo "PostgreSQL: $(pg_config --bindir) (extension into $(pg_config --pkglibdir))"

flags="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer"
preload="$(readlink -f "$(gcc -print-file-name=libasan.so)") $(readlink -f "$(gcc -print-file-name=libubsan.so)")"
logs=$root/build-asan/pg-logs
rm -rf "$logs"
mkdir -p "$logs"
chmod 777 "$logs"

work=$(mktemp -d /tmp/lwwsync-pgasan.XXXXXX)
restore() {
    [ "${KEEP:-0}" = 1 ] && echo "kept $work" || rm -rf "$work"
    # Put the normal build back, so nothing else loads the sanitized one.
    make -C "$root/pg_ext" -s >/dev/null 2>&1 && $SUDO make -C "$root/pg_ext" -s install >/dev/null 2>&1 ||
        echo "warning: could not reinstall the normal pg_ext build"
}
trap restore EXIT

# A clean copy (no objects of the normal build), built with the sanitizers.
cp -r common pg_ext sql expected specs version.mk "$work/"
make -C "$work/pg_ext" -s clean >/dev/null 2>&1
build=(CXXFLAGS="$flags" LDFLAGS_SL="-fsanitize=address,undefined")
make -C "$work/pg_ext" -s -j2 "${build[@]}" >"$logs/build.log" 2>&1 ||
    { tail -20 "$logs/build.log"; echo "0 passed, 1 failed"; exit 1; }
$SUDO make -C "$work/pg_ext" -s "${build[@]}" install >/dev/null ||
    { echo "install failed"; echo "0 passed, 1 failed"; exit 1; }

# initdb refuses root: as root, the suites run as "postgres", as in scripts/pg_test.sh.
run() {
    if [ "$(id -u)" -eq 0 ]; then chown -R postgres "$work"; su postgres -s /bin/bash -c "$*"; else bash -c "$*"; fi
}
asan_opts="detect_leaks=0:log_path=$logs/asan:abort_on_error=1:disable_coredump=1"
if [ "${PG_ASAN_PRELOAD:-0}" = 1 ]; then
    env="export LD_PRELOAD='$preload'"
    echo "mode: LD_PRELOAD=$preload"
else
    env="true"
    asan_opts="$asan_opts:verify_asan_link_order=0"
    echo "shared_preload_libraries = 'lwwsync'" >>"$work/pg_ext/regress.conf"
    echo "mode: runtimes loaded with lwwsync.so (heap not checked; PG_ASAN_PRELOAD=1 for the full mode)"
fi
env="$env; export ASAN_OPTIONS='$asan_opts'
     export UBSAN_OPTIONS='halt_on_error=1:print_stacktrace=1:log_path=$logs/ubsan'"
start=$SECONDS
out=$(run "$env; cd '$work/pg_ext' && make -s installcheck 2>&1")
rc=$?
echo "$out" | grep -E '\.\.\. (ok|FAILED)|tests passed|failed' | head -60
if [ $rc -ne 0 ]; then
    for f in "$work"/pg_ext/regression.diffs "$work"/pg_ext/output_iso/regression.diffs; do
        [ -f "$f" ] && { echo "--- $f"; head -80 "$f"; }
    done
fi
p=$(echo "$out" | grep -cE '\.\.\. ok')
f=$(echo "$out" | grep -cE '\.\.\. FAILED')
reports=$(find "$logs" -type f \( -name 'asan.*' -o -name 'ubsan.*' \) | wc -l)
for r in $(find "$logs" -type f \( -name 'asan.*' -o -name 'ubsan.*' \) | head -5); do
    echo "--- sanitizer report $r"
    grep -E 'ERROR:|runtime error|SUMMARY|^ *#[0-9]+ ' "$r" | head -25
done
# Backends also report to the server log (stderr) when they die before
# reading log_path; a backend killed by a signal is a finding either way.
crashes=$(find "$work" -name postmaster.log -exec grep -hE 'ERROR: AddressSanitizer|runtime error:|terminated by signal|exited with exit code [1-9].*' {} + 2>/dev/null |
          grep -v 'logical replication launcher' | tee "$logs/server-log-reports.txt" | wc -l)
[ "$crashes" -gt 0 ] && { echo "--- from the server logs:"; head -20 "$logs/server-log-reports.txt"; }
reports=$((reports + crashes))
[ "$reports" -gt "$f" ] && f=$reports
[ $rc -ne 0 ] && [ "$f" -eq 0 ] && f=1
echo "($((SECONDS - start)) s, $reports sanitizer reports)"
echo "$p passed, $f failed"
[ "$f" -eq 0 ]
