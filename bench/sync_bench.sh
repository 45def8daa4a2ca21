#!/usr/bin/env bash
# Sync over HTTP, measured side by side in one run (a benchmark: never a test,
# never run by CI). A throwaway PostgreSQL cluster behind lwwsync-server,
# SQLite clients as sqlite3 CLI processes:
#   1. initial sync of ROWS rows x 8 columns into a fresh client (batch_rows
#      1000 = default, 5000, 10000; WHATIF=1 adds the default once more behind
#      a gateway forced to TCP_NODELAY by bench/tcp_nodelay_preload.c) vs
#      psql \copy ... TO STDOUT | sqlite3 .import, one transaction; peak RSS of
#      the client, the gateway and its Postgres backends;
#   2. incremental sync of CHANGES changed rows, pulled and pushed, against a
#      ROWS-row and a SMALL-row database (median of REPS);
#   3. CLIENTS concurrent clients with PER_CLIENT local changes each, all
#      syncing at once through one gateway (--db-pool POOL); lost updates and
#      byte-for-byte convergence checked;
#   4. wire bytes per changed row, gzip on and off;
# plus probes of where the time goes (Nagle stalls, gzip cost, client apply
# of a saved change set, Postgres statements from pg_stat_statements).
#
#   bench/sync_bench.sh            full run, ~4.5 min on 2 cores
#   bench/sync_bench.sh --quick    100k rows, 10 clients, REPS=3, ~40 s
# Environment: ROWS SMALL CHANGES REPS CLIENTS PER_CLIENT SHARED POOL VARIANTS WHATIF(0/1) KEEP(1 keeps files)
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
EXT=${EXT:-"$ROOT/lwwsync.so"}
GATEWAY=${GATEWAY:-"$ROOT/server/lwwsync-server"}

if [ "${1:-}" = --quick ]; then
    : "${ROWS:=100000}" "${CLIENTS:=10}" "${REPS:=3}"
fi
ROWS=${ROWS:-1000000}
SMALL=${SMALL:-10000}
CHANGES=${CHANGES:-1000}
REPS=${REPS:-5}
CLIENTS=${CLIENTS:-50}
PER_CLIENT=${PER_CLIENT:-100}   # half inserts of own rows, half updates of shared rows
SHARED=${SHARED:-200}
POOL=${POOL:-10}
VARIANTS=${VARIANTS:-"1000 5000 10000"}
WHATIF=${WHATIF:-0}   # 1: the default initial sync again behind a gateway forced to TCP_NODELAY
SECRET="sync-bench-secret-that-is-at-least-32-characters"
T0=$(date +%s)

say() { echo "# $*" >&2; }
die() { echo "sync_bench: $*" >&2; exit 1; }
[ -f "$EXT" ] || die "$EXT not built (make all)"
[ -x "$GATEWAY" ] || die "$GATEWAY not built (make all)"
for cmd in sqlite3 psql curl pg_config awk sort cc; do command -v $cmd >/dev/null || die "$cmd not installed"; done
[ -x /usr/bin/time ] || die "/usr/bin/time missing (apt-get install time)"

W=$(mktemp -d /tmp/lwwsync-syncbench.XXXXXX)
chmod 755 "$W"
# Snapshots of the binaries: a rebuild during the run must not change what is measured.
cp "$EXT" "$W/lwwsync.so" && cp "$GATEWAY" "$W/lwwsync-server" || die "cannot copy the binaries"
EXT="$W/lwwsync.so" GATEWAY="$W/lwwsync-server"
declare -A GW=()     # gateway name -> pid
declare -A M_GW=() M_BE=() M_BEANON=() M_NBE=() M_GWS=() V_SAME=()
SAMPLER=""
cleanup() {
    [ -n "$SAMPLER" ] && kill "$SAMPLER" 2>/dev/null
    for n in "${!GW[@]}"; do kill -9 "${GW[$n]}" 2>/dev/null; done
    scripts/pg_cluster.sh stop "$W/pg" >/dev/null 2>&1
    if [ -n "${KEEP:-}" ]; then say "kept $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

. scripts/free_port.sh
now_ms() { date +%s%3N; }
# A number from a lww_sync stats document: jnum KEY < json (top-level keys are unique).
jnum() { grep -o "\"$1\":[0-9.]*" | head -1 | cut -d: -f2; }
median() { sort -g | awk '{a[NR]=$1} END {if (NR == 0) print "nan"; else if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a/b; else print "nan"}'; }
fmt() {  # fmt EXPRESSION [DECIMALS]: an arithmetic expression of numbers, evaluated by awk
    case "$1" in *[!0-9.eE+*/\(\)\ -]* | "" | *\(\)* | *[*/+-] | *[*/+-][*/+-]*) echo nan; return ;; esac
    awk "BEGIN {printf \"%.${2:-1}f\", ($1)}" 2>/dev/null || echo nan
}

# ------------------------------------------------------------------ cluster, roles, gateways
PGPORT=$(free_port) || die "no free port"
scripts/pg_cluster.sh start "$W/pg" "$PGPORT" >/dev/null || die "cannot start PostgreSQL"
# pg_stat_statements with nested statements: where lww_exchange spends its time.
cat >>"$W/pg/data/postgresql.conf" <<'EOF'
shared_preload_libraries = 'pg_stat_statements'
pg_stat_statements.track = all
EOF
scripts/pg_cluster.sh stop "$W/pg" >/dev/null && scripts/pg_cluster.sh start "$W/pg" "$PGPORT" >/dev/null || die "cannot restart PostgreSQL"
pg() { local db=$1; shift; psql -X -h "$W/pg" -p "$PGPORT" -U postgres -d "$db" -Atq -v ON_ERROR_STOP=1 "$@"; }
pg postgres -c "CREATE ROLE authenticator LOGIN NOINHERIT; CREATE ROLE anon NOLOGIN; GRANT anon TO authenticator;" ||
    die "roles"

cc -O2 -shared -fPIC -o "$W/nodelay.so" bench/tcp_nodelay_preload.c -ldl || die "cannot build bench/tcp_nodelay_preload.c"

start_gw() {  # name db pool [preload]
    local name=$1 db=$2 pool=$3 pre=${4:-} port
    port=$(free_port) || die "no free port"
    local args=(--db-uri "host=$W/pg port=$PGPORT dbname=$db user=authenticator" --server-port "$port"
        --jwt-secret "$SECRET" --db-anon-role anon --db-pool "$pool")
    if [ -n "$pre" ]; then LD_PRELOAD=$pre "$GATEWAY" "${args[@]}" 2>>"$W/gw-$name.log" &
    else "$GATEWAY" "${args[@]}" 2>>"$W/gw-$name.log" & fi
    GW[$name]=$!
    eval "URL_$name=http://127.0.0.1:$port/rpc/lww_exchange"
    for _ in $(seq 1 100); do
        curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    die "gateway $name did not become healthy: $(tail -2 "$W/gw-$name.log")"
}
stop_gw() { kill "${GW[$1]}" 2>/dev/null; wait "${GW[$1]}" 2>/dev/null; unset "GW[$1]"; }
url() { local v="URL_$1"; echo "${!v}"; }
gw_lines() { local n; n=$(grep -c '"path":"/rpc/lww_exchange"' "$W/gw-$1.log" 2>/dev/null); echo "${n:-0}"; }
# Exchange requests of gateway log NAME after line FROM: "n sum_ms median_ms p90_ms max_ms bytes_out".
gw_stats() {
    grep '"path":"/rpc/lww_exchange"' "$W/gw-$1.log" | tail -n +$(($2 + 1)) |
        sed -E 's/.*"ms":([0-9.]+).*"bytes_out":([0-9]+).*/\1 \2/' | sort -g |
        awk '{a[NR]=$1; s+=$1; b+=$2} END {if (!NR) {print "0 0 0 0 0 0"; exit}
             p = int(NR * 0.9); if (p < 1) p = 1
             printf "%d %.1f %.1f %.1f %.1f %d\n", NR, s, a[int((NR+1)/2)], a[p], a[NR], b}'
}

# Peak memory: VmRSS of the gateway and RssAnon of its backends, sampled every 0.2 s.
sampler() {  # out gateway-pid db
    local p
    while :; do
        for p in "$2" $(pgrep -f "^postgres: authenticator $3 "); do
            awk -v p="$p" '/^(VmRSS|RssAnon):/ {print p, $1, $2}' "/proc/$p/status" 2>/dev/null
        done >>"$1"
        sleep 0.2
    done
}
start_sampler() { sampler "$1" "$2" "$3" & SAMPLER=$!; }
stop_sampler() { kill "$SAMPLER" 2>/dev/null; wait "$SAMPLER" 2>/dev/null; SAMPLER=""; }
# "gateway_VmHWM_MB backend_max_VmHWM_MB backend_max_sampled_anon_MB backends gateway_sampled_MB"
mem_report() {  # gateway-name db samples
    local gwpid=${GW[$1]} hwm bmax=0 n=0 p v anon gsamp
    hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$gwpid/status")
    for p in $(pg "$2" -c "SELECT pid FROM pg_stat_activity WHERE usename = 'authenticator' AND datname = '$2'"); do
        v=$(awk '/^VmHWM:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
        [ "${v:-0}" -gt "$bmax" ] && bmax=$v
        n=$((n + 1))
    done
    anon=$(awk -v g="$gwpid" '$1 != g && $2 == "RssAnon:" && $3 > m {m = $3} END {print m + 0}' "$3")
    gsamp=$(awk -v g="$gwpid" '$1 == g && $2 == "VmRSS:" && $3 > m {m = $3} END {print m + 0}' "$3")
    echo "$(fmt "$hwm/1024") $(fmt "$bmax/1024") $(fmt "$anon/1024") $n $(fmt "$gsamp/1024")"
}

# ------------------------------------------------------------------ data
SCHEMA_PG="CREATE TABLE t(id int8 PRIMARY KEY, name text, qty int4, price float8, flag int4, ts text, code text, n int8);"
SCHEMA_SQ="CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, qty INTEGER, price REAL, flag INTEGER, ts TEXT, code TEXT, n INTEGER);"
COLS="id, name, qty, price, flag, ts, code, n"
# Rows lo..hi: int8 key, text of 16-40 chars, int, float8 (never integral: x.25/x.5/x.75),
# bool as int, a timestamp as ISO text, a short code, an int8.
gen_rows() {  # lo hi
    echo "INSERT INTO t SELECT i, 'user ' || i || ' ' || substr('abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ', 1 + (i % 26)::int, 8 + (i % 21)::int),
      ((i * 7919) % 100000)::int4, (i % 50000) + 0.25 * (1 + i % 3), (i % 2)::int4,
      '2024-' || lpad((1 + i % 12)::text, 2, '0') || '-' || lpad((1 + i % 28)::text, 2, '0') || 'T' || lpad((i % 24)::text, 2, '0')
        || ':' || lpad((i % 60)::text, 2, '0') || ':' || lpad(((i * 7) % 60)::text, 2, '0') || 'Z',
      chr(65 + (i % 26)::int) || (i % 100), i * 1000003
    FROM generate_series($1::int8, $2::int8) AS i"
}
make_db() {  # db rows -> $W/DB.setup: "insert_ms track_ms"
    local db=$1 rows=$2 a b c
    pg postgres -c "CREATE DATABASE $db" || die "createdb $db"
    pg "$db" -c "CREATE EXTENSION lwwsync" -c "CREATE EXTENSION pg_stat_statements" -c "$SCHEMA_PG" || die "schema $db"
    a=$(now_ms); pg "$db" -c "$(gen_rows 1 "$rows")" || die "rows $db"
    b=$(now_ms); pg "$db" -c "SELECT lww_track('t')" >/dev/null || die "lww_track $db"
    c=$(now_ms); pg "$db" -c "GRANT ALL ON t TO anon" -c "VACUUM ANALYZE" || die "grant $db"
    echo "$((b - a)) $((c - b))" >"$W/$db.setup"
}
# Canonical dumps, identical text in both engines (prices are never integral, so
# float8 output and SQLite's real-to-text agree).
DUMP="SELECT id || '|' || name || '|' || qty || '|' || price || '|' || flag || '|' || ts || '|' || code || '|' || n FROM t ORDER BY id"
DUMP_SHA="SELECT hex(sha3_query('${DUMP//\'/\'\'}'))"
sq() { local db=$1; shift; sqlite3 -bail "$db" ".timeout 30000" ".load $EXT" "$@"; }
new_client() { rm -f "$1"; sq "$1" "$SCHEMA_SQ" "SELECT lww_track('t');" >/dev/null || die "client $1"; }
# timed_sync DB GATEWAY OPTS TAG: stats in $W/TAG.json, "wall user sys maxrss_kb" in $W/TAG.time,
# the gateway's exchange lines of this sync in $W/TAG.gw.
timed_sync() {
    local db=$1 gw=$2 opts=$3 tag=$4 from
    from=$(gw_lines "$gw")
    /usr/bin/time -f '%e %U %S %M' -o "$W/$tag.time" \
        sqlite3 -bail "$db" ".load $EXT" "SELECT lww_sync('$(url "$gw")', '$opts')" >"$W/$tag.json" 2>"$W/$tag.err"
    local rc=$?
    gw_stats "$gw" "$from" >"$W/$tag.gw"
    [ $rc -eq 0 ] && grep -q '"peer"' "$W/$tag.json" || { say "sync $tag failed: $(head -c 300 "$W/$tag.err")"; return 1; }
}
st() { jnum "$2" <"$W/$1.json"; }         # st TAG KEY
stn() { grep -o "\"$2\":{[^}]*}" "$W/$1.json" | sed "s/^\"$2\"://" | jnum "$3"; }  # stn TAG OBJECT KEY
tm() { awk -v f="$2" '{print $f}' "$W/$1.time"; }  # tm TAG FIELD(1 wall 2 user 3 sys 4 rss_kb)
gwf() { awk -v f="$2" '{print $f}' "$W/$1.gw"; }   # gwf TAG FIELD(1 n 2 sum 3 median 4 p90 5 max 6 bytes_out)

say "work dir $W; ROWS=$ROWS SMALL=$SMALL CHANGES=$CHANGES REPS=$REPS CLIENTS=$CLIENTS POOL=$POOL; load $(cut -d' ' -f1-3 /proc/loadavg)"
make_db big "$ROWS"; read -r BIG_INS_MS BIG_TRACK_MS <"$W/big.setup"
say "big: $ROWS rows inserted in $BIG_INS_MS ms, lww_track $BIG_TRACK_MS ms"
make_db small "$SMALL"
make_db conc "$SHARED"

# ------------------------------------------------------------------ 1. initial sync
# Baseline: the same rows, COPY out of Postgres into a plain SQLite table, one transaction.
say "baseline: psql \\copy | sqlite3 .import"
rm -f "$W/base.db"; sqlite3 "$W/base.db" "$SCHEMA_SQ"
a=$(now_ms)
psql -X -h "$W/pg" -p "$PGPORT" -U postgres -d big -c "\\copy (SELECT $COLS FROM t ORDER BY id) TO STDOUT" |
    /usr/bin/time -f '%e %U %S %M' -o "$W/base.time" sqlite3 -bail "$W/base.db" ".mode tabs" "BEGIN" ".import /dev/stdin t" "COMMIT"
b=$(now_ms)
BASE_MS=$((b - a))
BASE_ROWS=$(sqlite3 "$W/base.db" "SELECT count(*) FROM t")
BASE_RSS=$(tm base 4)
[ "$BASE_ROWS" = "$ROWS" ] || die "baseline loaded $BASE_ROWS rows, want $ROWS"
BASE_SHA=$(sqlite3 "$W/base.db" "$DUMP_SHA")
say "baseline: $BASE_MS ms"

declare -A V_OPTS=() V_LABEL=()
ORDER=()
for r in $VARIANTS; do
    if [ "$r" = 1000 ]; then V_OPTS[r$r]='{}'; V_LABEL[r$r]="lww_sync, defaults (batch_rows 1000)"
    else V_OPTS[r$r]="{\"batch_rows\":$r}"; V_LABEL[r$r]="lww_sync, batch_rows $r"; fi
    ORDER+=("r$r")
done
if [ "$WHATIF" = 1 ]; then
    V_OPTS[nodelay]='{}'; V_LABEL[nodelay]="what-if: defaults, gateway with TCP_NODELAY"; ORDER+=(nodelay)
fi
PGSS_DONE=""
for v in "${ORDER[@]}"; do
    say "initial sync: ${V_LABEL[$v]}"
    pre=""; [ "$v" = nodelay ] && pre="$W/nodelay.so"
    start_gw "i_$v" big 10 "$pre"
    new_client "$W/init_$v.db"
    [ -z "$PGSS_DONE" ] && pg big -c "SELECT pg_stat_statements_reset()" >/dev/null
    : >"$W/mem_$v.txt"
    start_sampler "$W/mem_$v.txt" "${GW[i_$v]}" big
    timed_sync "$W/init_$v.db" "i_$v" "${V_OPTS[$v]}" "init_$v" || die "initial sync $v failed"
    stop_sampler
    read -r M_GW[$v] M_BE[$v] M_BEANON[$v] M_NBE[$v] M_GWS[$v] < <(mem_report "i_$v" big "$W/mem_$v.txt")
    if [ -z "$PGSS_DONE" ]; then
        PGSS_DONE=$v
        pg big -F ' | ' -c "SELECT calls, round(total_exec_time::numeric, 0) AS total_ms, round(mean_exec_time::numeric, 2) AS mean_ms,
                rows, left(regexp_replace(query, '\\s+', ' ', 'g'), 110)
            FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = 'big')
            ORDER BY total_exec_time DESC LIMIT 7" >"$W/pgss_init.txt"
    fi
    SHA=$(sqlite3 "$W/init_$v.db" "$DUMP_SHA")
    [ "$SHA" = "$BASE_SHA" ] && V_SAME[$v]=yes || V_SAME[$v]=NO
    if [ "$v" = r1000 ]; then
        # The next syncs of this client: the first one walks its own change feed
        # (every pulled row took a local sequence), then an idle one.
        say "initial sync: the next two syncs of the same client"
        INIT_CURSOR=$(sqlite3 "$W/init_$v.db" "SELECT 'received ' || received || ', floor ' || floor FROM lww_peers")
        timed_sync "$W/init_$v.db" "i_$v" '{}' "catchup" || die "catch-up sync failed"
        timed_sync "$W/init_$v.db" "i_$v" '{}' "idle" || die "idle sync failed"
    fi
    stop_gw "i_$v"
done

# A smaller initial sync with gzip on and off (gzip:false only stops compressing requests).
start_gw small small 10
for g in on off; do
    opts='{}'; [ $g = off ] && opts='{"gzip":false}'
    new_client "$W/small_$g.db"
    timed_sync "$W/small_$g.db" small "$opts" "sinit_$g" || die "small initial sync failed"
done
stop_gw small

# ------------------------------------------------------------------ probes: where the time goes
say "probes: Nagle stalls, gzip cost, client apply of a saved change set"
start_gw probe big 4
start_gw probe_nd big 4 "$W/nodelay.so"
NODE_PROBE="11111111-2222-4333-8444-555555555555"
REQ1000="{\"format\":\"lwwsync.exchange\",\"version\":1,\"node\":\"$NODE_PROBE\",\"received\":\"0\",\"limit\":1000,\"limit_bytes\":8388608}"
REQ10000="{\"format\":\"lwwsync.exchange\",\"version\":1,\"node\":\"$NODE_PROBE\",\"received\":\"0\",\"limit\":10000,\"limit_bytes\":268435456}"
# 20 requests for the first 1000 rows on one kept-alive connection (curl -K): how
# long after the response headers does the body arrive?
nagle_probe() {  # gateway -> "stalled(>=20ms)/20 median_gap_ms max_gap_ms connects"
    : >"$W/curl.cfg"
    for _ in $(seq 1 20); do printf 'url = "%s"\noutput = "/dev/null"\n' "$(url "$1")" >>"$W/curl.cfg"; done
    curl -s -K "$W/curl.cfg" --compressed -H 'Content-Type: application/json' -d "$REQ1000" \
        -w '%{time_starttransfer} %{time_total} %{num_connects}\n' |
        awk '{g = ($2 - $1) * 1000; print g, $3}' | sort -g |
        awk '{a[NR] = $1; if ($1 >= 20) s++; c += $2} END {printf "%d/%d %.1f %.1f %d\n", s, NR, a[int((NR+1)/2)], a[NR], c}'
}
read -r NAGLE_PLAIN NAGLE_PLAIN_MED NAGLE_PLAIN_MAX NAGLE_CONN < <(nagle_probe probe)
read -r NAGLE_ND NAGLE_ND_MED NAGLE_ND_MAX _ < <(nagle_probe probe_nd)
# Gateway time of the same 1000-row pull, gzipped or not (10 each, median of the gateway's ms).
gz_probe() {  # accept-encoding -> "median_ms bytes_out"
    local from
    from=$(gw_lines probe_nd)
    for _ in $(seq 1 10); do
        curl -s -o /dev/null -H "Accept-Encoding: $1" -H 'Content-Type: application/json' -d "$REQ1000" "$(url probe_nd)"
    done
    gw_stats probe_nd "$from" | awk '{printf "%s %d\n", $3, $6 / $1}'
}
read -r GZ_ON_MS GZ_ON_BYTES < <(gz_probe gzip)
read -r GZ_OFF_MS GZ_OFF_BYTES < <(gz_probe identity)
# The change feed's join, as lww_changes runs it (SPI plans are never parallel) for one batch of
# 1000, 5000 and 10000 rows from the middle of the table: the plan as chosen, then a nested loop.
META=$(pg big -c "SELECT meta FROM lwwsync.tables WHERE name = 't'")
MID=$((ROWS / 2))
FEED_Q="SELECT m.st, (u.ctid IS NOT NULL), m.k0, u.name, u.qty, u.price, u.flag, u.ts, u.code, u.n
  FROM $META AS m LEFT JOIN public.t AS u ON u.id = m.k0
 WHERE lwwsync.meta_seq(m.st) > \$1 AND lwwsync.meta_seq(m.st) <= \$2 ORDER BY lwwsync.meta_seq(m.st)"
plan_probe() {  # extra-SET rows -> "join-node|time_ms"
    pg big -c "SET max_parallel_workers_per_gather = 0" -c "$1" -c "PREPARE f(int8, int8) AS $FEED_Q" \
        -c "EXPLAIN (ANALYZE, COSTS OFF) EXECUTE f($MID, $((MID + $2)))" |
        awk '/Join|Nested Loop/ && !j {sub(/^ *(->)? */, ""); sub(/ *\(.*/, ""); j = $0}
             /Seq Scan on t / {seq = " + seq scan of t"} /Execution Time/ {t = $3} END {printf "%s%s|%s\n", j, seq, t}'
}
PLANS=""
for n in 1000 5000 10000; do
    IFS='|' read -r pa ta < <(plan_probe "SET enable_hashjoin = on" $n)
    IFS='|' read -r pb tb < <(plan_probe "SET enable_hashjoin = off; SET enable_mergejoin = off" $n)
    PLANS+="     $n rows: as chosen $pa, $ta ms; hash and merge joins off: $pb, $tb ms"$'\n'
done
PLANS=${PLANS%$'\n'}
PGSS_EX=$(awk -F' [|] ' '/lww_exchange/ {printf "%s", $3; exit}' "$W/pgss_init.txt")
# The client's share: lww_apply of a saved 10 000-row pull into a fresh tracked
# database, vs a plain INSERT of the same rows.
curl -s -H 'Content-Type: application/json' -d "$REQ10000" "$(url probe_nd)" >"$W/pull10000.json"
new_client "$W/apply.db"
# timed_apply DB CHANGESET-FILE [json-path]: "rows seconds" of one lww_apply (sqlite3 .timer)
timed_apply() {
    printf '%s\n' ".load $EXT" ".timer on" \
        "SELECT json_extract(lww_apply(json_extract(CAST(readfile('$2') AS TEXT), '${3:-\$.pull}')), '\$.rows');" |
        sqlite3 -bail "$1" 2>&1 | awk '/Run Time/ {t = $4; next} {r = $0} END {print r, t}'
}
read -r APPLY_ROWS APPLY_S < <(timed_apply "$W/apply.db" "$W/pull10000.json")
rm -f "$W/plain.db"; sqlite3 "$W/plain.db" "$SCHEMA_SQ"
PLAIN_S=$(printf '%s\n' "ATTACH '$W/base.db' AS b;" ".timer on" "INSERT INTO t SELECT * FROM b.t WHERE id <= 10000;" |
    sqlite3 "$W/plain.db" 2>&1 | awk '/Run Time/ {print $4}')
CS_BYTES=$(sqlite3 :memory: "SELECT length(json_extract(CAST(readfile('$W/pull10000.json') AS TEXT), '\$.pull'))")
stop_gw probe; stop_gw probe_nd

# ------------------------------------------------------------------ 2. incremental sync
say "incremental: $CHANGES rows changed, pulled and pushed, $ROWS vs $SMALL rows, $REPS reps"
start_gw inc_big big 10
start_gw inc_small small 10
BIGC="$W/init_r1000.db"; [ -f "$BIGC" ] || die "no up-to-date big client (VARIANTS must contain 1000)"
SMALLC="$W/small_on.db"
timed_sync "$SMALLC" inc_small '{}' "small_catchup" >/dev/null || die "small catch-up"
timed_sync "$BIGC" inc_big '{}' "big_warm" || die "big warm-up"
timed_sync "$SMALLC" inc_small '{}' "small_warm" || die "small warm-up"
# CHANGES distinct rows, spread over the table: even ids on the server, odd ids on the client.
server_update() {  # db size rep
    pg "$1" -c "UPDATE t SET qty = qty + 1, price = price + 1 WHERE id IN
        (SELECT 2 * ((g * 7919 + $3 * 104729) % ($2 / 2)) + 2 FROM generate_series(1, $CHANGES) AS g)"
}
client_update() {  # client size rep
    sq "$1" "UPDATE t SET qty = qty + 2, flag = 1 - flag WHERE id IN
        (SELECT 2 * ((value * 7919 + $3 * 104729) % ($2 / 2)) + 1 FROM generate_series(1, $CHANGES))" || die "client update"
}
inc_rep() {  # rep opts suffix
    local r=$1 opts=$2 s=$3
    server_update big "$ROWS" "$r"; timed_sync "$BIGC" inc_big "$opts" "pull_big_$r$s"
    server_update small "$SMALL" "$r"; timed_sync "$SMALLC" inc_small "$opts" "pull_small_$r$s"
    client_update "$BIGC" "$ROWS" "$r"; timed_sync "$BIGC" inc_big "$opts" "push_big_$r$s"
    client_update "$SMALLC" "$SMALL" "$r"; timed_sync "$SMALLC" inc_small "$opts" "push_small_$r$s"
}
pg big -c "SELECT pg_stat_statements_reset()" >/dev/null
for r in $(seq 1 "$REPS"); do inc_rep "$r" '{}' ""; done
pg big -F ' | ' -c "SELECT calls, round(total_exec_time::numeric, 0) AS total_ms, round(mean_exec_time::numeric, 2) AS mean_ms,
        rows, left(regexp_replace(query, '\s+', ' ', 'g'), 110)
    FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = 'big')
    ORDER BY total_exec_time DESC LIMIT 8" >"$W/pgss_inc.txt"
inc_rep $((REPS + 1)) '{"gzip":false}' "_nogz"
FLOOR_BIG=$(sq "$BIGC" "SELECT received || ' floor ' || floor FROM lww_peers")
# What-if: batch_rows 1001, so that the 1000-row pull is one complete batch and
# the client's floor moves; the first rep lifts it, the second is measured.
inc_rep $((REPS + 2)) '{"batch_rows":1001}' "_fl"
inc_rep $((REPS + 3)) '{"batch_rows":1001}' "_fl"
FLOOR_BIG_AFTER=$(sq "$BIGC" "SELECT received || ' floor ' || floor FROM lww_peers")
inc_med() {  # kind(pull_big...) key-or-"gw"
    local r
    for r in $(seq 1 "$REPS"); do
        if [ "$2" = gw ]; then gwf "$1_$r" 2; elif [ "$2" = wall ]; then tm "$1_$r" 1; else st "$1_$r" "$2"; fi
    done | median
}
# Pull/push counts must be what was changed.
for k in pull_big pull_small; do
    n=$(st "${k}_1" pulled); [ "$n" = "$CHANGES" ] || say "WARNING: $k pulled $n rows, expected $CHANGES"
done
for k in push_big push_small; do
    n=$(st "${k}_1" pushed); [ "$n" = "$CHANGES" ] || say "WARNING: $k pushed $n rows, expected $CHANGES"
done
# Probe: the client's apply alone. One more server update; the pull a client
# would get, fetched with curl (a pull changes nothing on the server) and
# applied with lww_apply to a copy of each client.
inc_apply_probe() {  # db size client gateway tag -> "rows seconds"
    local node cur rec fl
    server_update "$1" "$2" 99
    node=$(sq "$3" "SELECT lww_node_id()")
    IFS='|' read -r rec fl < <(sqlite3 "$3" "SELECT received, floor FROM lww_peers")
    curl -s -H 'Content-Type: application/json' "$(url "$4")" -o "$W/$5.pull.json" -d \
        "{\"format\":\"lwwsync.exchange\",\"version\":1,\"node\":\"$node\",\"received\":\"$rec\",\"received_floor\":\"$fl\",\"limit\":$((CHANGES + 1)),\"limit_bytes\":8388608}"
    cp "$3" "$W/$5.copy.db"
    timed_apply "$W/$5.copy.db" "$W/$5.pull.json"
    rm -f "$W/$5.copy.db"
}
read -r IAP_BIG_ROWS IAP_BIG_S < <(inc_apply_probe big "$ROWS" "$BIGC" inc_big iap_big)
read -r IAP_SMALL_ROWS IAP_SMALL_S < <(inc_apply_probe small "$SMALL" "$SMALLC" inc_small iap_small)
# SQLite's own floor: a plain UPDATE of the same number of scattered rows, one
# transaction, in plain (untracked) tables of both sizes.
floor_update() {  # db size -> seconds
    printf '%s\n' ".timer on" "UPDATE t SET qty = qty + 1, price = price + 1 WHERE id IN
        (SELECT 2 * ((value * 7919 + 77 * 104729) % ($2 / 2)) + 2 FROM generate_series(1, $CHANGES));" |
        sqlite3 "$1" 2>&1 | awk '/Run Time/ {print $4}'
}
rm -f "$W/plain_small.db"
sqlite3 "$W/plain_small.db" "$SCHEMA_SQ" "ATTACH '$W/base.db' AS b" "INSERT INTO t SELECT * FROM b.t WHERE id <= $SMALL"
FLOOR_BIG_S=$(floor_update "$W/base.db" "$ROWS")
FLOOR_SMALL_S=$(floor_update "$W/plain_small.db" "$SMALL")
# Server and clients equal after all this?
INC_BIG_SAME=NO; INC_SMALL_SAME=NO
timed_sync "$BIGC" inc_big '{}' final_big >/dev/null; timed_sync "$SMALLC" inc_small '{}' final_small >/dev/null
[ "$(pg big -c "$DUMP" | sha256sum)" = "$(sq "$BIGC" "$DUMP" | sha256sum)" ] && INC_BIG_SAME=yes
[ "$(pg small -c "$DUMP" | sha256sum)" = "$(sq "$SMALLC" "$DUMP" | sha256sum)" ] && INC_SMALL_SAME=yes
stop_gw inc_big; stop_gw inc_small

# ------------------------------------------------------------------ 3. concurrency
say "concurrency: $CLIENTS clients x $PER_CLIENT changes, --db-pool $POOL"
start_gw conc conc "$POOL"
mkdir -p "$W/conc"
HALF=$((PER_CLIENT / 2))
setup_client() {
    new_client "$W/conc/c$1.db"
    timed_sync "$W/conc/c$1.db" conc '{}' "conc/setup$1" || echo "setup $1" >>"$W/conc/errors"
}
pids=()
for c in $(seq 1 "$CLIENTS"); do
    setup_client "$c" &
    pids+=($!)
    if [ ${#pids[@]} -ge 10 ]; then wait "${pids[@]}"; pids=(); fi
done
[ ${#pids[@]} -gt 0 ] && wait "${pids[@]}"
pg conc -c "SELECT id || '|' || name || '|' || qty FROM t WHERE id <= $SHARED ORDER BY id" >"$W/conc/shared.before"
# Local writes, one client after the other (so the last writer of each shared
# row is known): HALF inserts of the client's own rows, HALF updates of shared rows.
for c in $(seq 1 "$CLIENTS"); do
    sql="BEGIN;"
    for j in $(seq 1 "$HALF"); do
        id=$((10000000 + c * 1000 + j))
        sql+="INSERT INTO t VALUES ($id, 'ins c$c j$j', $j, $c.5, 1, '2025-01-01T00:00:00Z', 'C$c', $((c * j)));"
        echo "$id" >>"$W/conc/inserted"
        sid=$(((c * 7 + j * 13) % SHARED + 1))
        sql+="UPDATE t SET name = 'upd c$c j$j', qty = $((c * 1000 + j)) WHERE id = $sid;"
        echo "$sid|upd c$c j$j|$((c * 1000 + j))" >>"$W/conc/updates"
    done
    sq "$W/conc/c$c.db" "$sql COMMIT;" || die "client $c writes"
done
# Expected shared rows: the last update of each, else as before.
awk -F'|' 'NR == FNR {last[$1] = $0; next} {print ($1 in last) ? last[$1] : $0}' \
    "$W/conc/updates" "$W/conc/shared.before" >"$W/conc/shared.expected"
round() {  # tag -> wall ms of all clients syncing at once
    local tag=$1 a b c pids=()
    a=$(now_ms)
    for c in $(seq 1 "$CLIENTS"); do
        { timed_sync "$W/conc/c$c.db" conc '{}' "conc/$tag$c" 2>/dev/null || echo "$tag $c" >>"$W/conc/errors"; } &
        pids+=($!)
    done
    wait "${pids[@]}"
    b=$(now_ms)
    echo $((b - a))
}
CONC_FROM=$(gw_lines conc)
CONC_MS=$(round r1_)
CONC_GW=$(gw_stats conc "$CONC_FROM")
CONC_503=$(grep '"path":"/rpc/lww_exchange"' "$W/gw-conc.log" | tail -n +$((CONC_FROM + 1)) | grep -vc '"status":200')
CONC_FINAL_MS=$(round r2_)
CONC_ERRORS=$(cat "$W/conc/errors" 2>/dev/null | wc -l)
conc_col() { for c in $(seq 1 "$CLIENTS"); do st "conc/${2:-r1_}$c" "$1"; done; }
conc_sum() { for c in $(seq 1 "$CLIENTS"); do stn "conc/${3:-r1_}$c" "$1" "$2"; done | awk '{s+=$1} END {print s+0}'; }
CONC_CLIENT_MED=$(conc_col ms | median)
CONC_CLIENT_MAX=$(conc_col ms | sort -g | tail -1)
CONC_RETRIES=$(conc_col retries | awk '{s+=$1} END {print s+0}')
CONC_PUSHED=$(conc_col pushed | awk '{s+=$1} END {print s+0}')
CONC_SENT_REG=$(conc_sum sent received); CONC_SENT_IGN=$(conc_sum sent ignored)
CONC2_PUSHED=$(conc_col pushed r2_ | awk '{s+=$1} END {print s+0}')
CONC2_PULLED=$(conc_col pulled r2_ | awk '{s+=$1} END {print s+0}')
CONC2_SENT_REG=$(conc_sum sent received r2_); CONC2_SENT_IGN=$(conc_sum sent ignored r2_)
CONC2_CLIENT_MED=$(conc_col ms r2_ | median)
CONC2_CLIENT_MAX=$(conc_col ms r2_ | sort -g | tail -1)
CONC_RSS_MAX=$(for c in $(seq 1 "$CLIENTS"); do tm "conc/r1_$c" 4; done | sort -g | tail -1)
# Checks: every inserted row once, every shared row's last write, every client = server.
sort -n "$W/conc/inserted" >"$W/conc/inserted.sorted"
pg conc -c "SELECT id FROM t WHERE id > 10000000 ORDER BY id" >"$W/conc/server.inserted"
INS_WANT=$(wc -l <"$W/conc/inserted.sorted")
INS_HAVE=$(pg conc -c "SELECT count(*) FROM t WHERE id > 10000000")
INS_DISTINCT=$(pg conc -c "SELECT count(DISTINCT id) FROM t WHERE id > 10000000")
cmp -s "$W/conc/inserted.sorted" "$W/conc/server.inserted" && INS_OK=yes || INS_OK=NO
pg conc -c "SELECT id || '|' || name || '|' || qty FROM t WHERE id <= $SHARED ORDER BY id" >"$W/conc/shared.after"
SHARED_LOST=$(diff "$W/conc/shared.expected" "$W/conc/shared.after" | grep -c '^>')
SHARED_TOUCHED=$(cut -d'|' -f1 "$W/conc/updates" | sort -u | wc -l)
pg conc -c "$DUMP" >"$W/conc/server.dump"
SERVER_ROWS=$(wc -l <"$W/conc/server.dump")
SAME=0
for c in $(seq 1 "$CLIENTS"); do
    sq "$W/conc/c$c.db" "$DUMP" | cmp -s - "$W/conc/server.dump" && SAME=$((SAME + 1))
done
CONC_MEM=$(awk '/^VmHWM:/ {printf "%.1f", $2 / 1024}' "/proc/${GW[conc]}/status")
stop_gw conc

# ------------------------------------------------------------------ summary
T1=$(date +%s)
B=r1000
init_ms=$(st init_$B ms)
cat <<EOF

== lwwsync sync over HTTP: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), run took $((T1 - T0)) s
   commit $(git -C "$ROOT" log -1 --format='%h %s' 2>/dev/null | cut -c1-70)$(git -C "$ROOT" status --porcelain 2>/dev/null | grep -q . && echo ' (working tree modified)')
   ROWS=$ROWS SMALL=$SMALL CHANGES=$CHANGES REPS=$REPS CLIENTS=$CLIENTS PER_CLIENT=$PER_CLIENT POOL=$POOL
   setup: $ROWS rows inserted in Postgres in $BIG_INS_MS ms, lww_track $BIG_TRACK_MS ms

1. Initial sync of $ROWS rows x 8 columns into a fresh SQLite client
| case | wall s | ratio vs baseline | target | client CPU s (user+sys) | client peak RSS MB | round trips | gateway ms: sum / median / p90 | gateway VmHWM MB | PG backends: max VmHWM MB (max sampled RssAnon MB) of N | same rows as baseline |
|---|---:|---:|---:|---:|---:|---:|---|---:|---|---|
| baseline: psql \\copy \\| sqlite3 .import, 1 txn | $(fmt "$BASE_MS/1000" 2) | 1.00x | | $(fmt "$(tm base 2)+$(tm base 3)" 1) (sqlite3 only) | $(fmt "$BASE_RSS/1024") (sqlite3) | | | | | |
EOF
for v in "${ORDER[@]}"; do
    echo "| ${V_LABEL[$v]} | $(fmt "$(st init_$v ms)/1000" 2) | $(ratio "$(st init_$v ms)" "$BASE_MS")x | 5x | $(fmt "$(tm init_$v 2)+$(tm init_$v 3)" 1) | $(fmt "$(tm init_$v 4)/1024") | $(st init_$v batches) | $(fmt "$(gwf init_$v 2)/1000" 1) s / $(gwf init_$v 3) / $(gwf init_$v 4) ms | ${M_GW[$v]} | ${M_BE[$v]} (${M_BEANON[$v]}) of ${M_NBE[$v]} | ${V_SAME[$v]} |"
done
cat <<EOF
| next sync of the defaults client (nothing changed) | $(fmt "$(st catchup ms)/1000" 2) | | | $(fmt "$(tm catchup 2)+$(tm catchup 3)" 1) | $(fmt "$(tm catchup 4)/1024") | $(st catchup batches) | $(fmt "$(gwf catchup 2)/1000" 1) s / $(gwf catchup 3) / $(gwf catchup 4) ms | | | |
| and the sync after it | $(fmt "$(st idle ms)/1000" 3) | | | | | $(st idle batches) | $(gwf idle 2) ms | | | |
   cursor of the defaults client after its initial sync: $INIT_CURSOR

   Where the time of the defaults run goes: client wall $(fmt "$init_ms/1000" 1) s = gateway (request in to response out) $(fmt "$(gwf init_$B 2)/1000" 1) s
   + client CPU $(fmt "$(tm init_$B 2)+$(tm init_$B 3)" 1) s + waiting (fsync, TCP) $(fmt "($init_ms - $(gwf init_$B 2))/1000 - $(tm init_$B 2) - $(tm init_$B 3)" 1) s.
   Postgres (pg_stat_statements, track=all, defaults run; nested statements run inside lww_exchange):
$(sed 's/^/     /' "$W/pgss_init.txt")
   Plan of the feed join for one batch (EXPLAIN ANALYZE, serial as in lww_exchange):
$PLANS
   Probe, Nagle: 20 pulls of 1000 rows on kept-alive connections; body >= 20 ms after the headers:
     plain gateway $NAGLE_PLAIN (median gap $NAGLE_PLAIN_MED ms, max $NAGLE_PLAIN_MAX ms; $NAGLE_CONN connections for 20 requests),
     with TCP_NODELAY $NAGLE_ND (median $NAGLE_ND_MED ms, max $NAGLE_ND_MAX ms)
   Probe, gzip: gateway ms of one 1000-row pull: gzip $GZ_ON_MS ms ($GZ_ON_BYTES B), identity $GZ_OFF_MS ms ($GZ_OFF_BYTES B);
     lww_exchange in Postgres alone: $PGSS_EX ms per call (mean, defaults run)
   Probe, client: lww_apply of a saved $APPLY_ROWS-row pull ($CS_BYTES B of JSON) into a fresh tracked db: $(fmt "$APPLY_S*1000" 0) ms
     ($(fmt "$APPLY_S*1000000/$APPLY_ROWS" 1) us/row); plain INSERT of the same rows: $(fmt "$PLAIN_S*1000" 0) ms ($(ratio "$APPLY_S" "$PLAIN_S")x)

2. Incremental sync of $CHANGES changed rows (median of $REPS; stats "ms" of lww_sync; gateway = sum of its request ms)
| direction | $ROWS-row db ms | $SMALL-row db ms | ratio | target | gateway ms ($ROWS / $SMALL) | round trips | process wall s ($ROWS / $SMALL) |
|---|---:|---:|---:|---:|---|---:|---|
| pull (server UPDATE of $CHANGES rows, 2 columns) | $(inc_med pull_big ms) | $(inc_med pull_small ms) | $(ratio "$(inc_med pull_big ms)" "$(inc_med pull_small ms)")x | 1.5x | $(inc_med pull_big gw) / $(inc_med pull_small gw) | $(st pull_big_1 batches) | $(inc_med pull_big wall) / $(inc_med pull_small wall) |
| push (client UPDATE of $CHANGES rows, 2 columns) | $(inc_med push_big ms) | $(inc_med push_small ms) | $(ratio "$(inc_med push_big ms)" "$(inc_med push_small ms)")x | 1.5x | $(inc_med push_big gw) / $(inc_med push_small gw) | $(st push_big_1 batches) | $(inc_med push_big wall) / $(inc_med push_small wall) |
   registers per pulled row: $(fmt "$(stn pull_big_1 received received)/$(st pull_big_1 pulled)" 1) (2 columns changed); client cursor of the server: $FLOOR_BIG;
     a push of $CHANGES rows also pulls $(st push_big_1 pulled) rows back ($(grep -o '"received":{[^}]*}' "$W/push_big_1.json"))
   what-if batch_rows 1001 (the pull is one complete batch, the floor moves; cursor then $FLOOR_BIG_AFTER):
     pull $(st "pull_big_$((REPS + 3))_fl" ms) / $(st "pull_small_$((REPS + 3))_fl" ms) ms ($(ratio "$(st "pull_big_$((REPS + 3))_fl" ms)" "$(st "pull_small_$((REPS + 3))_fl" ms)")x), $(fmt "$(stn "pull_big_$((REPS + 3))_fl" received received)/$(st "pull_big_$((REPS + 3))_fl" pulled)" 1) registers/row, $(fmt "$(st "pull_big_$((REPS + 3))_fl" bytes_received)/$(st "pull_big_$((REPS + 3))_fl" pulled)" 0) JSON B/row;
     push $(st "push_big_$((REPS + 3))_fl" ms) / $(st "push_small_$((REPS + 3))_fl" ms) ms ($(ratio "$(st "push_big_$((REPS + 3))_fl" ms)" "$(st "push_small_$((REPS + 3))_fl" ms)")x), pulling back $(st "push_big_$((REPS + 3))_fl" pulled) rows
   client apply alone (lww_apply of the next $CHANGES-row pull, saved, into a copy of the client): $ROWS-row client
     $(fmt "$IAP_BIG_S*1000" 1) ms ($IAP_BIG_ROWS rows), $SMALL-row client $(fmt "$IAP_SMALL_S*1000" 1) ms ($IAP_SMALL_ROWS rows): $(ratio "$IAP_BIG_S" "$IAP_SMALL_S")x
   SQLite floor: plain UPDATE of $CHANGES scattered rows (2 columns, 1 txn, untracked): $ROWS rows $(fmt "$FLOOR_BIG_S*1000" 1) ms,
     $SMALL rows $(fmt "$FLOOR_SMALL_S*1000" 1) ms: $(ratio "$FLOOR_BIG_S" "$FLOOR_SMALL_S")x
   Postgres during the incremental reps ($ROWS-row db, pg_stat_statements):
$(sed 's/^/     /' "$W/pgss_inc.txt")
   all reps, pull $ROWS: $(for r in $(seq 1 "$REPS"); do printf '%s ' "$(st pull_big_$r ms)"; done)| pull $SMALL: $(for r in $(seq 1 "$REPS"); do printf '%s ' "$(st pull_small_$r ms)"; done)
   all reps, push $ROWS: $(for r in $(seq 1 "$REPS"); do printf '%s ' "$(st push_big_$r ms)"; done)| push $SMALL: $(for r in $(seq 1 "$REPS"); do printf '%s ' "$(st push_small_$r ms)"; done)
   client equals server afterwards: $ROWS-row $INC_BIG_SAME, $SMALL-row $INC_SMALL_SAME

3. Concurrency: $CLIENTS sqlite3 processes, $HALF inserts + $HALF updates of $SHARED shared rows each, syncing at once, --db-pool $POOL
| measure | value |
|---|---:|
| wall time, all $CLIENTS syncs at once | $CONC_MS ms |
| per-client lww_sync ms: median / max | $CONC_CLIENT_MED / $CONC_CLIENT_MAX |
| rows pushed in total (registers sent / ignored by the server) | $CONC_PUSHED ($CONC_SENT_REG / $CONC_SENT_IGN) |
| gateway requests / non-200 answers / client retries | $(echo "$CONC_GW" | cut -d' ' -f1) / $CONC_503 / $CONC_RETRIES |
| gateway request ms: median / p90 / max | $(echo "$CONC_GW" | awk '{print $3 " / " $4 " / " $5}') |
| failed syncs (both rounds) | $CONC_ERRORS |
| inserted rows on the server: expected / present / distinct / same ids | $INS_WANT / $INS_HAVE / $INS_DISTINCT / $INS_OK |
| shared rows ($SHARED, $SHARED_TOUCHED updated): not the last write | $SHARED_LOST |
| final round (all at once again) wall; per-client ms median / max | $CONC_FINAL_MS ms; $CONC2_CLIENT_MED / $CONC2_CLIENT_MAX |
| final round: rows pulled / rows pushed back (registers sent / ignored by the server) | $CONC2_PULLED / $CONC2_PUSHED ($CONC2_SENT_REG / $CONC2_SENT_IGN) |
| clients byte-for-byte equal to the server ($SERVER_ROWS rows) | $SAME / $CLIENTS |
| client peak RSS max / gateway VmHWM | $(fmt "$CONC_RSS_MAX/1024") MB / $CONC_MEM MB |

4. Wire bytes (bytes = JSON documents; wire = on the socket, as libcurl counts them)
| sync | rows | JSON B/row | wire B/row | compression |
|---|---:|---:|---:|---:|
EOF
wire_row() {  # label tag dir(received|sent) rows-key
    local rows b w
    rows=$(st "$2" "$4")
    b=$(st "$2" "bytes_$3"); w=$(st "$2" "wire_bytes_$3")
    echo "| $1 | $rows | $(fmt "$b/$rows" 0) | $(fmt "$w/$rows" 0) | $(ratio "$b" "$w")x |"
}
wire_row "initial $ROWS, gzip on (pull)" "init_$B" received pulled
wire_row "initial $SMALL, gzip on (pull)" sinit_on received pulled
wire_row "initial $SMALL, gzip false (pull)" sinit_off received pulled
wire_row "incremental pull $CHANGES, gzip on" pull_big_1 received pulled
wire_row "incremental pull $CHANGES, gzip false" "pull_big_$((REPS + 1))_nogz" received pulled
wire_row "incremental push $CHANGES, gzip on" push_big_1 sent pushed
wire_row "incremental push $CHANGES, gzip false" "push_big_$((REPS + 1))_nogz" sent pushed
echo "   (gzip false only stops request compression: the client always sends Accept-Encoding, and the gateway gzips responses >= 256 B)"
echo "   incremental with gzip false, ms: pull $(st "pull_big_$((REPS + 1))_nogz" ms), push $(st "push_big_$((REPS + 1))_nogz" ms)"
