# The TAP-like reporting the shell test suites share (sourced): one line
# per check, "ok - NAME" or "not ok - NAME: WHY", and a closing
# "N passed, M failed" that tests/run_all.sh adds up.
passed=0 failed=0
ok()     { passed=$((passed + 1)); echo "ok - $1"; }
not_ok() { failed=$((failed + 1)); echo "not ok - $1${2:+: $2}"; }
finish() { echo "$passed passed, $failed failed"; [ "$failed" -eq 0 ]; exit; }
die()    { not_ok "$1" "${2:-}"; finish; }
# expect NAME GOT WANT
expect() { if [ "$2" == "$3" ]; then ok "$1"; else not_ok "$1" "got '$2', want '$3'"; fi; }
# expect_match NAME TEXT REGEX
expect_match() { if grep -qE -- "$3" <<<"$2"; then ok "$1"; else not_ok "$1" "'$(head -c 300 <<<"$2")' does not match /$3/"; fi; }

# Tokens for the gateway: base64url, and a JWT of CLAIMS signed with SECRET
# (HS256; HEADER for tests of other headers).  jwt_hs256 SECRET CLAIMS [HEADER]
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
jwt_hs256() {
    local h p s
    h=$(printf '%s' "${3:-{\"alg\":\"HS256\",\"typ\":\"JWT\"\}}" | b64url)
    p=$(printf '%s' "$2" | b64url)
    s=$(printf '%s.%s' "$h" "$p" | openssl dgst -sha256 -hmac "$1" -binary | b64url)
    echo "$h.$p.$s"
}
# Waits up to 10 s for the gateway on 127.0.0.1:PORT to answer /health.
#   wait_gateway PORT || die "setup" "gateway: $(tail -2 LOG)"
wait_gateway() {
    local _
    for _ in $(seq 1 100); do
        curl -fsS "http://127.0.0.1:$1/health" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    return 1
}
