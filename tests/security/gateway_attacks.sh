#!/usr/bin/env bash
# lwwsync-server under attack, against a throwaway PostgreSQL 15 with the
# stand-in lww_exchange(json) (no extension needed):
#   slowloris (40 sockets trickling headers, pool of 2): /health still answers
#   within 1 s, the slow sockets are cut after server-request-timeout;
#   a body trickled byte by byte is cut the same way;
#   header flood (endless header lines): 431 and closed, RSS stays small;
#   per-IP connection cap: the address over it is refused, another is served;
#   a client that hangs up mid-exchange: its query is cancelled and its
#   transaction rolled back within ~1 s, the pool serves the next request;
#   statement_timeout -> 504, lock_timeout -> 503, both with Retry-After;
#   malformed requests get 4xx, never 500: multipart/non-JSON 415, JSON
#   nested past 32 levels 400, SQLSTATE class 54 400/413, Range ignored on
#   POST (full 200), bad chunked encoding 400, bad Transfer-Encoding 501,
#   request line/headers too large 414/431;
#   reserved role names in tokens (none, public, pg_*...) 403; JWT claims
#   nested past 32 levels 401.
# Every check asserts the HTTP status and the error message. Loopback only
# (127.0.0.1, and 127.0.0.2 as a second client address); every attack is
# bounded in bytes and time. Prints "ok - …"/"not ok - …" per check and ends
# with "N passed, M failed". KEEP=1 keeps the work directory.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"

. scripts/test_lib.sh

for tool in curl openssl psql g++; do command -v "$tool" >/dev/null || die "prerequisites" "$tool not found"; done
GW=${LWWSYNC_SERVER_BIN:-}
if [ -z "$GW" ]; then
    build_log=$(make -s -C server 2>&1 >/dev/null) || { echo "$build_log"; die "build" "make -C server failed"; }
    GW=$ROOT/server/lwwsync-server
fi

WORK=$(mktemp -d /tmp/lwwsync-attacks.XXXXXX)
chmod 755 "$WORK"
PGDIR=$WORK/pg
GW_PIDS=() BG_PIDS=()
cleanup() {
    for p in "${BG_PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
    for p in "${GW_PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${GW_PIDS[@]}" "${BG_PIDS[@]}"; do wait "$p" 2>/dev/null; done
    scripts/pg_cluster.sh stop "$PGDIR" >/dev/null 2>&1
    if [ -n "${KEEP:-}" ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

g++ -O2 -std=c++17 -o "$WORK/gwattack" tests/security/gwattack.cpp || die "build" "tests/security/gwattack.cpp"
ATTACK=$WORK/gwattack

. scripts/free_port.sh
PGPORT=$(free_port) || die "setup" "no free port"
scripts/pg_cluster.sh start "$PGDIR" "$PGPORT" >/dev/null 2>&1 ||
    { tail -5 "$PGDIR/server.log" 2>/dev/null; die "start PostgreSQL" "scripts/pg_cluster.sh start failed"; }
pg() {  # pg DB [psql args...]
    local db=$1; shift
    psql -X -q -At -v ON_ERROR_STOP=1 -h "$PGDIR" -p "$PGPORT" -U postgres -d "$db" "$@"
}
jget() { pg postgres -v j="$1" -v p="$2" <<<"SELECT (:'j')::json #>> (:'p')::text[]" 2>/dev/null; }

pg postgres >/dev/null <<'SQL' || die "database setup" "roles"
CREATE ROLE authenticator LOGIN NOINHERIT;
CREATE ROLE anon NOLOGIN;
CREATE ROLE alice NOLOGIN;
GRANT anon, alice TO authenticator;
CREATE DATABASE gw;
SQL
# The stand-in: echoes; {"raise": SQLSTATE} raises; {"sleep": s} waits;
# {"lock": id} takes a row lock (blocks while another session holds it).
pg gw >/dev/null <<'SQL' || die "database setup" "stand-in lww_exchange(json)"
CREATE TABLE locked(id int PRIMARY KEY, n int);
INSERT INTO locked VALUES (1, 0);
GRANT SELECT, UPDATE ON locked TO alice, anon;
CREATE FUNCTION lww_exchange(json) RETURNS json LANGUAGE plpgsql AS $$
BEGIN
    IF $1->>'raise' IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = $1->>'raise', MESSAGE = 'raised ' || ($1->>'raise');
    END IF;
    IF $1->>'sleep' IS NOT NULL THEN
        PERFORM pg_sleep(($1->>'sleep')::float8);
    END IF;
    IF $1->>'lock' IS NOT NULL THEN
        UPDATE locked SET n = n + 1 WHERE id = ($1->>'lock')::int;
    END IF;
    RETURN json_build_object('echo', $1, 'role', current_user, 'pad', repeat('x', 2000));
END $$;
GRANT EXECUTE ON FUNCTION lww_exchange(json) TO anon, alice;
SQL
DB_URI="postgresql://authenticator@/gw?host=$PGDIR&port=$PGPORT"

SECRET=0123456789abcdef0123456789abcdef-attacks
mint() { jwt_hs256 "$SECRET" "$1"; }
TOK=$(mint '{"role":"alice","sub":"alice"}')

req() {  # req URL [curl args...]: CODE, BODY, ELAPSED (s); headers in $WORK/hdr
    CODE=$(curl -sS -o "$WORK/body" -D "$WORK/hdr" -w '%{http_code} %{time_total}' --max-time 30 "$@" 2>"$WORK/curl.err")
    ELAPSED=${CODE#* }
    CODE=${CODE%% *}
    BODY=$(tr -d '\0' <"$WORK/body" 2>/dev/null)
}
hdr() { grep -i "^$1:" "$WORK/hdr" | head -1 | cut -d: -f2- | tr -d '\r' | sed 's/^ *//'; }
post() { local url=$1 body=$2; shift 2; req "$url" -H 'Content-Type: application/json' --data-binary "$body" "$@"; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null; }

start_gw() {  # NAME [args...]: <NAME>_PORT, <NAME>_URL, <NAME>_PID
    local name=$1 port pid; shift
    port=$(free_port) || die "start $name" "no free port"
    "$GW" --server-port "$port" --db-uri "$DB_URI" --jwt-secret "$SECRET" "$@" 2>"$WORK/$name.log" &
    pid=$!
    GW_PIDS+=("$pid")
    printf -v "${name}_PORT" '%s' "$port"
    printf -v "${name}_URL" '%s' "http://127.0.0.1:$port"
    printf -v "${name}_PID" '%s' "$pid"
    for _ in $(seq 1 200); do
        curl -s -o /dev/null "http://127.0.0.1:$port/health" && return 0
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    cat "$WORK/$name.log"
    die "start $name" "the gateway did not come up"
}

# ================================================================ slow clients
start_gw GA --db-pool 2 --server-request-timeout 3 --server-max-connections-per-ip 100
X=$GA_URL/rpc/lww_exchange

"$ATTACK" slowloris 127.0.0.1 "$GA_PORT" 40 12 >"$WORK/loris.out" &
loris=$!
BG_PIDS+=("$loris")
sleep 1
worst=0 codes=""
for _ in 1 2 3 4 5; do
    req "$GA_URL/health"
    codes+="$CODE "
    worst=$(awk -v a="$worst" -v b="$ELAPSED" 'BEGIN { print (b > a) ? b : a }')
    sleep 0.2
done
expect "slowloris (40 sockets, pool 2): /health answers 200 meanwhile" "$codes" "200 200 200 200 200 "
if awk -v w="$worst" 'BEGIN { exit !(w < 1.0) }'; then ok "slowloris: /health within 1 s (worst ${worst} s)"
else not_ok "slowloris: /health latency" "worst ${worst} s"; fi
post "$X" '{"during":"slowloris"}' -H "Authorization: Bearer $TOK"
expect "slowloris: an exchange still answers 200" "$CODE $(jget "$BODY" '{role}')" "200 alice"
wait "$loris"
out=$(cat "$WORK/loris.out")
echo "# slowloris: $out"
still=$(sed -n 's/.*still_open=\([0-9]*\).*/\1/p' <<<"$out")
first=$(sed -n 's/.*first_close_s=\([0-9.-]*\).*/\1/p' <<<"$out")
last=$(sed -n 's/.*last_close_s=\([0-9.-]*\).*/\1/p' <<<"$out")
if [ "$still" = 0 ] && awk -v f="$first" -v l="$last" 'BEGIN { exit !(f >= 2.5 && l < 7) }'; then
    ok "slowloris: all 40 slow sockets closed after the 3 s request timeout (${first}-${last} s)"
else
    not_ok "slowloris: slow sockets closed" "$out"
fi
n=$(grep -c 'request not received within server-request-timeout' "$WORK/GA.log")
if [ "$n" -ge 40 ]; then ok "slowloris: each cut is logged ($n lines)"; else not_ok "slowloris: log" "$n lines"; fi

# A body trickled at 100 bytes/s: the request timeout covers the body too.
head -c 2000 /dev/zero | tr '\0' ' ' >"$WORK/slowbody.json"
start_t=$(date +%s%N)
req "$X" -H "Authorization: Bearer $TOK" -H 'Content-Type: application/json' --limit-rate 100 \
    --data-binary @"$WORK/slowbody.json"
ms=$((($(date +%s%N) - start_t) / 1000000))
if [ "$CODE" = 000 ] && [ "$ms" -ge 2500 ] && [ "$ms" -lt 8000 ]; then ok "body trickled at 100 B/s: cut after the request timeout (${ms} ms)"
else not_ok "slow body" "HTTP $CODE after ${ms} ms"; fi

# ================================================================ header flood
peak=$(rss_kb "$GA_PID")
fl_pids=()
for i in 1 2 3 4; do
    "$ATTACK" flood 127.0.0.1 "$GA_PORT" 1200000000 >"$WORK/flood.$i" &
    fl_pids+=($!)
done
BG_PIDS+=("${fl_pids[@]}")
for _ in $(seq 1 20); do
    r=$(rss_kb "$GA_PID"); [ -n "$r" ] && [ "$r" -gt "$peak" ] && peak=$r
    sleep 0.05
done
wait "${fl_pids[@]}"
r=$(rss_kb "$GA_PID"); [ -n "$r" ] && [ "$r" -gt "$peak" ] && peak=$r
out=$(cat "$WORK"/flood.*)
echo "# header flood: $(tr '\n' ' ' <<<"$out")"
if [ "$(grep -c 'status=431 closed=1' <<<"$out")" = 4 ]; then ok "header flood (4 connections offering 1.2 GB each): 431, connection closed"
else not_ok "header flood" "$out"; fi
sent_max=$(sed -n 's/.*sent=\([0-9]*\).*/\1/p' <<<"$out" | sort -n | tail -1)
if [ "$sent_max" -lt $((1 << 20)) ]; then ok "header flood: cut after at most ${sent_max} bytes (32 KiB read, the rest socket buffers)"
else not_ok "header flood: bytes taken" "$sent_max"; fi
if [ "$peak" -lt $((50 * 1024)) ]; then ok "header flood: gateway RSS stays small (peak ${peak} kB)"
else not_ok "header flood: RSS" "peak ${peak} kB"; fi
echo "# gateway RSS under header flood: peak ${peak} kB"
line=$(grep '"status":431' "$WORK/GA.log" | head -1)
expect_match "header flood: logged as 431 with the reason" "$line" '"error":"request headers too large"'

req "$GA_URL/health" -H "X-Big: $(head -c 40000 /dev/zero | tr '\0' b)"
expect_match "one 40 KB header: 431 with libmicrohttpd's message" "$CODE $BODY" '^431 .*HTTP header was too big'
req "$GA_URL/$(head -c 40000 /dev/zero | tr '\0' u)"
expect_match "40 KB request line: 414" "$CODE $BODY" '^414 .*too big'
req "$GA_URL/health" -H "X-Fits: $(head -c 8000 /dev/zero | tr '\0' f)"
expect "an 8 KB header still fits: 200" "$CODE" 200

# ================================================================ malformed requests (4xx, never 500)
req "$X" -H "Authorization: Bearer $TOK" -F 'doc={"a":1}'
expect_match "multipart/form-data: 415" "$CODE $(jget "$BODY" '{code}') $(jget "$BODY" '{message}')" \
    '^415 LWW415 unsupported Content-Type "multipart/form-data'
req "$X" -H "Authorization: Bearer $TOK" -d '{"a":1}'
expect_match "application/x-www-form-urlencoded: 415" "$CODE $(jget "$BODY" '{message}')" \
    '^415 unsupported Content-Type "application/x-www-form-urlencoded'
req "$X" -H "Authorization: Bearer $TOK" -H 'Content-Type: text/plain' --data-binary '{"a":1}'
expect_match "text/plain: 415" "$CODE $(jget "$BODY" '{message}')" '^415 unsupported Content-Type "text/plain'
req "$X" -H "Authorization: Bearer $TOK" -H 'Content-Type: application/json; charset=latin1' --data-binary '{"a":1}'
expect "application/json with a non-UTF-8 charset: 415" "$CODE" 415
req "$X" -H "Authorization: Bearer $TOK" -H 'Content-Type: Application/JSON; charset="UTF-8"' --data-binary '{"a":1}'
expect "Application/JSON; charset=\"UTF-8\": 200" "$CODE" 200
req "$X" -H "Authorization: Bearer $TOK" --data-binary '{"a":1}' -H 'Content-Type:'
expect "no Content-Type at all (PostgREST's default): 200" "$CODE" 200

deep=$(printf '%.0s[' $(seq 1 10000))
post "$X" "$deep" -H "Authorization: Bearer $TOK"
expect "JSON nested 10000 deep: 400 PGRST102" "$CODE $(jget "$BODY" '{code}') $(jget "$BODY" '{message}')" \
    "400 PGRST102 JSON nested deeper than 32 levels"
d33="{\"x\":$(printf '%.0s[' $(seq 1 32))$(printf '%.0s]' $(seq 1 32))}"
d32="{\"x\":$(printf '%.0s[' $(seq 1 31))$(printf '%.0s]' $(seq 1 31))}"
post "$X" "$d33" -H "Authorization: Bearer $TOK"
expect "JSON nested 33 deep: 400" "$CODE $(jget "$BODY" '{code}')" "400 PGRST102"
post "$X" "$d32" -H "Authorization: Bearer $TOK"
expect "JSON nested 32 deep: reaches lww_exchange, 200" "$CODE" 200
post "$X" "{\"s\":\"$(printf '%.0s[{' $(seq 1 100))\\\"]\"}" -H "Authorization: Bearer $TOK"
expect "brackets inside strings are not nesting: 200" "$CODE" 200
post "$X" '{"raise":"54001"}' -H "Authorization: Bearer $TOK"
expect "SQLSTATE 54001 (stack depth): 400, not 500" "$CODE $(jget "$BODY" '{code}') $(jget "$BODY" '{message}')" \
    "400 54001 raised 54001"
post "$X" '{"raise":"54000"}' -H "Authorization: Bearer $TOK"
expect "SQLSTATE 54000 (program limit): 413" "$CODE $(jget "$BODY" '{code}') $(jget "$BODY" '{message}')" \
    "413 54000 raised 54000"

post "$X" '{"range":1}' -H "Authorization: Bearer $TOK" -H 'Range: bytes=0-10'
if [ "$CODE" = 200 ] && [ -z "$(hdr Content-Range)" ] && [ "$(jget "$BODY" '{echo,range}')" = 1 ] &&
   [ "$(jget "$BODY" '{pad}' | wc -c)" = 2001 ]; then ok "Range on POST: ignored, full 200 body"
else not_ok "Range on POST" "HTTP $CODE, Content-Range '$(hdr Content-Range)', $(wc -c <"$WORK/body") bytes"; fi

raw() { printf "$1" | "$ATTACK" raw 127.0.0.1 "$GA_PORT" | tr '\r\n' '  '; }  # the answer on one line
out=$(raw "POST /rpc/lww_exchange HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer $TOK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n{}\r\n0\r\n\r\n")
expect_match "bad chunk size: 400 chunked encoding" "$out" \
    '^HTTP/1.1 400 .*chunked encoding was syntactically incorrect'
out=$(raw "POST /rpc/lww_exchange HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer $TOK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}XX0\r\n\r\n")
expect_match "chunk without its CRLF: 400" "$out" '^HTTP/1.1 400 .*chunked encoding'
out=$(raw "POST /rpc/lww_exchange HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer $TOK\r\nContent-Type: application/json\r\nTransfer-Encoding: gzip\r\n\r\n{}")
expect_match "Transfer-Encoding: gzip: 501 LWW501" "$out" \
    '^HTTP/1.1 501 .*"code":"LWW501","message":"unsupported Transfer-Encoding'
out=$(raw "POST /rpc/lww_exchange HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer $TOK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n2\r\n{}\r\n0\r\n\r\n")
expect_match "Transfer-Encoding and Content-Length together: 400" "$out" \
    '^HTTP/1.1 400 .*both Transfer-Encoding and Content-Length'
out=$(raw "POST /rpc/lww_exchange HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer $TOK\r\nContent-Type: application/json\r\nContent-Length: 2x\r\n\r\n{}")
expect_match "malformed Content-Length: 400" "$out" '^HTTP/1.1 400 .*wrong value for <b>Content-Length'
if [ "$(grep -c '"status":500' "$WORK/GA.log")" = 0 ]; then ok "no request above was answered 500"
else not_ok "500s in the log" "$(grep '"status":500' "$WORK/GA.log" | head -2)"; fi

# ================================================================ reserved roles, hostile tokens
for role in none NONE public Public pg_read_all_data PG_SIGNAL_BACKEND current_user session_user default; do
    post "$X" '{}' -H "Authorization: Bearer $(mint "{\"role\":\"$role\"}")"
    expect_match "token role \"$role\": 403, never the login role" \
        "$CODE $(jget "$BODY" '{code}') $(jget "$BODY" '{message}')" "^403 LWW403 JWT role \"$role\" is a reserved role name\$"
done
grep -q '"role":"authenticator"' <<<"$(cat "$WORK/GA.log")" && not_ok "reserved roles" "a request ran as authenticator" ||
    ok "no request ran as the login role"
post "$X" '{}' -H "Authorization: Bearer $(mint "{\"role\":\"alice\",\"x\":$(printf '%.0s[' $(seq 1 5000))}")"
expect_match "JWT claims nested 5000 deep: 401, parsed without recursion" \
    "$CODE $(jget "$BODY" '{code}') $(jget "$BODY" '{message}')" '^401 PGRST301 JWT payload is not valid JSON: JSON nested deeper than 32'
out=$(timeout 10 "$GW" --db-uri "$DB_URI" --db-anon-role none 2>&1); rc=$?
if [ $rc = 2 ] && grep -q 'reserved role name' <<<"$out"; then ok "db-anon-role none: refuses to start (exit 2)"
else not_ok "db-anon-role none" "rc=$rc: $out"; fi

# ================================================================ per-IP connection cap
start_gw GB --db-pool 1 --server-max-connections-per-ip 4 --db-anon-role anon
"$ATTACK" hold 127.0.0.1 "$GB_PORT" 6 8 >"$WORK/hold.out" &
hold=$!
BG_PIDS+=("$hold")
for _ in $(seq 1 50); do [ -s "$WORK/hold.out" ] && break; sleep 0.1; done
expect "per-IP cap 4: of 6 connections from 127.0.0.1, 4 stay open" "$(cat "$WORK/hold.out")" "connected=6 open=4"
req "$GB_URL/health"
expect_match "per-IP cap: a 7th connection from 127.0.0.1 is closed unanswered" "$CODE $(cat "$WORK/curl.err")" \
    '^000 .*(Empty reply|reset|Recv failure)'
req "$GB_URL/health" --interface 127.0.0.2
expect "per-IP cap: 127.0.0.2 is still served" "$CODE $(jget "$BODY" '{status}')" "200 ok"
post "$GB_URL/rpc/lww_exchange" '{"from":"127.0.0.2"}' --interface 127.0.0.2
expect "per-IP cap: 127.0.0.2 exchanges" "$CODE $(jget "$BODY" '{echo,from}')" "200 127.0.0.2"
kill "$hold" 2>/dev/null; wait "$hold" 2>/dev/null
sleep 0.3
req "$GB_URL/health"
expect "per-IP cap: 127.0.0.1 served again once its connections closed" "$CODE" 200

# ================================================================ client hangs up mid-exchange
start_gw GC --db-pool 1 --db-pool-acquisition-timeout 2
C=$GC_URL/rpc/lww_exchange
# A psql session holds the row lock the exchange wants.
pg gw -c "BEGIN" -c "UPDATE locked SET n = n WHERE id = 1" -c "SELECT pg_sleep(60)" -c "COMMIT" >/dev/null 2>&1 &
locker=$!
BG_PIDS+=("$locker")
active_exchanges() {
    pg gw -c "SELECT count(*) FROM pg_stat_activity WHERE usename = 'authenticator'
              AND query LIKE '%lww_exchange%' AND state <> 'idle'"
}
waiting=0
for _ in $(seq 1 50); do  # until psql holds the lock
    [ "$(pg gw -c "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(60)%' AND state = 'active'
                   AND pid <> pg_backend_pid()")" = 1 ] && break
    sleep 0.1
done
curl -s -o /dev/null --max-time 60 -H 'Content-Type: application/json' -H "Authorization: Bearer $TOK" \
    -d '{"lock":1}' "$C" &
cpid=$!
BG_PIDS+=("$cpid")
for _ in $(seq 1 50); do
    waiting=$(pg gw -c "SELECT count(*) FROM pg_stat_activity WHERE usename = 'authenticator'
                        AND query LIKE '%lww_exchange%' AND state = 'active' AND wait_event_type = 'Lock'")
    [ "$waiting" = 1 ] && break
    sleep 0.1
done
expect "hang-up: the exchange waits on the row lock held by psql" "$waiting" 1
kill -9 "$cpid"; wait "$cpid" 2>/dev/null
start_t=$(date +%s%N)
left=1
for _ in $(seq 1 40); do
    left=$(active_exchanges)
    [ "$left" = 0 ] && break
    sleep 0.05
done
ms=$((($(date +%s%N) - start_t) / 1000000))
if [ "$left" = 0 ] && [ "$ms" -lt 2000 ]; then ok "hang-up: no lww_exchange left in pg_stat_activity ${ms} ms after kill -9 of curl"
else not_ok "hang-up: backend still running" "$left active after ${ms} ms"; fi
intx=$(pg gw -c "SELECT count(*) FROM pg_stat_activity WHERE usename = 'authenticator' AND state LIKE 'idle in transaction%'")
expect "hang-up: no transaction left open" "$intx" 0
post "$C" '{"after":"hang-up"}' -H "Authorization: Bearer $TOK"
expect "hang-up: the pool (of 1) serves the next request" "$CODE $(jget "$BODY" '{echo,after}')" "200 hang-up"
line=$(grep '"status":499' "$WORK/GC.log" | head -1)
expect_match "hang-up: logged as 499, query cancelled" "$line" '"error":"client disconnected during the exchange: query cancelled, transaction rolled back"'
expect "hang-up: the locked row was not updated" "$(pg gw -c "SELECT n FROM locked WHERE id = 1")" 0

# ================================================================ statement and lock timeouts
start_gw GD --db-pool 2 --db-statement-timeout-ms 700 --db-lock-timeout-ms 400
D=$GD_URL/rpc/lww_exchange
post "$D" '{"sleep":5}' -H "Authorization: Bearer $TOK"
if [ "$CODE" = 504 ] && [ -n "$(hdr Retry-After)" ] && [ "$(jget "$BODY" '{code}')" = 57014 ] &&
   grep -q 'statement timeout' <<<"$(jget "$BODY" '{message}')" && awk -v e="$ELAPSED" 'BEGIN { exit !(e < 4) }'; then
    ok "statement_timeout 700 ms: 504 57014 with Retry-After (${ELAPSED} s)"
else not_ok "statement timeout" "HTTP $CODE in ${ELAPSED} s, Retry-After '$(hdr Retry-After)': $BODY"; fi
post "$D" '{"lock":1}' -H "Authorization: Bearer $TOK"
if [ "$CODE" = 503 ] && [ -n "$(hdr Retry-After)" ] && [ "$(jget "$BODY" '{code}')" = 55P03 ] &&
   grep -q 'lock timeout' <<<"$(jget "$BODY" '{message}')"; then
    ok "lock_timeout 400 ms on a row psql holds: 503 55P03 with Retry-After"
else not_ok "lock timeout" "HTTP $CODE, Retry-After '$(hdr Retry-After)': $BODY"; fi
post "$D" '{"sleep":0.1}' -H "Authorization: Bearer $TOK"
expect "after the timeouts the pool still serves: 200" "$CODE" 200
kill -9 "$locker" 2>/dev/null; wait "$locker" 2>/dev/null
pg postgres -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(60)%' AND pid <> pg_backend_pid()" >/dev/null

# ================================================================ every gateway still alive, log still JSON
for g in GA GB GC GD; do
    pid_var=${g}_PID
    kill -0 "${!pid_var}" 2>/dev/null || not_ok "$g alive" "the gateway died"
done
bad=0
for g in GA GB GC GD; do
    while IFS= read -r l; do
        [ -z "$l" ] && continue
        [ "$(jget "$l" '{ts}')" = "" ] && bad=$((bad + 1))
    done < <(head -c 2000000 "$WORK/$g.log" | grep -v '^lwwsync-server: warning' | head -300)
done
expect "log: every line JSON (first 300 per gateway)" "$bad" 0
echo "# gateway RSS after all attacks: $(rss_kb "$GA_PID") kB"
finish
