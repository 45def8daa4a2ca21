#!/usr/bin/env bash
# lwwsync-server end to end, with curl against a throwaway PostgreSQL 15:
# configuration (flags, environment, config file), JWT verification, roles
# and request.jwt.claims in the database, the SQLSTATE -> HTTP status map,
# body limits (also after gzip decompression), gzip both ways, pool limits,
# recovery after a PostgreSQL restart, the JSON log and a graceful stop.
#
# The database function is a stand-in lww_exchange(json) that echoes its
# input, current_user and the claims (and raises on request), so every
# gateway behaviour can be checked without the extension. With
# LWWSYNC_REAL_EXTENSION=1 the installed lwwsync extension is exercised too
# (exchanges through the gateway, and lww_sync from SQLite when lwwsync.so
# is built). Nothing is installed: run `make pg-install` first for that.
#
# Needs Debian packages only: curl, openssl, gzip, postgresql-15 (and sqlite3
# for the optional SQLite part). Works as root (the cluster then runs as
# "postgres") and as a normal user. Prints "ok - NAME" / "not ok - NAME: WHY"
# per check, ends with "N passed, M failed", exits non-zero on any failure.
# LWWSYNC_SERVER_BIN=PATH tests that binary instead of building server/.
# KEEP=1 keeps the work directory (logs, cluster) for a look.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"

. scripts/test_lib.sh

for tool in curl openssl gzip psql; do
    command -v "$tool" >/dev/null || die "prerequisites" "$tool not found"
done
# LWWSYNC_SERVER_BIN=path tests another build (say, with sanitizers) as is.
GW=${LWWSYNC_SERVER_BIN:-}
if [ -z "$GW" ]; then
    build_log=$(make -s -C server 2>&1 >/dev/null) || { echo "$build_log"; die "build" "make -C server failed"; }
    GW=$ROOT/server/lwwsync-server
fi
[ -x "$GW" ] || die "build" "$GW is not executable"

WORK=$(mktemp -d /tmp/lwwsync-gateway.XXXXXX)
chmod 755 "$WORK"
PGDIR=$WORK/pg
GW_PIDS=()
cleanup() {
    for p in "${GW_PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${GW_PIDS[@]}"; do wait "$p" 2>/dev/null; done
    scripts/pg_cluster.sh stop "$PGDIR" >/dev/null 2>&1
    if [ -n "${KEEP:-}" ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# The cluster listens on a Unix socket in $PGDIR only, so its port number
# cannot clash; gateway ports are checked free.
. scripts/free_port.sh
PGPORT=$((20000 + RANDOM % 40000))
scripts/pg_cluster.sh start "$PGDIR" "$PGPORT" >/dev/null 2>&1 ||
    { tail -5 "$PGDIR/server.log" 2>/dev/null; die "start PostgreSQL" "scripts/pg_cluster.sh start failed"; }

pg() {  # pg DB [psql args...]; SQL on stdin or -c
    local db=$1; shift
    psql -X -q -At -v ON_ERROR_STOP=1 -h "$PGDIR" -p "$PGPORT" -U postgres -d "$db" "$@"
}
# jget JSON PATH: the text at a json path ('{claims,sub}'), via PostgreSQL.
jget() { pg postgres -v j="$1" -v p="$2" <<<"SELECT (:'j')::json #>> (:'p')::text[]" 2>/dev/null; }

# ---------------------------------------------------------------- database
pg postgres >/dev/null <<'SQL' || die "database setup" "roles"
CREATE ROLE authenticator LOGIN NOINHERIT;
CREATE ROLE anon NOLOGIN;
CREATE ROLE alice NOLOGIN;
CREATE ROLE bob NOLOGIN;
GRANT anon, alice, bob TO authenticator;
CREATE DATABASE gw;
SQL
# The stand-in: echoes the request, the role, the claims and what RLS lets the
# caller see; {"raise": SQLSTATE} raises, {"flaky": 1} fails with 40001 every
# other call (a sequence survives the rollback), {"sleep": s} waits.
pg gw >/dev/null <<'SQL' || die "database setup" "stand-in lww_exchange(json)"
CREATE TABLE notes(owner text, body text);
INSERT INTO notes VALUES ('alice', 'a1'), ('alice', 'a2'), ('bob', 'b1');
ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_notes ON notes
    USING (owner = current_setting('request.jwt.claims', true)::json->>'sub');
GRANT SELECT ON notes TO anon, alice, bob;
CREATE SEQUENCE flaky;
GRANT USAGE ON SEQUENCE flaky TO PUBLIC;
CREATE FUNCTION lww_exchange(json) RETURNS json LANGUAGE plpgsql AS $$
BEGIN
    IF $1->>'raise' IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = $1->>'raise',
            MESSAGE = coalesce($1->>'message', 'raised ' || ($1->>'raise')),
            DETAIL = coalesce($1->>'detail', 'detail of ' || ($1->>'raise')),
            HINT = coalesce($1->>'hint', 'hint of ' || ($1->>'raise'));
    END IF;
    IF $1->>'flaky' IS NOT NULL AND nextval('flaky') % 2 = 1 THEN
        RAISE EXCEPTION USING ERRCODE = '40001', MESSAGE = 'could not serialize access (test)';
    END IF;
    IF $1->>'sleep' IS NOT NULL THEN
        PERFORM pg_sleep(($1->>'sleep')::float8);
    END IF;
    RETURN json_build_object(
        'echo', $1,
        'role', current_user,
        'claims', current_setting('request.jwt.claims', true)::json,
        'method', current_setting('request.method', true),
        'path', current_setting('request.path', true),
        'visible_notes', (SELECT count(*) FROM notes));
END $$;
REVOKE EXECUTE ON FUNCTION lww_exchange(json) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION lww_exchange(json) TO anon, alice;   -- not bob: 42501
SQL
DB_URI="postgresql://authenticator@/gw?host=$PGDIR&port=$PGPORT"

# ---------------------------------------------------------------- tokens
SECRET=0123456789abcdef0123456789abcdef-gw-test
mint() { jwt_hs256 "${3:-$SECRET}" "$1" "${2:-}"; }  # mint PAYLOAD [HEADER] [KEY]
NOW=$(date +%s)
TOK_ALICE=$(mint "{\"role\":\"alice\",\"sub\":\"alice\",\"exp\":$((NOW + 3600))}")

# ---------------------------------------------------------------- helpers
# req URL [curl args...]: sets CODE and BODY; response headers in $WORK/hdr.
req() {
    CODE=$(curl -sS -o "$WORK/body" -D "$WORK/hdr" -w '%{http_code}' --max-time 30 "$@" 2>"$WORK/curl.err")
    BODY=$(tr -d '\0' <"$WORK/body" 2>/dev/null)
}
hdr() { grep -i "^$1:" "$WORK/hdr" | head -1 | cut -d: -f2- | tr -d '\r' | sed 's/^ *//'; }
# post URL BODY [curl args...]
post() { local url=$1 body=$2; shift 2; req "$url" -H 'Content-Type: application/json' --data-binary "$body" "$@"; }

# start_gw NAME [args...]: starts a gateway on a free port, sets <NAME>_URL and <NAME>_PID.
start_gw() {
    local name=$1 port pid; shift
    port=$(free_port) || die "start $name" "no free port"
    "$GW" --server-port "$port" "$@" 2>"$WORK/$name.log" &
    pid=$!
    GW_PIDS+=("$pid")
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

# ---------------------------------------------------------------- command line
out=$("$GW" --help 2>&1); rc=$?
if [ $rc -eq 0 ] && grep -q -- '--db-uri' <<<"$out" && grep -q 'LWWSYNC_DB_URI' <<<"$out" &&
   grep -q 'LWWSYNC_MAX_BODY_BYTES' <<<"$out"; then ok "--help exits 0 and lists --db-uri and the variables"
else not_ok "--help" "rc=$rc"; fi
out=$("$GW" --version 2>&1); rc=$?
if [ $rc -eq 0 ] && grep -q '^lwwsync-server ' <<<"$out"; then ok "--version"; else not_ok "--version" "rc=$rc: $out"; fi
out=$("$GW" --db-uri "$DB_URI" --no-such-flag 2>&1); rc=$?
if [ $rc -eq 2 ] && grep -q 'no-such-flag' <<<"$out"; then ok "unknown flag: exit 2 with a message"
else not_ok "unknown flag" "rc=$rc: $out"; fi
out=$("$GW" --db-uri "$DB_URI" --db-pool ten 2>&1); rc=$?
if [ $rc -eq 2 ] && grep -q 'db-pool' <<<"$out"; then ok "bad number: exit 2"; else not_ok "bad number" "rc=$rc: $out"; fi
out=$(env -u LWWSYNC_DB_URI -u LWWSYNC_CONFIG "$GW" 2>&1); rc=$?
if [ $rc -eq 2 ] && grep -q 'db-uri is required' <<<"$out"; then ok "missing db-uri: exit 2"
else not_ok "missing db-uri" "rc=$rc: $out"; fi
out=$(timeout 10 "$GW" --db-uri "$DB_URI" --jwt-secret 'short-secret-of-31-characters!!' 2>&1); rc=$?
if [ $rc -eq 2 ] && grep -q 'at least 32 characters' <<<"$out"; then ok "jwt-secret shorter than 32: refuses to start"
else not_ok "short jwt-secret" "rc=$rc: $out"; fi
out=$(LWWSYNC_JWT_SECRET=tooshort timeout 10 "$GW" --db-uri "$DB_URI" 2>&1); rc=$?
if [ $rc -eq 2 ] && grep -q 'at least 32' <<<"$out"; then ok "short LWWSYNC_JWT_SECRET: refuses to start"
else not_ok "short LWWSYNC_JWT_SECRET" "rc=$rc: $out"; fi

# ---------------------------------------------------------------- GW1: token required
start_gw GW1 --db-uri "$DB_URI" --jwt-secret "$SECRET" --db-pool 3 --max-body-bytes 1048576
X=$GW1_URL/rpc/lww_exchange

req "$GW1_URL/health"
expect "GET /health: 200" "$CODE" 200
expect "GET /health: status ok" "$(jget "$BODY" '{status}')" ok

post "$X" '{"hello":1}'
expect "no token, no anon role: 401" "$CODE" 401
expect "no token: code PGRST302" "$(jget "$BODY" '{code}')" PGRST302
expect "no token: WWW-Authenticate: Bearer" "$(hdr WWW-Authenticate)" Bearer

post "$X" '{"hello":"wörld","n":[1,2]}' -H "Authorization: Bearer $TOK_ALICE"
expect "valid token: 200" "$CODE" 200
expect "valid token: Content-Type" "$(hdr Content-Type)" "application/json; charset=utf-8"
expect "valid token: current_user is the role claim" "$(jget "$BODY" '{role}')" alice
expect "valid token: request.jwt.claims readable" "$(jget "$BODY" '{claims,sub}')" alice
expect "request.method and request.path set" "$(jget "$BODY" '{method}') $(jget "$BODY" '{path}')" \
    "POST /rpc/lww_exchange"
expect "the body reaches lww_exchange intact" "$(jget "$BODY" '{echo,hello}')" "wörld"
expect "RLS policy on request.jwt.claims sub: own rows" "$(jget "$BODY" '{visible_notes}')" 2
post "$X" '{}' -H "Authorization: Bearer $(mint '{"role":"alice","sub":"carol"}')"
expect "RLS policy on request.jwt.claims sub: other sub" "$(jget "$BODY" '{visible_notes}')" 0

post "$X" '{}' -H "Authorization: Bearer $(mint '{"sub":"alice"}')"
expect "token without role, no anon role: 401" "$CODE" 401

check_401() {  # NAME TOKEN
    post "$X" '{}' -H "Authorization: Bearer $2"
    if [ "$CODE" = 401 ] && [ "$(jget "$BODY" '{code}')" = PGRST301 ] && hdr WWW-Authenticate | grep -q invalid_token; then
        ok "$1: 401"
    else
        not_ok "$1" "HTTP $CODE $BODY"
    fi
}
check_401 "forged signature (other secret)" "$(mint '{"role":"alice"}' '' 'another-secret-another-secret-another')"
H=$(cut -d. -f1 <<<"$TOK_ALICE") S=$(cut -d. -f3 <<<"$TOK_ALICE")
check_401 "tampered payload" "$H.$(printf '%s' '{"role":"postgres","sub":"alice"}' | b64url).$S"
NONE_H=$(printf '%s' '{"alg":"none","typ":"JWT"}' | b64url)
check_401 "alg none, unsigned" "$NONE_H.$(printf '%s' '{"role":"alice"}' | b64url)."
check_401 "alg none, with an HS256 signature" "$(mint '{"role":"alice"}' '{"alg":"none"}')"
check_401 "alg HS512" "$(mint '{"role":"alice"}' '{"alg":"HS512","typ":"JWT"}')"
check_401 "expired (exp in the past)" "$(mint "{\"role\":\"alice\",\"exp\":$((NOW - 5))}")"
check_401 "not yet valid (nbf in the future)" "$(mint "{\"role\":\"alice\",\"nbf\":$((NOW + 300))}")"
check_401 "claims not an object" "$(mint '["alice"]')"
check_401 "padded base64" "$(mint '{"role":"alice"}')=="
check_401 "garbage token" "not-a-jwt"
post "$X" '{}' -H "Authorization: Basic YWxpY2U6eA=="
expect "Basic authorization: 401" "$CODE" 401
post "$X" '{}' -H "Authorization: Bearer $(mint "{\"role\":\"alice\",\"nbf\":$((NOW - 5)),\"exp\":$((NOW + 60))}")"
expect "nbf in the past, exp in the future: 200" "$CODE" 200

post "$X" '{}' -H "Authorization: Bearer $(mint '{"role":"postgres"}')"
expect "role not granted to the login role: 403" "$CODE" 403
post "$X" '{}' -H "Authorization: Bearer $(mint '{"role":"no_such_role"}')"
expect "role that does not exist: 403" "$CODE" 403
post "$X" '{}' -H "Authorization: Bearer $(mint '{"role":"bob"}')"
expect "42501 (no EXECUTE for bob): 403" "$CODE $(jget "$BODY" '{code}')" "403 42501"

post "$X" '{"raise":"22000","message":"invalid change set: tables[0].rows[3].gen","detail":"d22","hint":"h22"}' \
    -H "Authorization: Bearer $TOK_ALICE"
expect "SQLSTATE 22000: 400" "$CODE" 400
expect "SQLSTATE 22000: message, details, hint in the body" \
    "$(jget "$BODY" '{code}')|$(jget "$BODY" '{message}')|$(jget "$BODY" '{details}')|$(jget "$BODY" '{hint}')" \
    "22000|invalid change set: tables[0].rows[3].gen|d22|h22"
post "$X" '{"format": "lwwsync.exchange", ' -H "Authorization: Bearer $TOK_ALICE"
expect "malformed JSON: 400 22P02" "$CODE $(jget "$BODY" '{code}')" "400 22P02"
post "$X" '' -H "Authorization: Bearer $TOK_ALICE"
expect "empty body: 400" "$CODE" 400
post "$X" '{"raise":"22023"}' -H "Authorization: Bearer $TOK_ALICE"
expect "SQLSTATE 22023: 400" "$CODE" 400
post "$X" '{"raise":"23505"}' -H "Authorization: Bearer $TOK_ALICE"
expect "SQLSTATE 23505: 409" "$CODE" 409
# lwwsync's error kinds (docs/ERRORS.md): clock drift and an object in use
# conflict with the server's state; an object that is not there is 404.
for pair in 22008:409 55006:409 42704:404 57014:504; do
    post "$X" "{\"raise\":\"${pair%%:*}\"}" -H "Authorization: Bearer $TOK_ALICE"
    expect "SQLSTATE ${pair%%:*}: ${pair##*:}" "$CODE" "${pair##*:}"
done
post "$X" '{"raise":"XX000"}' -H "Authorization: Bearer $TOK_ALICE"
expect "SQLSTATE XX000: 500" "$CODE $(jget "$BODY" '{code}')" "500 XX000"
post "$X" '{"raise":"40001"}' -H "Authorization: Bearer $TOK_ALICE"
if [ "$CODE" = 503 ] && [ -n "$(hdr Retry-After)" ]; then ok "40001 on every attempt: 503 with Retry-After"
else not_ok "40001 on every attempt" "HTTP $CODE, Retry-After '$(hdr Retry-After)'"; fi
post "$X" '{"raise":"40P01"}' -H "Authorization: Bearer $TOK_ALICE"
expect "40P01 (deadlock): 503" "$CODE" 503
post "$X" '{"flaky":1}' -H "Authorization: Bearer $TOK_ALICE"
expect "40001 once: retried inside the gateway, 200" "$CODE" 200
expect "after the retry the sequence moved twice" "$(pg gw -c "SELECT last_value FROM flaky")" 2

# ---------------------------------------------------------------- HTTP surface
req "$X" -H "Authorization: Bearer $TOK_ALICE"
expect "GET /rpc/lww_exchange: 405" "$CODE $(hdr Allow)" "405 POST"
req "$GW1_URL/health" -X POST -d '{}'
expect "POST /health: 405" "$CODE $(hdr Allow)" "405 GET"
req "$GW1_URL/rpc/other" -X POST -d '{}'
expect "unknown path: 404 JSON" "$CODE $(jget "$BODY" '{code}')" "404 LWW404"
post "$X" '{}' -H "Authorization: Bearer $TOK_ALICE" -H 'Content-Encoding: compress'
expect "unsupported Content-Encoding: 415" "$CODE" 415

# ---------------------------------------------------------------- body limits and gzip
head -c 1100000 /dev/zero | tr '\0' ' ' >"$WORK/big.json"
req "$X" -H "Authorization: Bearer $TOK_ALICE" -H 'Content-Type: application/json' -H 'Expect:' --data-binary @"$WORK/big.json"
expect "body over max-body-bytes: 413" "$CODE $(jget "$BODY" '{code}')" "413 LWW413"
req "$X" -H "Authorization: Bearer $TOK_ALICE" -H 'Content-Type: application/json' -H 'Transfer-Encoding: chunked' --data-binary @"$WORK/big.json"
expect "chunked body over max-body-bytes: 413" "$CODE" 413
req "$X" -H "Authorization: Bearer $TOK_ALICE" -H 'Content-Type: application/json' -H 'Expect: 100-continue' --data-binary @"$WORK/big.json"
expect "announced body over max-body-bytes (100-continue): 413" "$CODE" 413
head -c 1000000 /dev/zero | tr '\0' ' ' >"$WORK/fits.json"
printf '{"fits":true}' >>"$WORK/fits.json"
req "$X" -H "Authorization: Bearer $TOK_ALICE" -H 'Content-Type: application/json' -H 'Expect:' --data-binary @"$WORK/fits.json"
expect "body just under max-body-bytes: 200" "$CODE" 200

# 256 MiB of zeros in ~250 KiB of gzip: refused once 1 MiB has been inflated.
head -c $((256 << 20)) /dev/zero | gzip -c >"$WORK/bomb.gz"
req "$X" -H "Authorization: Bearer $TOK_ALICE" -H 'Content-Type: application/json' -H 'Content-Encoding: gzip' --data-binary @"$WORK/bomb.gz"
expect "gzip bomb (256 MiB inflated, limit 1 MiB): 413" "$CODE" 413
hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$GW1_PID/status" 2>/dev/null)
if [ -n "$hwm" ] && [ "$hwm" -lt $((48 * 1024)) ]; then ok "gzip bomb: peak memory stays small (${hwm} kB)"
else not_ok "gzip bomb memory" "VmHWM ${hwm:-?} kB"; fi
req "$X" -H "Authorization: Bearer $TOK_ALICE" -H 'Content-Type: application/json' -H 'Content-Encoding: gzip' -H 'Transfer-Encoding: chunked' \
    --data-binary @"$WORK/bomb.gz"
expect "chunked gzip bomb: 413" "$CODE" 413

printf '{"zipped":"%s"}' "$(head -c 3000 /dev/zero | tr '\0' z)" | gzip -c >"$WORK/req.gz"
req "$X" -H "Authorization: Bearer $TOK_ALICE" -H 'Content-Type: application/json' -H 'Content-Encoding: gzip' \
    --data-binary @"$WORK/req.gz"
expect "gzip request body: 200" "$CODE" 200
expect "gzip request body: decompressed for lww_exchange" "$(jget "$BODY" '{echo,zipped}' | wc -c)" 3001
printf 'this is not gzip' >"$WORK/bad.gz"
req "$X" -H "Authorization: Bearer $TOK_ALICE" -H 'Content-Type: application/json' -H 'Content-Encoding: gzip' --data-binary @"$WORK/bad.gz"
expect "invalid gzip data: 400" "$CODE" 400

BIGREQ=$(printf '{"pad":"%s"}' "$(head -c 5000 /dev/zero | tr '\0' p)")
post "$X" "$BIGREQ" -H "Authorization: Bearer $TOK_ALICE" --compressed
if [ "$CODE" = 200 ] && [ "$(hdr Content-Encoding)" = gzip ] && [ "$(jget "$BODY" '{role}')" = alice ]; then
    ok "curl --compressed: Content-Encoding: gzip, decodes to the JSON"
else
    not_ok "gzip response" "HTTP $CODE, Content-Encoding '$(hdr Content-Encoding)'"
fi
post "$X" "$BIGREQ" -H "Authorization: Bearer $TOK_ALICE" -H 'Accept-Encoding: gzip'
raw_size=$(stat -c %s "$WORK/body")
if [ "$(hdr Content-Encoding)" = gzip ] && [ "$raw_size" -lt 1000 ] &&
   [ "$(gzip -dc <"$WORK/body" | head -c 1)" = "{" ]; then ok "Accept-Encoding: gzip: gzip body ($raw_size bytes)"
else not_ok "Accept-Encoding: gzip" "Content-Encoding '$(hdr Content-Encoding)', $raw_size bytes"; fi
post "$X" "$BIGREQ" -H "Authorization: Bearer $TOK_ALICE" -H 'Accept-Encoding: gzip;q=0, identity'
expect "gzip;q=0: not compressed" "$(hdr Content-Encoding)" ""
post "$X" "$BIGREQ" -H "Authorization: Bearer $TOK_ALICE"
expect "no Accept-Encoding: not compressed" "$(hdr Content-Encoding)" ""

# Nagle's algorithm against the client's delayed ACK would cost ~40 ms per
# keep-alive round trip (responses go out as several writes): TCP_NODELAY.
args=()
for i in $(seq 1 30); do
    args+=(--next -s -o /dev/null -H 'Expect:' -H 'Content-Type: application/json' -H "Authorization: Bearer $TOK_ALICE" -d "{\"i\":$i}" "$X")
done
start_t=$(date +%s%N)
curl "${args[@]:1}"
elapsed_ms=$((($(date +%s%N) - start_t) / 1000000))
if [ "$elapsed_ms" -lt 500 ]; then ok "30 keep-alive round trips in ${elapsed_ms} ms (no Nagle stalls)"
else not_ok "keep-alive latency" "30 round trips took ${elapsed_ms} ms"; fi

# ---------------------------------------------------------------- clients that vanish
head -c 200000 /dev/zero | tr '\0' ' ' >"$WORK/slow.json"
curl -s -o /dev/null --limit-rate 20k -H 'Content-Type: application/json' -H "Authorization: Bearer $TOK_ALICE" --data-binary @"$WORK/slow.json" "$X" &
cpid=$!
sleep 0.5
kill -9 "$cpid" 2>/dev/null; wait "$cpid" 2>/dev/null
curl -s -o /dev/null --max-time 10 -H 'Content-Type: application/json' -H "Authorization: Bearer $TOK_ALICE" -d '{"sleep":1}' "$X" &
cpid=$!
sleep 0.4
kill -9 "$cpid" 2>/dev/null; wait "$cpid" 2>/dev/null
sleep 1
post "$X" '{"after":"kills"}' -H "Authorization: Bearer $TOK_ALICE"
if kill -0 "$GW1_PID" 2>/dev/null && [ "$CODE" = 200 ]; then ok "kill -9 of curl mid-upload and mid-query: server unharmed"
else not_ok "clients killed mid-request" "HTTP $CODE"; fi

# ---------------------------------------------------------------- the log
LOG=$(cat "$WORK/GW1.log")
if grep -q '"msg":"lwwsync-server .* listening on http://127.0.0.1:' <<<"$LOG"; then ok "log: startup line says where it listens"
else not_ok "log: startup line" "$(head -3 <<<"$LOG")"; fi
nlines=$(pg postgres -v log="$LOG" <<<"SELECT count(*) FROM regexp_split_to_table(:'log', E'\n') l
                                       WHERE l <> '' AND (l::json->>'ts') IS NOT NULL" 2>&1)
expect "log: every line is a JSON object with ts" "$nlines" "$(grep -c . <<<"$LOG")"
line=$(grep '"path":"/health"' <<<"$LOG" | head -1)
expect "log: request line is JSON with method/path/status" \
    "$(jget "$line" '{method}') $(jget "$line" '{path}') $(jget "$line" '{status}')" "GET /health 200"
line=$(grep '"status":403' <<<"$LOG" | grep '"role":"bob"' | head -1)
if [ -n "$line" ] && [ -n "$(jget "$line" '{error}')" ] && [ -n "$(jget "$line" '{ms}')" ] &&
   [ -n "$(jget "$line" '{bytes_in}')" ] && [ -n "$(jget "$line" '{bytes_out}')" ] &&
   [ "$(jget "$line" '{remote}')" = 127.0.0.1 ]; then ok "log: failed request has role, error, ms, bytes, remote"
else not_ok "log: failed request line" "${line:-none}"; fi
if grep -qF "$(cut -d. -f2 <<<"$TOK_ALICE")" <<<"$LOG"; then not_ok "log: never the token" "token found in the log"
else ok "log: never the token"; fi

# ---------------------------------------------------------------- GW2: config file, env, flags
cat >"$WORK/gw2.conf" <<EOF
# PostgREST-style; unknown keys (db-schemas) are ignored with a warning
db-uri = "$DB_URI"
db-schemas = "api"
db-anon-role = "bob"        # overridden by LWWSYNC_DB_ANON_ROLE
server-port = 1             # overridden by --server-port
jwt-secret = "$SECRET"
EOF
LWWSYNC_DB_ANON_ROLE=anon start_gw GW2 --config "$WORK/gw2.conf"
ok "config file: db-uri read, --server-port wins over the file"
post "$GW2_URL/rpc/lww_exchange" '{}'
expect "anon role configured: no token runs as anon (env wins over file)" "$CODE $(jget "$BODY" '{role}')" "200 anon"
expect "anonymous request.jwt.claims is {\"role\": anon}" "$(jget "$BODY" '{claims,role}')" anon
post "$GW2_URL/rpc/lww_exchange" '{}' -H "Authorization: Bearer $(mint '{"sub":"zoe"}')"
expect "token without role: anon role, claims kept" "$(jget "$BODY" '{role}') $(jget "$BODY" '{claims,sub}')" "anon zoe"
if grep -q 'db-schemas' "$WORK/GW2.log"; then ok "config file: unknown key reported"; else not_ok "unknown key" "no warning"; fi
out=$(timeout 10 "$GW" --db-uri "$DB_URI" --server-port "${GW2_URL##*:}" 2>&1); rc=$?
if [ $rc -eq 1 ] && grep -q 'cannot listen' <<<"$out"; then ok "port in use: exit 1 with a message"
else not_ok "port in use" "rc=$rc: $out"; fi
LWWSYNC_DB_ANON_ROLE=anon LWWSYNC_DB_URI="$DB_URI" start_gw GW2B --db-anon-role alice
post "$GW2B_URL/rpc/lww_exchange" '{}'
expect "flag wins over environment" "$(jget "$BODY" '{role}')" alice

# ---------------------------------------------------------------- GW3: no secret, pool of one
start_gw GW3 --db-uri "$DB_URI" --db-anon-role alice --db-pool 1 --db-pool-acquisition-timeout 1
post "$GW3_URL/rpc/lww_exchange" '{}' -H "Authorization: Bearer $TOK_ALICE"
expect "no jwt-secret: a token gets 401" "$CODE" 401
post "$GW3_URL/rpc/lww_exchange" '{}'
expect "no jwt-secret: no token runs as the anon role" "$CODE $(jget "$BODY" '{role}')" "200 alice"
curl -s -o /dev/null --max-time 10 -H 'Content-Type: application/json' -d '{"sleep":2.5}' "$GW3_URL/rpc/lww_exchange" &
cpid=$!
sleep 0.3
start_t=$(date +%s%N)
post "$GW3_URL/rpc/lww_exchange" '{}'
elapsed_ms=$((($(date +%s%N) - start_t) / 1000000))
if [ "$CODE" = 503 ] && [ "$(jget "$BODY" '{code}')" = PGRST003 ] && [ "$elapsed_ms" -ge 900 ]; then
    ok "pool busy beyond the acquisition timeout: 503 PGRST003 (${elapsed_ms} ms)"
else
    not_ok "pool timeout" "HTTP $CODE in ${elapsed_ms} ms: $BODY"
fi
wait "$cpid"
post "$GW3_URL/rpc/lww_exchange" '{}'
expect "pool free again: 200" "$CODE" 200

# ---------------------------------------------------------------- PostgreSQL down and back
scripts/pg_cluster.sh stop "$PGDIR" >/dev/null 2>&1
post "$X" '{}' -H "Authorization: Bearer $TOK_ALICE"
code=$(grep -o '"code":"[^"]*"' <<<"$BODY")
if [ "$CODE" = 503 ] && [ -n "$(hdr Retry-After)" ]; then ok "PostgreSQL stopped: POST 503 with Retry-After ($code)"
else not_ok "PostgreSQL stopped: POST" "HTTP $CODE $BODY"; fi
req "$GW1_URL/health"
if [ "$CODE" = 503 ] && grep -q '"status":"unavailable"' <<<"$BODY"; then ok "PostgreSQL stopped: /health 503"
else not_ok "PostgreSQL stopped: /health" "HTTP $CODE $BODY"; fi
scripts/pg_cluster.sh start "$PGDIR" "$PGPORT" >/dev/null 2>&1 || die "restart PostgreSQL" "start failed"
req "$GW1_URL/health"
expect "PostgreSQL back: /health 200 without restarting the gateway" "$CODE" 200
post "$X" '{}' -H "Authorization: Bearer $TOK_ALICE"
expect "PostgreSQL back: POST 200" "$CODE" 200
# Connections pooled before a restart are dead: the gateway replaces them.
cpids=()
for _ in 1 2 3; do
    curl -s -o /dev/null -H 'Content-Type: application/json' -H "Authorization: Bearer $TOK_ALICE" -d '{"sleep":0.3}' "$X" &
    cpids+=($!)
done
wait "${cpids[@]}"
pg postgres -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'authenticator'" >/dev/null
codes=""
for i in 1 2 3 4; do post "$X" '{}' -H "Authorization: Bearer $TOK_ALICE"; codes+="$CODE "; done
expect "pooled connections terminated: next requests still 200" "$codes" "200 200 200 200 "

# ---------------------------------------------------------------- real extension (optional)
if [ "${LWWSYNC_REAL_EXTENSION:-0}" = 1 ]; then
    if pg postgres >/dev/null <<'SQL' && pg gwreal >/dev/null <<'SQL2'; then
CREATE DATABASE gwreal;
SQL
CREATE EXTENSION lwwsync;
CREATE TABLE todos(id int PRIMARY KEY, title text, done boolean NOT NULL DEFAULT false);
SELECT lww_track('todos');
GRANT SELECT, INSERT, UPDATE, DELETE ON todos TO alice;
INSERT INTO todos VALUES (1, 'from postgres', false);
SQL2
        start_gw GWR --db-uri "postgresql://authenticator@/gwreal?host=$PGDIR&port=$PGPORT" --jwt-secret "$SECRET"
        R=$GWR_URL/rpc/lww_exchange
        NODE=6f1c2a4e-9b1d-4c3e-8f00-1a2b3c4d5e6f
        post "$R" "{\"format\":\"lwwsync.exchange\",\"version\":1,\"node\":\"$NODE\"}" -H "Authorization: Bearer $TOK_ALICE"
        expect "real lww_exchange: first round trip 200" "$CODE $(jget "$BODY" '{format}')" "200 lwwsync.exchange"
        expect "real lww_exchange: answers with the server's node id" "$(jget "$BODY" '{node}')" \
            "$(pg gwreal -c 'SELECT lww_node_id()')"
        printf '{"format":"lwwsync.exchange","version":1,"node":"%s","received":"0"}' "$NODE" | gzip -c >"$WORK/real.gz"
        req "$R" -H "Authorization: Bearer $TOK_ALICE" -H 'Content-Type: application/json' -H 'Content-Encoding: gzip' --data-binary @"$WORK/real.gz" --compressed
        expect "real lww_exchange: gzip both ways, pull carries the row" \
            "$CODE $(jget "$BODY" '{pull,tables,0,name}')" "200 todos"
        post "$R" "{\"format\":\"lwwsync.exchange\",\"version\":99,\"node\":\"$NODE\"}" -H "Authorization: Bearer $TOK_ALICE"
        expect "real lww_exchange: unsupported version: 400 22000" "$CODE $(jget "$BODY" '{code}')" "400 22000"
        post "$R" '{"format":' -H "Authorization: Bearer $TOK_ALICE"
        expect "real lww_exchange: malformed JSON: 400" "$CODE" 400
        ahead=$(( ($(date +%s) + 3600) * 1000 * 65536 ))
        post "$R" "{\"format\":\"lwwsync.exchange\",\"version\":1,\"node\":\"$NODE\",\"clock\":\"$ahead\"}" \
            -H "Authorization: Bearer $TOK_ALICE"
        expect "real lww_exchange: a clock an hour ahead: 409 22008" "$CODE $(jget "$BODY" '{code}')" "409 22008"
        if [ -f "$ROOT/lwwsync.so" ] && command -v sqlite3 >/dev/null; then
            out=$(sqlite3 -batch "$WORK/client.db" ".load $ROOT/lwwsync" \
                "CREATE TABLE todos(id INTEGER PRIMARY KEY, title TEXT, done INTEGER NOT NULL DEFAULT 0);" \
                "SELECT lww_track('todos');" \
                "INSERT INTO todos VALUES (2, 'from sqlite', 0);" \
                "SELECT lww_sync('$R', json_object('token', '$TOK_ALICE'));" \
                "SELECT group_concat(id || ':' || title, ',') FROM (SELECT * FROM todos ORDER BY id);" 2>&1)
            expect "SQLite lww_sync through the gateway: pulled" "$(tail -1 <<<"$out")" "1:from postgres,2:from sqlite"
            expect "SQLite lww_sync through the gateway: pushed" \
                "$(pg gwreal -c "SELECT title FROM todos WHERE id = 2")" "from sqlite"
        else
            echo "# skipped: SQLite lww_sync through the gateway (needs lwwsync.so and sqlite3)"
        fi
    else
        not_ok "real extension" "CREATE EXTENSION lwwsync failed (run make pg-install)"
    fi
fi

# ---------------------------------------------------------------- graceful stop
kill -TERM "$GW1_PID"
rc=124
for _ in $(seq 1 200); do  # idle keep-alive connections may hold it up to 5 s
    if ! kill -0 "$GW1_PID" 2>/dev/null; then wait "$GW1_PID"; rc=$?; break; fi
    sleep 0.05
done
if [ "$rc" = 0 ] && grep -q '"msg":"stopped"' "$WORK/GW1.log"; then ok "SIGTERM: graceful stop, exit 0"
else not_ok "SIGTERM" "exit status $rc"; fi

finish
