#!/usr/bin/env bash
# The gateway at fleet scale: one lwwsync-server (anonymous role, --db-pool 10)
# on a throwaway cluster (fsync off), and bench/fleet_load.cpp sending small
# exchanges — a pull of at most LIMIT rows plus a one-row push — from N
# distinct device node ids, C at a time, for N = 10, 1 000, 10 000 (NS).
# Each N takes fresh devices, so lwwsync.nodes holds every device of the
# phases before too. Per N: the first exchange of each device (binds its node,
# inserts its row), then SECS seconds of steady exchanges (devices in turn:
# pull past the cursor, push an update of the device's row). Printed:
# exchanges per second, p50/p95 latency, and the ratio of steady exchanges/s
# at the largest N to the smallest (target ≥ 0.9: within 10 %).
# A benchmark: never a test, never run by CI.
#   bench/fleet_bench.sh             SECS=20
#   bench/fleet_bench.sh --quick     SECS=5
# Environment: PG_BIN (default: pg_config --bindir), PORT (5781), GW_PORT
# (18780), NS ("10 1000 10000"), C (12), SECS, LIMIT (10), KEEP=1 keeps files.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
if [ "${1:-}" = --quick ]; then : "${SECS:=5}"; fi
BIN=${PG_BIN:-$(pg_config --bindir)}
PORT=${PORT:-5781}
GW_PORT=${GW_PORT:-18780}
NS=${NS:-"10 1000 10000"}
C=${C:-12}
SECS=${SECS:-20}
LIMIT=${LIMIT:-10}
GATEWAY=${GATEWAY:-"$ROOT/server/lwwsync-server"}
T0=$(date +%s) STARTED=$(date -u "+%F %H:%M UTC")

die() { echo "fleet_bench: $*" >&2; exit 1; }
say() { echo "# $*" >&2; }
[ -x "$GATEWAY" ] || die "$GATEWAY not built (make -C server)"
[ -x /usr/bin/time ] || die "/usr/bin/time missing (apt-get install time)"
[ -f "$($BIN/pg_config --sharedir)/extension/lwwsync.control" ] ||
    die "lwwsync is not installed in $BIN/.. (make -C pg_ext PG_CONFIG=$BIN/pg_config install)"
for p in "$PORT" "$GW_PORT"; do
    ss -Htan 2>/dev/null | awk '{print $4}' | grep -q ":$p\$" && die "port $p is in use (PORT=…, GW_PORT=…)"
done

D=$(mktemp -d /tmp/lwwsync-fleet.XXXXXX)
chmod 755 "$D"
[ "$(id -u)" -eq 0 ] && chown postgres "$D"
GW_PID=""
as_pg() { if [ "$(id -u)" -eq 0 ]; then su postgres -s /bin/bash -c "$*"; else bash -c "$*"; fi; }
cleanup() {
    [ -n "$GW_PID" ] && { kill "$GW_PID" 2>/dev/null; wait "$GW_PID" 2>/dev/null; }
    as_pg "'$BIN/pg_ctl' -D '$D/data' -m fast -w stop >/dev/null 2>&1" || true
    if [ -n "${KEEP:-}" ]; then say "kept $D"; else rm -rf "$D"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP PIPE

g++ -O2 -std=c++17 -o "$D/fleet_load" bench/fleet_load.cpp -lcurl -pthread || die "cannot build bench/fleet_load.cpp (libcurl4-openssl-dev)"
cp "$GATEWAY" "$D/lwwsync-server"   # a rebuild during the run must not change what is measured
as_pg "'$BIN/initdb' -D '$D/data' -A trust -U postgres --no-sync >/dev/null &&
       '$BIN/pg_ctl' -D '$D/data' -o \"-p $PORT -k '$D' -c listen_addresses='' -c fsync=off -c shared_buffers=256MB -c max_wal_size=8GB -c checkpoint_timeout=1h\" -l '$D/log' -w start >/dev/null" ||
    die "cannot start PostgreSQL: $(tail -3 "$D/log" 2>/dev/null)"
pg() { "$BIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$D" -p "$PORT" -U postgres -d fleet "$@"; }
"$BIN/psql" -X -q -h "$D" -p "$PORT" -U postgres -d postgres -c "CREATE DATABASE fleet"
pg >/dev/null <<'SQL'
CREATE ROLE authenticator LOGIN NOINHERIT;
CREATE ROLE anon NOLOGIN;
GRANT anon TO authenticator;
CREATE EXTENSION lwwsync;
CREATE TABLE readings(id int8 PRIMARY KEY, v int8, note text);
SELECT lww_track('readings');
GRANT SELECT, INSERT, UPDATE ON readings TO anon;
SQL

"$D/lwwsync-server" --db-uri "host=$D port=$PORT dbname=fleet user=authenticator" --db-anon-role anon \
    --server-port "$GW_PORT" 2>"$D/gw.log" &
GW_PID=$!
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$GW_PORT/health" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS "http://127.0.0.1:$GW_PORT/health" >/dev/null || die "gateway did not start: $(tail -3 "$D/gw.log")"

say "PostgreSQL $("$BIN/postgres" --version | awk '{print $3}'), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
say "NS=\"$NS\" C=$C SECS=$SECS LIMIT=$LIMIT, gateway --db-pool 10, cluster $D"
declare -A RATE=()
LINES=()
first=0
for n in $NS; do
    # The generator's own CPU, to show the figures are the server's.
    out=$(/usr/bin/time -f 'cpu %U %S' -o "$D/load.time" "$D/fleet_load" --url "http://127.0.0.1:$GW_PORT/rpc/lww_exchange" \
        --nodes "$n" --first "$first" --conc "$C" --secs "$SECS" --limit "$LIMIT") || die "fleet_load failed"
    first=$((first + n))
    read -r _ f_n f_s f_rate f_p50 f_p95 f_err <<<"$(grep '^first ' <<<"$out")"
    read -r _ s_n s_s s_rate s_p50 s_p95 s_err <<<"$(grep '^steady ' <<<"$out")"
    RATE[$n]=$s_rate
    client=$(awk -v n=$((f_n + s_n)) '/^cpu / {printf "%.2f", ($2 + $3) * 1000 / n}' "$D/load.time")
    known=$(pg -c "SELECT count(*) FROM lwwsync.nodes")
    LINES+=("| $n | $known | $f_rate/s (p50 $f_p50, p95 $f_p95 ms) | $s_n | $s_rate | $s_p50 | $s_p95 | $client | $((f_err + s_err)) |")
    say "${LINES[-1]}"
done
set -- $NS
lo=$1 hi=${!#}
ratio=$(awk -v a="${RATE[$hi]}" -v b="${RATE[$lo]}" 'BEGIN {if (b > 0) printf "%.3f", a / b; else print "nan"}')
res=$(awk -v r="$ratio" 'BEGIN {if (r == "nan") print "?"; else if (r >= 0.9) print "PASS"; else printf "MISS (%.0f %% slower, target 10 %%)", (1 - r) * 100}')

echo
echo "lwwsync-server at fleet scale, run started $STARTED, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), C=$C, SECS=$SECS, pull limit $LIMIT rows"
echo
echo "| distinct devices N | nodes known | first exchange of each device | steady exchanges | exchanges/s | p50 ms | p95 ms | load generator CPU ms/exchange | errors |"
echo "|---:|---:|---|---:|---:|---:|---:|---:|---:|"
printf '%s\n' "${LINES[@]}"
echo
echo "steady exchanges/s, N=$hi vs N=$lo: $ratio (target ≥ 0.9) $res"
echo "Ran $(($(date +%s) - T0)) s."
